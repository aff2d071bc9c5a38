"""export: one folder per cluster, safe names, no overwrite, and an undo that loses nothing."""

from __future__ import annotations

import csv
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgclust.exceptions import InputError, OutputError
from imgclust.export import (
    cluster_folder_name,
    export,
    plan_export,
    safe_file_name,
    safe_name,
    undo_export,
)

CLI = [sys.executable, "-m", "imgclust.cli"]
RESERVED = (
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(10)} | {f"LPT{i}" for i in range(10)}
)


@given(st.text(max_size=300))
def test_safe_name_is_safe_everywhere(name: str) -> None:
    safe = safe_name(name)
    assert safe and safe not in (".", "..")
    assert not set(safe) & set('/\\:*?"<>|')
    assert all(ord(ch) >= 32 and ord(ch) != 127 for ch in safe)
    assert not safe.endswith((".", " ")) and not safe.startswith(" ")
    assert len(safe.encode("utf-8")) <= 120
    assert safe.split(".")[0].upper() not in RESERVED


def test_safe_names_by_example() -> None:
    assert cluster_folder_name(3, "missile / projectile / mosque") == (
        "003 missile _ projectile _ mosque"
    )
    assert cluster_folder_name(0, "..") == "000"  # trailing dots never survive
    assert safe_name("..") == "unnamed" and safe_name("") == "unnamed"
    assert safe_name("con") == "_con" and safe_name("LPT1.txt") == "_LPT1.txt"
    assert safe_name("a\x00b\nc. ") == "a_b_c"
    assert safe_file_name(os.fsdecode(b"caf\xe9.JPG")) == "caf_.jpg"
    assert safe_file_name('<script>"x"?.jpg') == "_script__x__.jpg"


def _tree(tmp_path: Path, n_per_cluster: int = 3, size: int = 1000) -> tuple[Path, list[Path]]:
    """Photos (random bytes are enough: export never decodes) and a run's two CSVs."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    names = ['<script>alert(1)<\\script> "q".jpg', "CON.jpg", os.fsdecode(b"caf\xe9.jpg")]
    files: list[Path] = []
    for i in range(n_per_cluster * 2):
        sub = photos / f"day{i % 2}"  # the same name in two folders: a clash
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / (names[i // 2] if i // 2 < len(names) else f"img{i // 2}.jpg")
        path.write_bytes(os.urandom(size))
        files.append(path)
    out.mkdir()
    with open(out / "clusters.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["cluster", "size", "name", "medoid", "top_classes"])
        w.writerow([0, n_per_cluster, "../../escape <b>", "", ""])
        w.writerow([1, n_per_cluster, "space shuttle / CON", "", ""])
    with open(
        out / "assignments.csv", "w", newline="", encoding="utf-8", errors="surrogateescape"
    ) as fh:
        w = csv.writer(fh)
        w.writerow(
            ["path", "cluster", "rank", "distance", "outlier", "cluster_name", "top_classes"]
        )
        for i, f in enumerate(files):
            w.writerow([str(f), i % 2, i // 2, 0.1, 0, "", ""])
    return out, files


def _digests(files: list[Path]) -> dict[str, str]:
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_plan_stays_inside_and_never_reuses_a_name(tmp_path: Path) -> None:
    out, files = _tree(tmp_path)
    dest = tmp_path / "dest"
    (dest / "000 .._.._escape _b_").mkdir(parents=True)
    (dest / "000 .._.._escape _b_" / "_script_alert(1)__script_ _q_.jpg").write_text("mine")
    steps = plan_export(out, dest).steps
    targets = [s.target for s in steps]
    assert len(set(targets)) == len(targets) == len(files)
    assert {s.source for s in steps} == {str(f) for f in files}
    for t in targets:
        assert Path(t).parent.parent == dest.absolute()
    assert "_script_alert(1)__script_ _q_ (2).jpg" in {Path(t).name for t in targets}


@pytest.mark.parametrize("mode", ["symlink", "copy", "move"])
def test_export_and_undo(tmp_path: Path, mode: str) -> None:
    out, files = _tree(tmp_path)
    before = _digests(files)
    dest = tmp_path / "dest"
    steps = export(out, dest, mode=mode).steps  # type: ignore[arg-type]
    for step in steps:
        target = Path(step.target)
        assert target.exists() and target.is_symlink() == (mode == "symlink")
        assert hashlib.sha256(target.read_bytes()).hexdigest() == before[step.source]
    assert all(f.exists() for f in files) == (mode != "move")
    again = export(out, dest, mode="copy")  # a second export never overwrites the first
    assert not {s.target for s in steps} & {s.target for s in again.steps}
    assert len(again.missing) == (len(files) if mode == "move" else 0)
    undo_export(dest)
    assert _digests(files) == before
    left = [p for p in dest.rglob("*") if p.is_file() or p.is_symlink()]
    assert all(p.suffix == ".undone" for p in left)  # only the journals stay, as a record


def test_folder_that_leads_outside_is_refused(tmp_path: Path) -> None:
    out, _ = _tree(tmp_path)
    dest, elsewhere = tmp_path / "dest", tmp_path / "elsewhere"
    dest.mkdir()
    elsewhere.mkdir()
    (dest / "001 space shuttle _ CON").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OutputError, match="outside"):
        export(out, dest, mode="move")
    assert not any(elsewhere.iterdir())


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="imgclust run"):
        plan_export(tmp_path, tmp_path / "dest")
    with pytest.raises(InputError, match="no imgclust export"):
        undo_export(tmp_path)


def test_cli_dry_run_touches_nothing(tmp_path: Path) -> None:
    out, files = _tree(tmp_path)
    dest = tmp_path / "dest"
    done = subprocess.run(
        [*CLI, "export", str(out), "--to", str(dest), "--mode", "move", "--dry-run"],
        capture_output=True, text=True, errors="surrogateescape", check=True,
    )  # fmt: skip
    assert done.stdout.count(" -> ") == len(files)
    assert not dest.exists() and all(f.exists() for f in files)


def test_move_killed_midway_then_undo_loses_nothing(tmp_path: Path) -> None:
    out, files = _tree(tmp_path, n_per_cluster=1500, size=2000)
    before = _digests(files)
    dest = tmp_path / "dest"
    proc = subprocess.Popen([*CLI, "export", str(out), "--to", str(dest), "--mode", "move"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while sum(1 for p in dest.rglob("*.jpg")) < len(files) // 3:
        assert proc.poll() is None, "the move finished before the kill"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    moved = sum(1 for f in files if not f.exists())
    assert 0 < moved < len(files), "killed part-way"
    done = subprocess.run([*CLI, "export", "--undo", str(dest)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _digests(files) == before  # every photo back, byte-identical: 0 lost
    assert not [p for p in dest.rglob("*") if p.is_file() and p.suffix != ".undone"]
