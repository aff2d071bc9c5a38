"""A full disk or an unwritable output folder: a clear error, and earlier results intact."""

from __future__ import annotations

import errno
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import imgclust._fs as fs_module
import imgclust._fs as report_io
from imgclust import OutputError, RunConfig, StoreError
from imgclust.config import ClusterConfig, EmbedConfig
from imgclust.pipeline import run


def _config(photos: Path, out: Path, k: int = 2) -> RunConfig:
    return RunConfig(
        inputs=(photos,), out=out, cluster=ClusterConfig(k=k), embed=EmbedConfig(workers=0)
    )


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def _results(snapshot: dict[str, bytes]) -> dict[str, bytes]:
    """What the user reads: pages, CSVs, thumbnails and stored features (not the lock)."""
    return {k: v for k, v in snapshot.items() if not k.endswith("lock")}


@pytest.fixture
def photos(demo_photos: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    for scene in ("coffee", "rocket"):
        shutil.copytree(demo_photos / scene, folder / scene)
    return folder


def test_disk_full_while_writing_the_report(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    run(_config(photos, out))
    before = _results(_snapshot(out))

    def no_space(*args: object, **kwargs: object) -> object:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report_io, "open", no_space, raising=False)
    with pytest.raises(OutputError, match=r"No space left on device.*free space"):
        run(_config(photos, out, k=3))
    assert _results(_snapshot(out)) == before
    assert not list(out.glob("*.tmp*"))


def test_disk_full_while_writing_the_store(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    run(_config(photos, out))
    before = _results(_snapshot(out))
    shutil.copy(photos / "coffee" / "coffee-0.jpg", photos / "coffee" / "new.jpg")

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    # The store's shard is the first file a run fsyncs (thumbnails are a cache, not synced):
    # a full disk fails there, as it would for real.
    monkeypatch.setattr(fs_module.os, "fsync", no_space)
    with pytest.raises(StoreError, match=r"No space left on device.*Free space"):
        run(_config(photos, out))
    after = _results(_snapshot(out))
    # Every earlier result is byte-identical; the only addition allowed is the new photo's
    # thumbnail, which the decode workers leave before the store write fails (a cache file
    # the next report reuses, pointed to by no page yet).
    assert {k: after[k] for k in before} == before
    assert all(k.startswith("thumbs/") for k in set(after) - set(before))
    assert len(set(after) - set(before)) <= 1
    monkeypatch.undo()
    assert run(_config(photos, out)).n_embedded == 1  # nothing stored before was redone


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MiB tmpfs (needs mount rights: root in a container; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> None:
    with pytest.raises(OSError) as err, open(disk / "ballast", "wb") as fh:
        while True:
            fh.write(b"\0" * 4096)
            fh.flush()
    assert err.value.errno == errno.ENOSPC


def test_real_full_disk_and_read_only_folder(photos: Path, small_disk: Path) -> None:
    out = small_disk / "out"
    run(_config(photos, out))
    before = _results(_snapshot(out))
    _fill(small_disk)
    with pytest.raises(OutputError, match="No space left on device"):
        run(_config(photos, out, k=3))  # stored features suffice; the report cannot be written
    shutil.copy(photos / "coffee" / "coffee-0.jpg", photos / "coffee" / "new.jpg")
    with pytest.raises((StoreError, OutputError), match="No space left on device"):
        run(_config(photos, out))  # the new photo's features cannot be stored
    assert _results(_snapshot(out)) == before
    (small_disk / "ballast").unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(OutputError, match="not writable"):
        run(_config(photos, out, k=3))
    assert _results(_snapshot(out)) == before
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert run(_config(photos, out)).n_embedded == 1
