"""Every folder size, every algorithm, every k: the sweep that guards the pipeline's edges.

The matrix runs the real command (``imgclust run``, in process) on folders of 0 to 101
small photos whose features are already in a feature store (synthetic, grouped), so no model
runs and each case takes a fraction of a second. Every case must exit cleanly, report as many
clusters as the CSVs hold, and put every scanned file in exactly one CSV. A hypothesis test
sweeps the cluster layer itself over random matrices (duplicates and zero rows included).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from typer.testing import CliRunner

from imgclust.cli import app
from imgclust.cluster import create_clusterer, list_clusterers
from imgclust.config import EmbedConfig, default_k
from imgclust.embed import FeatureBlock, model_for
from imgclust.models import get_spec
from imgclust.scan import FileRecord
from imgclust.store import FeatureStore

SIZES = (0, 1, 2, 3, 5, 11, 20, 60, 101)
ALGORITHMS = tuple(list_clusterers())


def _ks(n: int) -> list[str | None]:
    """k as a user gives it: the default, 2, n-1, n, n+5, auto (each once)."""
    numbers = [str(k) for k in (2, n - 1, n, n + 5) if k >= 1]
    return [None, *dict.fromkeys(numbers), "auto"]


def _grouped_features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits and unit embeddings of ``n`` photos in about ``n / 8`` groups."""
    rng = np.random.default_rng(seed)
    spec = get_spec(model_for(EmbedConfig()))
    groups = rng.integers(0, max(1, n // 8), n)
    centres = rng.normal(size=(max(1, n // 8), spec.embedding_dim))
    emb = centres[groups] + 0.4 * rng.normal(size=(n, spec.embedding_dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    logits = rng.normal(size=(n, spec.n_classes))
    logits[np.arange(n), groups * 7 % spec.n_classes] += 6.0  # each group has its own class
    return logits.astype(np.float32), emb.astype(np.float32)


@pytest.fixture(scope="module")
def collections(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, Path]]:
    """Per size: a folder of ``n`` photos (+ one corrupt file from 2 up) and a store that
    already holds their features and the corrupt file's rejection."""
    spec = get_spec(model_for(EmbedConfig()))
    made = {}
    for n in SIZES:
        root = tmp_path_factory.mktemp(f"n{n}")
        photos, store_dir = root / "photos", root / "store"
        photos.mkdir()
        block = FeatureBlock()
        logits, emb = _grouped_features(n, seed=n)
        for i in range(n):
            path = photos / f"p{i:03d}.png"
            Image.new("RGB", (24, 16), (i * 37 % 256, i * 11 % 256, 90)).save(path)
            st_ = path.stat()
            block.paths.append(str(path))
            block.sizes.append(st_.st_size)
            block.mtimes.append(st_.st_mtime_ns)
        block.logits, block.embeddings = [logits], [emb]
        if n >= 2:
            bad = photos / "corrupt.jpg"
            bad.write_bytes(b"not a jpeg")
            st_ = bad.stat()
            record = FileRecord(str(bad), st_.st_size, st_.st_mtime_ns)
            block.rejected.append((record, "cannot identify image file"))
        with FeatureStore(store_dir, spec.name) as store:
            store.write(block, spec.n_classes, spec.embedding_dim)
        made[n] = (photos, store_dir)
    return made


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


CASES = [(n, a, k) for n in SIZES for a in ALGORITHMS for k in _ks(n)]


@pytest.mark.slow
@pytest.mark.parametrize("n,algorithm,k", CASES, ids=[f"n{n}-{a}-k{k}" for n, a, k in CASES])
def test_every_size_algorithm_and_k(
    collections: dict[int, tuple[Path, Path]],
    tmp_path: Path,
    n: int,
    algorithm: str,
    k: str | None,
) -> None:
    photos, store_dir = collections[n]
    out = tmp_path / "out"
    args = ["run", str(photos), "--out", str(out), "--cache", str(store_dir), "-q"]
    args += ["--algorithm", algorithm, "--workers", "0"] + (["--k", k] if k else [])
    res = CliRunner().invoke(app, args)
    text = res.output
    assert "Traceback" not in text
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    files = sorted(str(p) for p in photos.iterdir())
    if n == 0:
        assert res.exit_code == 2 and "no image could be clustered" in text
        assert not out.exists()  # a run that did no work leaves nothing behind
        return
    assert res.exit_code == 0, text
    said = int(re.search(r"clustered into (\d+) clusters?\b", text).group(1))  # type: ignore[union-attr]
    assigned = _rows(out / "assignments.csv")
    rejected = _rows(out / "rejected.csv")
    clusters = [r for r in _rows(out / "clusters.csv") if int(r["cluster"]) >= 0]
    labels = {int(r["cluster"]) for r in assigned}
    assert said == len(clusters) == len(labels - {-1})
    for r in clusters:  # what sets a cluster apart, never filler at a score of 0
        shown = [float(c.rsplit(":", 1)[1]) for c in r["distinctive_classes"].split("|") if c]
        assert all(score >= 0 for score in shown), r
        assert shown or said == 1, r
    if said == 1 and algorithm != "hdbscan":  # one cluster is the collection: nothing apart
        assert clusters[0]["distinctive_classes"] == "", clusters[0]
    assert sorted(labels - {-1}) == list(range(said))  # ids 0..k-1, none empty
    paths = [r["path"] for r in assigned] + [r["path"] for r in rejected]
    assert sorted(paths) == files  # every file in exactly one CSV
    assert len(assigned) == n
    if algorithm == "hdbscan":  # the data decides how many; the unclustered are apart (-1)
        noise = [r for r in _rows(out / "clusters.csv") if int(r["cluster"]) < 0]
        assert all(r["name"] == "unclustered" for r in noise)  # not some classes' name
        assert all(r["cluster_name"] == "unclustered" for r in assigned if r["cluster"] == "-1")
        return
    if k is None:  # the default: 100, or 1.6 sqrt(n) for a small collection, said so
        assert said <= default_k(n)
        assert f"k = {default_k(n)} for" in text
    elif k != "auto":
        asked = int(k)
        assert said <= min(asked, n)
        if asked > n:
            assert f"k lowered from {asked} to {n}" in text
        elif said < asked:
            assert f"not the {asked} asked for" in text
    assert (out / "index.html").is_file() and (out / "map.html").is_file()
    shown = f"map of {n:,} {'image' if n == 1 else 'images'} "
    assert shown in (out / "map.html").read_text("utf-8")


# -- the cluster layer, over random matrices ------------------------------------------------


@st.composite
def _matrices(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 12))
    # Values on a half-unit grid: distinct rows are far apart in float32 (no subnormals or
    # near-ties that no algorithm can tell apart), and equal rows are common.
    grid = draw(arrays(np.int8, (n, d), elements=st.integers(-8, 8)))
    base = grid.astype(np.float32) / 2
    if draw(st.booleans()):  # exact duplicates, as re-saved photos give
        base[: n // 2] = base[0]
    if draw(st.booleans()):  # unit rows, like the default embedding
        norms = np.linalg.norm(base, axis=1, keepdims=True)
        base = np.where(norms > 0, base / np.maximum(norms, 1e-12), base)
    return base


@pytest.mark.slow
@settings(
    max_examples=int(os.environ.get("IMGCLUST_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    x=_matrices(), algorithm=st.sampled_from(ALGORITHMS), k=st.one_of(st.none(), st.integers(1, 50))
)
def test_every_clusterer_holds_its_contract(x: np.ndarray, algorithm: str, k: int | None) -> None:
    model = create_clusterer(algorithm, k, random_state=0).fit(x)
    labels = np.asarray(model.labels_)
    assert labels.shape == (len(x),)
    found = np.unique(labels[labels >= 0])
    assert list(found) == list(range(len(found)))  # 0..m-1, none empty
    assert model.n_clusters_ == len(model.cluster_centers_) >= len(found)
    assert np.asarray(model.cluster_centers_).shape[1:] == x.shape[1:]
    distances = np.asarray(model.distances_)
    assert distances.shape == (len(x),) and np.all(np.isfinite(distances))
    assert np.all(distances >= 0)
    if algorithm != "hdbscan":
        assert (labels >= 0).all()
        if k is not None:
            n_distinct = len(np.unique(x, axis=0))
            assert len(found) <= min(k, len(x))
            if algorithm in ("kmeans", "agglomerative"):  # these give k when the rows allow
                assert len(found) == min(k, n_distinct) or len(found) == min(k, len(x))
