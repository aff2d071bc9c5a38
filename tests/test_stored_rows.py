"""A run whose clustering runs as passes over the store's shards (the Ray engine on several
nodes) never loads the feature matrix: :class:`~imgclust.store.StoredRows` reads the rows a
later stage asks for (the groups' and the map's samples, the map's placement in order, a
carried edit's members) from the shards, and no similarity index is written (the first
command that needs one builds it from the store).

Here on the local engine declaring its clustering to be such passes (it clusters rows it
reads whole, as the passes' result equals the local clustering: ``test_ray.py``), so that
every stage after the clustering meets ``StoredRows`` and must give what it gives on the
loaded matrix: the same exports, map included, byte for byte."""

from __future__ import annotations

import csv
import logging
import pickle
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import imgclust.pipeline
from imgclust.cli import app
from imgclust.cluster import KMeans, row_features
from imgclust.cluster.distributed import DISTRIBUTED_KINDS
from imgclust.embed import FeatureBlock
from imgclust.engines.local import LocalEngine
from imgclust.state import INDEX_FILE, load_clustering
from imgclust.store import FeatureStore, StoredRows, rows_by_group

runner = CliRunner()
DIM = 6


def _store(
    root: Path, sizes: list[int], seed: int
) -> tuple[FeatureStore, list[str], dict[str, Any], np.ndarray]:
    """Shards of ``sizes`` rows; the paths dealt over them in a shuffled order (as a store
    that grew run by run), so rows in path order jump between shards. Returns the store,
    the paths, where each is, and the embeddings."""
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    paths = [f"/p/{i:04d}.jpg" for i in range(n)]
    dealt = rng.permutation(n)
    emb = rng.normal(size=(n, DIM)).astype(np.float16)
    store = FeatureStore(root, "m")
    with store:
        start = 0
        for size in sizes:
            rows = dealt[start : start + size]
            start += size
            store.write(
                FeatureBlock(
                    paths=[paths[i] for i in rows], sizes=[1] * size, mtimes=[1] * size,
                    logits=[np.zeros((size, 3), np.float16)], embeddings=[emb[rows]],
                ),
                3, DIM,
            )  # fmt: skip
        found = store.locate(paths)
    return store, paths, found, emb


def _keys(n: int) -> st.SearchStrategy[Any]:
    index = st.integers(-n, n - 1)
    return st.one_of(
        index,
        st.builds(
            slice,
            st.none() | st.integers(-n - 2, n + 2),
            st.none() | st.integers(-n - 2, n + 2),
            st.none() | st.integers(1, 4) | st.integers(-3, -1),
        ),
        st.lists(index, max_size=2 * n).map(lambda v: np.array(v, dtype=np.int64)),
        st.lists(st.booleans(), min_size=n, max_size=n).map(np.array),
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=6),
    seed=st.integers(0, 9),
)
def test_stored_rows_give_what_the_loaded_matrix_gives(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, sizes: list[int], seed: int
) -> None:
    store, paths, found, _ = _store(tmp_path_factory.mktemp("rows"), sizes, seed)
    kind = data.draw(st.sampled_from(["embedding", "embedding-centred"]), "kind")

    def transform(_: str, rows: np.ndarray) -> np.ndarray:
        return row_features(kind, rows)

    loaded = store.load(paths, found, arrays=("embedding",), transform=transform)["embedding"]
    # No cache, one shard's worth, all: the rows are the same (the cache only saves reads).
    budget = data.draw(st.sampled_from([0, 9 * DIM * 2, 1 << 20]), "cache bytes")
    rows = StoredRows(
        store, paths, found, "embedding", DIM, transform=transform, cache_bytes=budget
    )
    assert rows.shape == loaded.shape and len(rows) == len(paths) and rows.dtype == loaded.dtype
    for _ in range(3):
        key = data.draw(_keys(len(paths)), "key")
        got = rows[key]
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got, loaded[key])
    with pytest.raises(IndexError):
        rows[len(paths)]
    with pytest.raises(TypeError):
        rows[0, 1]


def test_rows_read_in_order_read_each_shard_once(tmp_path: Path) -> None:
    sizes = [7, 1, 5, 9, 3]
    store, paths, found, emb = _store(tmp_path, sizes, 0)
    rows = StoredRows(store, paths, found, "embedding", DIM)
    # Rows dealt at random over the shards: in path order each block touches most of them,
    # and the cache (ample here) keeps them, so each is read once however the blocks fall.
    for start in range(0, len(paths), 4):
        np.testing.assert_array_equal(rows[start : start + 4], emb[start : start + 4])
    assert rows.shards_read == len(sizes)
    # With no room kept, a shard is read again whenever a later block needs it.
    tight = StoredRows(store, paths, found, "embedding", DIM, cache_bytes=0)
    for start in range(0, len(paths), 4):
        np.testing.assert_array_equal(tight[start : start + 4], emb[start : start + 4])
    assert tight.shards_read > len(sizes)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), sizes=st.lists(st.integers(1, 9), min_size=1, max_size=5))
