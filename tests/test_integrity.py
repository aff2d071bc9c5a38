"""Everything read back from disk is checked before use.

Damaged feature-store shards, saved clusterings and similarity indexes (bits flipped at any
offset, truncated to any length, markers missing or garbage) end in a clean recovery (the
images are embedded again, the index is rebuilt) or in an ``ImgclustError`` that names the
file and says what to do: never a traceback, never silently wrong features or neighbours.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from imgclust import cluster_folder
from imgclust.config import ReportConfig
from imgclust.embed import FeatureBlock
from imgclust.exceptions import InputError, StoreError
from imgclust.scan import FileRecord, Rejection
from imgclust.state import (
    INDEX_FILE,
    MODEL_FILE,
    SavedClustering,
    feature_index,
    features_of,
    from_parts,
    load_clustering,
    read_index,
    save_clustering,
)
from imgclust.store import FeatureStore

MODEL, N_CLASSES, DIM = "m", 16, 8
A = [f"/photos/a-{i:02d}.jpg" for i in range(20)]
B = [f"/photos/b-{i:02d}.jpg" for i in range(20)]
SHARD = "shard-000001.parquet"

FUZZ = settings(
    max_examples=25,
    deadline=None,
    database=None,  # no .hypothesis folder in the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
OFFSET = st.integers(min_value=0, max_value=2**31)  # taken modulo the file's size
BIT = st.integers(min_value=0, max_value=7)


def _build_index(features: np.ndarray) -> Any:
    """A similarity index filled with ``features`` (any float dtype), as a run makes it."""
    index, storage = feature_index(len(features), features.shape[1])
    storage[:] = features
    return index


def _block(paths: list[str], seed: int) -> FeatureBlock:
    rng = np.random.default_rng(seed)
    n = len(paths)
    return FeatureBlock(
        paths=list(paths),
        sizes=[100 + i for i in range(n)],
        mtimes=[1000 + i for i in range(n)],
        logits=[rng.normal(size=(n, N_CLASSES)).astype(np.float16)],
        embeddings=[rng.normal(size=(n, DIM)).astype(np.float16)],
    )


def _records(paths: list[str]) -> list[FileRecord]:
    return [FileRecord(p, 100 + i, 1000 + i) for i, p in enumerate(paths)]


def _flip(path: Path, at: int, bit: int) -> None:
    data = bytearray(path.read_bytes())
    data[at % len(data)] ^= 1 << bit
    path.write_bytes(bytes(data))


def _truncate(path: Path, length: int) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(length)


@contextlib.contextmanager
def _copy(src: Path) -> Iterator[Path]:
    """A fresh copy of ``src`` for one hypothesis example (function fixtures are shared)."""
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / "copy"
        shutil.copytree(src, dst)
        yield dst


def _warned(caplog: pytest.LogCaptureFixture, name: str) -> bool:
    return any(r.levelno == logging.WARNING and name in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- feature store


@pytest.fixture(scope="module")
def pristine_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with two shards: A's 20 images in shard 1, B's in shard 2."""
    root = tmp_path_factory.mktemp("store")
    with FeatureStore(root, MODEL) as store:
        store.write(_block(A, 1), N_CLASSES, DIM)
        store.write(_block(B, 2), N_CLASSES, DIM)
    return root


