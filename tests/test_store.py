"""Feature store: round trip, torn shards, changed files, locking (damage: test_integrity)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from imgclust.embed import FeatureBlock
from imgclust.exceptions import StoreError
from imgclust.scan import FileRecord
from imgclust.store import FeatureStore, Location


def _block(paths: list[str], seed: int = 0) -> FeatureBlock:
    rng = np.random.default_rng(seed)
    n = len(paths)
    return FeatureBlock(
        paths=list(paths),
        sizes=[100 + i for i in range(n)],
        mtimes=[1000 + i for i in range(n)],
        logits=[rng.normal(size=(n, 4)).astype(np.float16)],
        embeddings=[rng.normal(size=(n, 3)).astype(np.float16)],
    )


def _records(block: FeatureBlock) -> list[FileRecord]:
    return [
        FileRecord(p, s, t) for p, s, t in zip(block.paths, block.sizes, block.mtimes, strict=True)
    ]


def test_round_trip_and_lookup(tmp_path: Path) -> None:
    block = _block(["/a.jpg", "/b.jpg", "/caf\udce9.jpg"])
    block.rejected.append((FileRecord("/bad.jpg", 5, 6), "corrupt"))
    with FeatureStore(tmp_path, "m") as store:
        store.write(block, 4, 3)
    with FeatureStore(tmp_path, "m") as store:
        records = [*_records(block), FileRecord("/bad.jpg", 5, 6), FileRecord("/new.jpg", 1, 1)]
        found = store.lookup(records)
        assert sorted(found.found) == sorted(block.paths)
        assert [r.reason for r in found.rejected] == ["corrupt"]
        assert [r.path for r in found.todo] == ["/new.jpg"]
        got = store.load(block.paths[::-1], found.found, arrays=("logits", "embedding"))
        np.testing.assert_array_equal(got["logits"], block.logits[0][::-1])
        np.testing.assert_array_equal(got["embedding"], block.embeddings[0][::-1])


def test_changed_file_is_todo(tmp_path: Path) -> None:
    block = _block(["/a.jpg"])
    with FeatureStore(tmp_path, "m") as store:
        store.write(block, 4, 3)
        assert store.lookup([FileRecord("/a.jpg", 100, 9999)]).todo
        assert store.lookup([FileRecord("/a.jpg", 7, 1000)]).todo


def test_torn_shard_is_removed_and_redone(tmp_path: Path) -> None:
    with FeatureStore(tmp_path, "m") as store:
        store.write(_block(["/a.jpg"]), 4, 3)
        store.write(_block(["/b.jpg"]), 4, 3)
        shard_dir = store.dir
    (shard_dir / "shard-000002.done.json").unlink()  # killed before the marker was written
    (shard_dir / "shard-000003.parquet.tmp123").write_bytes(b"partial")
    with FeatureStore(tmp_path, "m") as store:
        found = store.lookup(_records(_block(["/a.jpg"])) + _records(_block(["/b.jpg"])))
        assert list(found.found) == ["/a.jpg"] and [r.path for r in found.todo] == ["/b.jpg"]
    assert not (shard_dir / "shard-000002.parquet").exists()
    assert not list(shard_dir.glob("*.tmp*"))


def test_truncated_shard_with_marker_is_not_trusted(tmp_path: Path) -> None:
    with FeatureStore(tmp_path, "m") as store:
        store.write(_block(["/a.jpg", "/b.jpg"]), 4, 3)
        path = store.dir / "shard-000001.parquet"
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) // 2)
    with FeatureStore(tmp_path, "m") as store:
        assert store.n_stored == 0 and store.damaged == [path]
    assert path.with_name(path.name + ".damaged").exists()


def test_locate_ignores_what_the_file_is_like_now(tmp_path: Path) -> None:
    block = _block(["/a.jpg", "/b.jpg"])
    with FeatureStore(tmp_path, "m") as store:
        store.write(block, 4, 3)
        newer = store.write(_block(["/b.jpg"], seed=3), 4, 3)
        assert not store.lookup([FileRecord("/a.jpg", 1, 1)]).found  # edited since
        assert store.locate(["/a.jpg", "/b.jpg", "/never.jpg"]) == {
            "/a.jpg": Location(1, 0),
            "/b.jpg": Location(newer, 0),
        }


def test_newest_shard_wins(tmp_path: Path) -> None:
    with FeatureStore(tmp_path, "m") as store:
        store.write(_block(["/a.jpg"], seed=1), 4, 3)
        newer = _block(["/a.jpg"], seed=2)
        store.write(newer, 4, 3)
    with FeatureStore(tmp_path, "m") as store:
        found = store.lookup(_records(newer))
        got = store.load(["/a.jpg"], found.found, arrays=("logits",))
        np.testing.assert_array_equal(got["logits"], newer.logits[0])


def test_second_user_gets_a_clear_error(tmp_path: Path) -> None:
    with FeatureStore(tmp_path, "m"), pytest.raises(StoreError, match="another imgclust run"):
        FeatureStore(tmp_path, "m").open()


def test_a_shard_written_elsewhere_is_checked_and_adopted(tmp_path: Path) -> None:
    import pickle

    block = _block(["/a.jpg", "/b.jpg"])
    block.rejected.append((FileRecord("/bad.jpg", 5, 6), "corrupt"))
    with FeatureStore(tmp_path, "m") as store:
        store.write(_block(["/old.jpg"]), 4, 3)
        first, second, third = store.reserve(3)
        assert (first, second, third) == (2, 3, 4)
        writer = pickle.loads(pickle.dumps(store.writer()))  # as a Ray actor gets it
        writer.write(second, block, 4, 3)
        writer.write(third, _block(["/c.jpg"]), 4, 3)
        (store.dir / f"shard-{third:06d}.parquet").write_bytes(b"damaged on the way")
        assert not store.lookup(_records(block)).found  # not adopted yet
        assert store.adopt(second) and not store.adopt(first)  # first: never written
        assert not store.adopt(third) and store.damaged == [store.dir / "shard-000004.parquet"]
        found = store.lookup([*_records(block), FileRecord("/bad.jpg", 5, 6)])
        assert found.found == {"/a.jpg": Location(second, 0), "/b.jpg": Location(second, 1)}
        assert [r.reason for r in found.rejected] == ["corrupt"]
        assert store.write(_block(["/d.jpg"]), 4, 3) == 5  # after every reserved number
    with FeatureStore(tmp_path, "m") as store:  # and a later open finds the same
        assert sorted(store.locate(["/a.jpg", "/b.jpg", "/c.jpg", "/d.jpg"])) == [
            "/a.jpg", "/b.jpg", "/d.jpg",
        ]  # fmt: skip
        got = store.load(["/b.jpg"], store.locate(["/b.jpg"]), arrays=("embedding",))
        np.testing.assert_array_equal(got["embedding"], block.embeddings[0][1:])