def test_rows_by_group_read_each_shard_once(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, sizes: list[int]
) -> None:
    """Each group's rows in turn, whatever the budget (0: spilled to a scratch file; ample:
    one read), each shard read at most once (no shard kept between reads here)."""
    root = tmp_path_factory.mktemp("groups")
    store, paths, found, emb = _store(root, sizes, 1)
    n = len(paths)
    groups = data.draw(
        st.lists(
            st.lists(st.integers(-n, n - 1), max_size=n).map(lambda v: np.array(v, np.int64)),
            max_size=6,
        ),
        "groups",
    )
    budget = data.draw(st.sampled_from([0, DIM * 2 * 3, 1 << 20]), "budget")
    scratch = root / "scratch"
    scratch.mkdir()
    rows = StoredRows(store, paths, found, "embedding", DIM, cache_bytes=0, scratch=scratch)
    got = list(rows_by_group(rows, groups, budget=budget))
    assert len(got) == len(groups) and rows.shards_read <= len(sizes)
    for g, part in zip(groups, got, strict=True):
        np.testing.assert_array_equal(part, emb[g])
    assert not list(scratch.iterdir())  # the scratch file is gone
    for g, part in zip(groups, rows_by_group(emb, groups), strict=True):  # (a loaded matrix)
        np.testing.assert_array_equal(part, emb[g])


class PassesEngine(LocalEngine):
    """The local engine, declaring that it clusters as passes over the shards, as the Ray
    engine does on several nodes (k-means of a distributed kind; ``on``): the pipeline then
    hands it :class:`StoredRows`, and here it clusters the rows it reads from them whole."""

    on = True

    def clusters_in_passes(self, clusterer: Any, kind: str) -> bool:
        return self.on and type(clusterer) is KMeans and kind in DISTRIBUTED_KINDS

    def fit_clusters(self, features: Any, paths: Any, clusterer: Any, **kw: Any) -> Any:
        passes = self.clusters_in_passes(clusterer, kw["rows"].kind)
        assert isinstance(features, StoredRows) == passes
        return super().fit_clusters(features[:] if passes else features, paths, clusterer, **kw)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _run(photos: Path, out: Path, *options: str) -> str:
    args = ["run", str(photos), "--out", str(out), "--seed", "3", "--quiet", "--workers", "0"]
    result = runner.invoke(app, [*args, *options])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


@pytest.fixture
def in_passes(monkeypatch: pytest.MonkeyPatch) -> type[PassesEngine]:
    """Runs on :class:`PassesEngine` (set ``on`` to ``False`` for a run on the matrix)."""
    monkeypatch.setattr(imgclust.pipeline, "create_engine", lambda _: PassesEngine())
    monkeypatch.setattr(PassesEngine, "on", True)
    return PassesEngine