def _assert_shard_one_set_aside(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Opening the store sets shard 1 aside, its images are todo, and a rewrite reads back."""
    with FeatureStore(root, MODEL) as store:
        shard = store.dir / SHARD
        assert store.damaged == [shard]
        assert _warned(caplog, str(shard))
        assert not shard.exists() and shard.with_name(SHARD + ".damaged").exists()
        found = store.lookup(_records(A) + _records(B))
        assert sorted(found.found) == B and [r.path for r in found.todo] == A
        store.write(_block(A, 1), N_CLASSES, DIM)  # embedded again
        found = store.lookup(_records(A) + _records(B))
        got = store.load(A + B, found.found, arrays=("logits",))["logits"]
    np.testing.assert_array_equal(
        got, np.concatenate([_block(A, 1).logits[0], _block(B, 2).logits[0]])
    )
    with FeatureStore(root, MODEL) as store:  # once set aside, never reported again
        assert store.damaged == [] and store.n_stored == len(A) + len(B)


@FUZZ
@given(at=OFFSET, bit=BIT)
def test_flipped_bit_in_a_shard_is_set_aside_and_embedded_again(
    pristine_store: Path, caplog: pytest.LogCaptureFixture, at: int, bit: int
) -> None:
    caplog.clear()
    with _copy(pristine_store) as root:
        _flip(root / MODEL / SHARD, at, bit)  # same size: the marker's byte count matches
        _assert_shard_one_set_aside(root, caplog)


@pytest.mark.parametrize("keep", [0, 1, 22, 0.5, -1, "+7"])
def test_truncated_or_grown_shard_is_set_aside(
    pristine_store: Path, caplog: pytest.LogCaptureFixture, keep: float | str
) -> None:
    with _copy(pristine_store) as root:
        shard = root / MODEL / SHARD
        size = shard.stat().st_size
        if keep == "+7":
            shard.write_bytes(shard.read_bytes() + b"garbage")
        else:
            assert isinstance(keep, int | float)
            _truncate(shard, int(size * keep) if isinstance(keep, float) else keep % size)
        _assert_shard_one_set_aside(root, caplog)


def test_missing_marker_is_a_torn_write_not_damage(
    pristine_store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _copy(pristine_store) as root:
        (root / MODEL / "shard-000001.done.json").unlink()  # killed before the marker
        with FeatureStore(root, MODEL) as store:
            assert store.damaged == [] and not (store.dir / SHARD).exists()
            found = store.lookup(_records(A) + _records(B))
            assert sorted(found.found) == B and [r.path for r in found.todo] == A
        assert not list((root / MODEL).glob("*.damaged"))


def _marker_with(root: Path, **changes: object) -> bytes:
    marker = json.loads((root / MODEL / "shard-000001.done.json").read_text())
    return json.dumps({**marker, **changes}).encode()


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"{",
        b"\xff\xfe\x00garbage",
        b"null",
        b"[1, 2]",
        b'"text"',
        b'{"n": 20}',
        b'{"n": 20, "bytes": "123"}',
        "rejected",  # a valid marker but for a rejected entry without its keys
        "crc32",  # a valid marker but for the checksum
    ],
)
def test_garbage_marker_sets_the_shard_aside(
    pristine_store: Path, caplog: pytest.LogCaptureFixture, garbage: bytes | str
) -> None:
    with _copy(pristine_store) as root:
        if garbage == "rejected":
            garbage = _marker_with(root, rejected=[{"path": 5}])
        elif garbage == "crc32":
            garbage = _marker_with(root, crc32="not a number")
        assert isinstance(garbage, bytes)
        (root / MODEL / "shard-000001.done.json").write_bytes(garbage)
        _assert_shard_one_set_aside(root, caplog)


def test_marker_records_the_shard_checksum(pristine_store: Path) -> None:
    for shard in (1, 2):
        data = (pristine_store / MODEL / f"shard-{shard:06d}.parquet").read_bytes()
        marker = json.loads((pristine_store / MODEL / f"shard-{shard:06d}.done.json").read_text())
        assert marker["bytes"] == len(data) and marker["crc32"] == zlib.crc32(data)


def _legacy_shard(folder: Path, shard: int, block: FeatureBlock, *, crc: bool = True) -> None:
    """A shard as imgclust wrote them before Parquet: ``.npz`` + a marker without ``format``
    (and, older still, without ``crc32``)."""
    buf = io.BytesIO()
    np.savez(
        buf,
        paths=np.array(block.paths, dtype=str),
        sizes=np.asarray(block.sizes, dtype=np.int64),
        mtimes=np.asarray(block.mtimes, dtype=np.int64),
        logits=block.logits_array(N_CLASSES),
        embedding=block.embedding_array(DIM),
    )
    data = buf.getvalue()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"shard-{shard:06d}.npz").write_bytes(data)
    marker: dict[str, Any] = {"n": len(block.paths), "bytes": len(data), "rejected": []}
    if crc:
        marker["crc32"] = zlib.crc32(data)
    (folder / f"shard-{shard:06d}.done.json").write_text(json.dumps(marker))


@pytest.mark.parametrize("crc", [True, False], ids=["crc32", "older-marker-without-crc32"])
def test_npz_store_is_migrated_once_with_a_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, crc: bool
) -> None:
    folder = tmp_path / MODEL
    _legacy_shard(folder, 1, _block(A, 1), crc=crc)
    _legacy_shard(folder, 2, _block(B, 2), crc=crc)
    with FeatureStore(tmp_path, MODEL) as store:
        found = store.lookup(_records(A) + _records(B))
        assert store.damaged == [] and sorted(found.found) == sorted(A + B) and not found.todo
        got = store.load(A + B, found.found, arrays=("embedding", "logits"))
    assert _warned(caplog, "migrated 2 .npz shard(s) to Parquet")
    assert sorted(p.name for p in folder.glob("shard-*")) == [
        "shard-000001.done.json", "shard-000001.parquet",
        "shard-000002.done.json", "shard-000002.parquet",
    ]  # fmt: skip
    a, b = _block(A, 1), _block(B, 2)
    np.testing.assert_array_equal(
        got["embedding"], np.concatenate([a.embeddings[0], b.embeddings[0]])
    )
    np.testing.assert_array_equal(got["logits"], np.concatenate([a.logits[0], b.logits[0]]))
    caplog.clear()
    with FeatureStore(tmp_path, MODEL) as store:  # once: the next open finds Parquet only
        assert store.n_stored == len(A + B)
    assert not _warned(caplog, "migrated")


def test_a_migration_killed_half_way_is_finished_by_the_next_open(tmp_path: Path) -> None:
    folder = tmp_path / MODEL
    _legacy_shard(folder, 1, _block(A, 1))
    # Killed after the Parquet file was renamed into place, before its marker replaced the
    # old one: the old marker still describes the .npz, which is migrated again.
    (folder / "shard-000001.parquet").write_bytes(b"PAR1 half of a migration")
    with FeatureStore(tmp_path, MODEL) as store:
        found = store.lookup(_records(A))
        assert store.damaged == [] and sorted(found.found) == A
        got = store.load(A, found.found, arrays=("embedding",))["embedding"]
    np.testing.assert_array_equal(got, _block(A, 1).embeddings[0])
    assert not (folder / "shard-000001.npz").exists()


def test_stored_shards_are_plain_parquet_for_other_readers(pristine_store: Path) -> None:
    import pyarrow as pa
    import pyarrow.dataset as ds

    with FeatureStore(pristine_store, MODEL) as store:
        files = [str(p) for p in store.files()]
    table = ds.dataset(files, format="parquet").to_table()
    assert table.column("path").to_pylist() == A + B
    kind = table.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(kind) and kind.list_size == DIM
    assert kind.value_type == pa.float16()
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(
        emb, np.concatenate([_block(A, 1).embeddings[0], _block(B, 2).embeddings[0]])
    )
    top = np.stack(table.column("top_classes").to_numpy(zero_copy_only=False))
    logits = np.concatenate([_block(A, 1).logits[0], _block(B, 2).logits[0]]).astype(np.float32)
    np.testing.assert_array_equal(top[:, 0], logits.argmax(axis=1))
    assert (np.diff(np.take_along_axis(logits, top.astype(int), axis=1), axis=1) <= 0).all()


@FUZZ
@given(at=OFFSET, bit=BIT)
def test_shard_damaged_after_open_gives_a_store_error_naming_it(
    pristine_store: Path, at: int, bit: int
) -> None:
    with _copy(pristine_store) as root:
        with FeatureStore(root, MODEL) as store:
            found = store.lookup(_records(A))
            _flip(store.dir / SHARD, at, bit)  # after the check on open
            try:
                got = store.load(A, found.found, arrays=("logits", "embedding"))
            except StoreError as exc:
                assert str(store.dir / SHARD) in str(exc) and "delete it" in str(exc)
                return
        # Flips in zip bookkeeping the reader never uses (times, sizes it does not need).
        np.testing.assert_array_equal(got["logits"], _block(A, 1).logits[0])
        np.testing.assert_array_equal(got["embedding"], _block(A, 1).embeddings[0])


@pytest.mark.parametrize("keep", [0, 30, 0.5, -1])
def test_shard_truncated_after_open_gives_a_store_error(pristine_store: Path, keep: float) -> None:
    with _copy(pristine_store) as root, FeatureStore(root, MODEL) as store:
        found = store.lookup(_records(A))
        shard = store.dir / SHARD
        size = shard.stat().st_size
        _truncate(shard, int(size * keep) if isinstance(keep, float) else keep % size)
        with pytest.raises(StoreError, match=r"shard-000001\.parquet.*delete it"):
            list(store.iter_rows(A, found.found, "embedding"))


def test_a_failed_write_leaves_no_shard_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FeatureStore(tmp_path, MODEL) as store:
        store.write(_block(A, 1), N_CLASSES, DIM)
        calls = []
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            calls.append(fd)
            if len(calls) == 2:  # the marker's: the shard itself is already in place
                raise OSError(28, "No space left on device")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        with pytest.raises(StoreError, match="cannot write the feature store"):
            store.write(_block(B, 2), N_CLASSES, DIM)
        monkeypatch.undo()
    assert not list((tmp_path / MODEL).glob("*.tmp*"))
    with FeatureStore(tmp_path, MODEL) as store:
        found = store.lookup(_records(A) + _records(B))
        assert sorted(found.found) == A and [r.path for r in found.todo] == B
        assert store.damaged == []


# --------------------------------------------------------------------- saved clustering


@pytest.fixture(scope="module")
def pristine_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output folder: a saved clustering of A + B, its index, and its store inside."""
    out = tmp_path_factory.mktemp("out")
    marker = out / ".imgclust"
    store_root = marker / "store"
    with FeatureStore(store_root, MODEL) as store:
        store.write(_block(A, 1), N_CLASSES, DIM)
        store.write(_block(B, 2), N_CLASSES, DIM)
    saved = _saved(A + B, store_root)
    save_clustering(marker, saved, _build_index(_features(saved)))
    return out


def _saved(paths: list[str], store_dir: Path) -> SavedClustering:
    n = len(paths)
    labels = np.arange(n) % 2
    return from_parts(
        model=MODEL,
        features="embedding",
        store_dir=str(store_dir),
        centroids=np.eye(2, DIM, dtype=np.float32),
        fences=np.array([1.0, 1.5], np.float32),
        names=["first", "second"],
        cluster_top_classes=[(("espresso", 0.5),), (("tabby", 0.25),)],
        medoids=np.array([0, 1]),
        paths=paths,
        labels=labels,
        distances=np.linspace(0, 1, n, dtype=np.float32),
        outliers=np.arange(n) % 7 == 0,
        top_class_ids=np.tile([1, 2, 3], (n, 1)),
        top_class_scores=np.tile([0.5, 0.25, 0.125], (n, 1)),
        rejected=[Rejection("/photos/bad.jpg", "corrupt")],
        report=ReportConfig(),
    )


def _features(saved: SavedClustering) -> np.ndarray:
    a, b = _block(A, 1), _block(B, 2)
    return features_of(
        saved,
        logits=np.concatenate([a.logits[0], b.logits[0]]),
        embedding=np.concatenate([a.embeddings[0], b.embeddings[0]]),
    )


def _assert_same(got: SavedClustering, want: SavedClustering) -> None:
    assert list(got.paths) == list(want.paths) and list(got.names) == list(want.names)
    np.testing.assert_array_equal(got.labels, want.labels)
    np.testing.assert_array_equal(got.centroids, want.centroids)
    np.testing.assert_array_equal(got.top_class_scores, want.top_class_scores)


@FUZZ
@given(at=OFFSET, bit=BIT)
def test_flipped_bit_in_model_file_gives_input_error_or_the_same_data(
    pristine_out: Path, at: int, bit: int
) -> None:
    want = load_clustering(pristine_out / ".imgclust")
    with _copy(pristine_out) as out:
        path = out / ".imgclust" / MODEL_FILE
        _flip(path, at, bit)
        try:
            got = load_clustering(out / ".imgclust")
        except InputError as exc:
            assert str(path) in str(exc) and "imgclust run" in str(exc)
            return
        _assert_same(got, want)  # a zip field no reader uses (e.g. a file time)


@pytest.mark.parametrize("keep", [0, 1, 30, 0.5, -1])
def test_truncated_model_file_gives_input_error(pristine_out: Path, keep: float) -> None:
    with _copy(pristine_out) as out:
        path = out / ".imgclust" / MODEL_FILE
        size = path.stat().st_size
        _truncate(path, int(size * keep) if isinstance(keep, float) else keep % size)
        with pytest.raises(InputError, match=re.escape(str(path)) + ".*imgclust run"):
            load_clustering(out / ".imgclust")


def test_model_file_checksum_catches_changed_arrays(pristine_out: Path) -> None:
    """A well-formed ``model.npz`` whose arrays no longer match its checksum is refused."""
    with _copy(pristine_out) as out:
        path = out / ".imgclust" / MODEL_FILE
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files}
        arrays["labels"] = arrays["labels"][::-1].copy()
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
        with pytest.raises(InputError, match=re.escape(str(path)) + ".*checksum"):
            load_clustering(out / ".imgclust")