@pytest.fixture(scope="module")
def loaded_run(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A plain local run of four scenes (its store then serves the passes' runs)."""
    photos = tmp_path_factory.mktemp("passes") / "photos"
    for scene in ("coffee", "chelsea", "rocket", "moon"):
        shutil.copytree(demo_photos / scene, photos / scene)
    out = photos.parent / "loaded"
    _run(photos, out, "--k", "4", "--algorithm", "kmeans")
    return photos, out


def test_a_run_clustered_in_passes_writes_what_a_loaded_run_writes(
    loaded_run: tuple[Path, Path],
    tmp_path: Path,
    in_passes: type[PassesEngine],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from imgclust.similar import find_similar

    photos, loaded = loaded_run
    out = tmp_path / "passes"
    store = loaded / ".imgclust" / "store"
    _run(photos, out, "--k", "4", "--algorithm", "kmeans", "--cache", str(store))
    for name in ("assignments.csv", "clusters.csv", "rejected.csv"):  # the map's x/y too
        assert _rows(out / name) == _rows(loaded / name), name
    assert (out / "map.html").read_bytes() == (loaded / "map.html").read_bytes()
    # No index: model.npz records none, and the first command that needs one builds it.
    assert not (out / ".imgclust" / INDEX_FILE).exists()
    assert load_clustering(out / ".imgclust").index_crc32 is None
    query = next(r["path"] for r in _rows(loaded / "assignments.csv") if "/rocket/" in r["path"])
    before = load_clustering(out / ".imgclust")
    with caplog.at_level(logging.INFO, logger="imgclust"):
        near = find_similar(Path(query), out, n=4, device="cpu")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "built" in caplog.text and INDEX_FILE in caplog.text
    same = find_similar(Path(query), loaded, n=4, device="cpu")
    assert [(n.path, n.distance) for n in near.neighbours] == [
        (n.path, n.distance) for n in same.neighbours
    ]
    assert (out / ".imgclust" / INDEX_FILE).exists()
    after = load_clustering(out / ".imgclust")
    assert after.index_crc32 is not None
    # model.npz, written again to record the index, holds the same clustering as before.
    assert pickle.dumps(replace(after, index_crc32=None)) == pickle.dumps(before)


@pytest.mark.slow
def test_review_edits_are_carried_by_a_run_clustered_in_passes(
    loaded_run: tuple[Path, Path], tmp_path: Path, in_passes: type[PassesEngine]
) -> None:
    pytest.importorskip("starlette", reason="pip install 'imgclust[review]'")
    from test_review import Session

    photos, loaded = loaded_run
    out = tmp_path / "passes"
    options = ("--k", "4", "--algorithm", "kmeans", "--cache", str(loaded / ".imgclust" / "store"))
    _run(photos, out, *options)
    rows = _rows(out / "assignments.csv")
    rockets = sorted(r["path"] for r in rows if "/rocket/" in r["path"])
    rocket = next(r["cluster"] for r in rows if r["path"] == rockets[0])
    coffee = next(r["cluster"] for r in rows if "/coffee/" in r["path"])
    s = Session(out)  # (builds the index, quietly)
    s.edit(op="rename", cluster=int(rocket), name="Launch day")
    s.edit(op="move", paths=rockets[:1], to=int(coffee))  # centroids from the moved rows
    s.edit(op="exclude", paths=rockets[1:2])
    s.close()
    text = _run(photos, out, *options)
    assert "review edits carried over: 3 of 3" in text
    by_path = {r["path"]: r for r in _rows(out / "assignments.csv")}
    assert (
        by_path[rockets[0]]["cluster"]
        == by_path[next(p for p in by_path if "/coffee/" in p)]["cluster"]
    )
    assert rockets[1] not in by_path
    assert by_path[rockets[2]]["cluster_name"] == "Launch day"
    assert not (out / ".imgclust" / INDEX_FILE).exists()
    again = Session(out)  # the carried state, its index built from the store
    assert "Launch day" in {c["name"] for c in again.state()["clusters"]}
    again.close()


@pytest.mark.parametrize("n", [1, 2, 3, 9])
def test_any_size_clusters_in_passes(
    n: int, loaded_run: tuple[Path, Path], tmp_path: Path, in_passes: type[PassesEngine]
) -> None:
    """From one photo up (k lowered, clusters of one, a map of one disc): the same as the
    same run on the loaded matrix."""
    photos, _ = loaded_run
    few = tmp_path / "few"
    few.mkdir()
    for src in sorted(photos.rglob("*.jpg"))[:n]:
        shutil.copy(src, few / src.name)
    # (copies: new paths, embedded into this test's own store)
    out, local = tmp_path / "passes", tmp_path / "local"
    _run(few, out, "--algorithm", "kmeans", "--k", "4", "--cache", str(tmp_path / "store"))
    in_passes.on = False
    _run(few, local, "--algorithm", "kmeans", "--k", "4", "--cache", str(tmp_path / "store"))
    assert not (out / ".imgclust" / INDEX_FILE).exists()
    assert (local / ".imgclust" / INDEX_FILE).exists()
    for name in ("assignments.csv", "clusters.csv"):
        assert _rows(out / name) == _rows(local / name), name
    assert len(_rows(out / "assignments.csv")) == n


@pytest.mark.parametrize("algorithm", ["agglomerative", "spectral", "hdbscan", "auto"])
def test_other_algorithms_still_load_the_matrix(
    algorithm: str, loaded_run: tuple[Path, Path], tmp_path: Path, in_passes: type[PassesEngine]
) -> None:
    photos, loaded = loaded_run
    out = tmp_path / "out"
    _run(photos, out, "--algorithm", algorithm, "--cache", str(loaded / ".imgclust" / "store"))
    assert (out / ".imgclust" / INDEX_FILE).exists()


def test_a_scratch_file_that_cannot_be_written_is_said_so(tmp_path: Path) -> None:
    from imgclust.exceptions import OutputError

    store, paths, found, _ = _store(tmp_path, [4, 4], 0)
    gone = tmp_path / "gone"
    rows = StoredRows(store, paths, found, "embedding", DIM, scratch=gone)
    with pytest.raises(OutputError, match=r"cannot write a scratch file .* in .*gone: "):
        list(rows_by_group(rows, [np.arange(4), np.arange(4, 8)], budget=0))