def test_old_model_file_without_checksums_still_loads(pristine_out: Path) -> None:
    want = load_clustering(pristine_out / ".imgclust")
    with _copy(pristine_out) as out:
        path = out / ".imgclust" / MODEL_FILE
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files if name != "crc32"}
        meta = json.loads(arrays["meta"].tobytes())
        meta.pop("index_crc32")
        meta["store_dir"] = str(out / ".imgclust" / "store")  # saved absolute, as before
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
        got = load_clustering(out / ".imgclust")
        _assert_same(got, want)
        assert read_index(out / ".imgclust", len(got.paths), saved=got).ntotal == len(A + B)


def _assert_exact_neighbours(index: object, saved: SavedClustering) -> None:
    feats = _features(saved)
    _, ids = index.search(np.ascontiguousarray(feats, np.float32), 2)  # type: ignore[attr-defined]
    sq = ((feats[:, None, :] - feats[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(sq, np.inf)
    np.testing.assert_array_equal(ids[:, 0], np.arange(len(feats)))  # itself first
    np.testing.assert_array_equal(ids[:, 1], sq.argmin(1))


@FUZZ
@given(at=OFFSET, bit=BIT)
def test_flipped_bit_in_index_is_rebuilt_from_the_store(
    pristine_out: Path, caplog: pytest.LogCaptureFixture, at: int, bit: int
) -> None:
    caplog.clear()
    with _copy(pristine_out) as out:
        marker = out / ".imgclust"
        _flip(marker / INDEX_FILE, at, bit)
        saved = load_clustering(marker)
        index = read_index(marker, len(saved.paths), saved=saved)
        assert _warned(caplog, str(marker / INDEX_FILE))
        _assert_exact_neighbours(index, saved)
        caplog.clear()  # the rebuilt index was written back: checked clean next time
        _assert_exact_neighbours(read_index(marker, len(saved.paths), saved=saved), saved)
        assert not _warned(caplog, INDEX_FILE)


@pytest.mark.parametrize("keep", [0, 10, 0.5, -1])
def test_truncated_index_is_rebuilt_without_being_handed_the_clustering(
    pristine_out: Path, caplog: pytest.LogCaptureFixture, keep: float
) -> None:
    with _copy(pristine_out) as out:
        marker = out / ".imgclust"
        size = (marker / INDEX_FILE).stat().st_size
        _truncate(marker / INDEX_FILE, int(size * keep) if isinstance(keep, float) else keep % size)
        index = read_index(marker, len(A + B))  # as today's callers call it
        assert _warned(caplog, str(marker / INDEX_FILE))
        _assert_exact_neighbours(index, load_clustering(marker))


@pytest.mark.parametrize("store", ["deleted", "without shard 2"])
def test_damaged_index_without_its_features_gives_input_error(
    pristine_out: Path, store: str
) -> None:
    with _copy(pristine_out) as out:
        marker = out / ".imgclust"
        if store == "deleted":
            shutil.rmtree(marker / "store")
        else:
            (marker / "store" / MODEL / "shard-000002.parquet").unlink()
        _flip(marker / INDEX_FILE, 100, 3)
        saved = load_clustering(marker)
        fix = re.escape(str(marker / INDEX_FILE)) + ".*imgclust run"
        with pytest.raises(InputError, match=fix):
            read_index(marker, len(saved.paths), saved=saved)
        assert (store == "deleted") != (marker / "store").exists()  # nothing made


def test_store_inside_out_is_saved_relative(pristine_out: Path) -> None:
    with np.load(pristine_out / ".imgclust" / MODEL_FILE) as data:
        meta = json.loads(data["meta"].tobytes())
    assert meta["store_dir"] == "store"
    with _copy(pristine_out) as out:
        assert load_clustering(out / ".imgclust").store_dir == str(out / ".imgclust" / "store")


def test_store_outside_out_is_saved_absolute(tmp_path: Path) -> None:
    marker = tmp_path / "out" / ".imgclust"
    marker.mkdir(parents=True)
    cache = tmp_path / "cache"
    saved = _saved(A, cache)
    save_clustering(marker, saved, _build_index(np.zeros((len(A), DIM), np.float32)))
    with np.load(marker / MODEL_FILE) as data:
        assert json.loads(data["meta"].tobytes())["store_dir"] == str(cache)
    assert load_clustering(marker).store_dir == str(cache)


# ------------------------------------------------------------------------------ real runs

SCENES = ("coffee", "chelsea")


@pytest.fixture(scope="module")
def clustered(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(photos, out): two demo scenes clustered by a real run."""
    photos = tmp_path_factory.mktemp("coll") / "photos"
    for scene in SCENES:
        shutil.copytree(demo_photos / scene, photos / scene)
    out = tmp_path_factory.mktemp("out") / "out"
    cluster_folder([photos], out=out, k=len(SCENES), workers=0)
    return photos, out


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_copied_output_folder_uses_its_own_store(
    clustered: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from imgclust.assign import assign_folder
    from imgclust.similar import find_similar

    _, pristine = clustered
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(pristine, first)
    shutil.copytree(first, second)
    shutil.rmtree(first / ".imgclust" / "store")
    before = _snapshot(first)

    saved = load_clustering(second / ".imgclust")
    assert saved.store_dir == str(second / ".imgclust" / "store")
    query = next(p for p in saved.paths if "/coffee/" in p)
    _flip(second / ".imgclust" / INDEX_FILE, 4000, 5)  # rebuilt from second's store
    result = find_similar(Path(query), second, n=3, device="cpu")
    assert _warned(caplog, INDEX_FILE)
    assert all("/coffee/" in nb.path for nb in result.neighbours)

    new = tmp_path / "new"
    new.mkdir()
    ImageOps.mirror(Image.open(query)).save(new / "mirrored.jpg", quality=85)
    assigned = assign_folder([new], second, workers=0)
    assert assigned.paths == [str(new / "mirrored.jpg")]
    assert _snapshot(first) == before  # nothing written into the folder copied from


def test_run_embeds_a_damaged_shard_again(clustered: tuple[Path, Path], tmp_path: Path) -> None:
    photos, pristine = clustered
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    (shard,) = (out / ".imgclust" / "store").glob(f"*/{SHARD}")
    _flip(shard, shard.stat().st_size // 2, 2)
    result = cluster_folder([photos], out=out, k=len(SCENES), workers=0)
    assert result.n_embedded == len(result.paths) > 0
    assert shard.with_name(SHARD + ".damaged").exists()
    again = cluster_folder([photos], out=out, k=len(SCENES), workers=0)
    assert again.n_embedded == 0
