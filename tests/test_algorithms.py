"""Clusterers behind one contract, and runs with each algorithm (noise kept, never dropped)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from imgclust.cluster import (
    HDBSCAN,
    Agglomerative,
    AutoKMeans,
    Spectral,
    choose_k,
    make_clusterer,
)
from imgclust.cluster.select import CRITERIA, candidate_ks, knn_edges, modularity
from imgclust.config import ClusterConfig, RunConfig, StoreConfig
from imgclust.pipeline import run


def _blobs(n_per: int = 40, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, 16)) * 10
    x = np.vstack([c + rng.normal(size=(n_per, 16)) for c in centers]).astype(np.float32)
    return x, np.repeat(np.arange(k), n_per)


@pytest.mark.parametrize(
    "model",
    [
        Agglomerative(4),
        Agglomerative(None, distance_threshold=0.3),
        HDBSCAN(),
        AutoKMeans(),
        Spectral(4),
        Spectral(None),
    ],
)
def test_estimators_recover_separated_blobs(model: object) -> None:
    from sklearn.metrics import adjusted_rand_score

    x, truth = _blobs()
    fitted = model.fit(x)  # type: ignore[attr-defined]
    assert fitted is model
    labels = fitted.labels_
    assert adjusted_rand_score(truth, labels) > 0.95
    k = int(labels.max()) + 1
    assert fitted.cluster_centers_.shape == (k, 16)
    own = labels >= 0
    expected = np.linalg.norm(x[own] - fitted.cluster_centers_[labels[own]], axis=1)
    np.testing.assert_allclose(fitted.distances_[own], expected, rtol=1e-4, atol=1e-4)


def test_hdbscan_keeps_noise_as_minus_one() -> None:
    x, _ = _blobs()
    far = np.full((1, 16), 500.0, dtype=np.float32)
    model = HDBSCAN().fit(np.vstack([x, far]))
    assert model.labels_[-1] == -1
    assert model.distances_[-1] > 100  # to the nearest centre


@pytest.mark.parametrize("criterion", CRITERIA)
@pytest.mark.parametrize("n_blobs", [3, 5, 12, 21])
def test_choose_k_finds_the_blob_count(criterion: str, n_blobs: int) -> None:
    x, _ = _blobs(n_per=30, k=n_blobs)
    k, scores = choose_k(x, criterion=criterion)
    assert k == n_blobs
    assert all(scores[k] >= s for s in scores.values())


def _blob_pairs(seed: int) -> np.ndarray:
    """Six blobs in three pairs: close within a pair, far between pairs."""
    rng = np.random.default_rng(seed)
    groups = rng.normal(size=(3, 32)) * 12
    centers = np.vstack([g + rng.normal(size=(2, 32)) * 3 for g in groups])
    return np.vstack([c + rng.normal(size=(60, 32)) for c in centers]).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
def test_modularity_sees_the_blobs_where_silhouette_sees_the_pairs(seed: int) -> None:
    # What made silhouette choose 3 clusters for 6 photo scenes (bench/results/quality.md).
    x = _blob_pairs(seed)
    assert choose_k(x, criterion="silhouette", random_state=seed)[0] == 3
    assert choose_k(x, criterion="modularity", random_state=seed)[0] == 6


def test_modularity_of_two_separate_cliques() -> None:
    # Two 5-cliques without links between them: Q = 1 - 2 * (1/2)^2 = 0.5 when split,
    # 0 as one cluster.
    x = np.vstack([np.zeros((5, 2)), np.full((5, 2), 100.0)]).astype(np.float32)
    edges = knn_edges(x, n_neighbors=4)
    assert modularity(edges, np.repeat([0, 1], 5)) == pytest.approx(0.5)
    assert modularity(edges, np.zeros(10, dtype=np.int64)) == pytest.approx(0.0)


def test_candidate_ks_are_dense_for_small_k() -> None:
    ks = candidate_ks(3000)
    assert ks[:15] == list(range(2, 17)) and ks[-1] == int(2 * np.sqrt(3000))


def test_spectral_keeps_rings_whole_where_kmeans_cuts_them() -> None:
    # Two concentric rings: neighbourhoods connect each ring, centres cannot separate them.
    from sklearn.datasets import make_circles
    from sklearn.metrics import adjusted_rand_score

    x, truth = make_circles(400, factor=0.4, noise=0.03, random_state=0)
    x = x.astype(np.float32)
    assert adjusted_rand_score(truth, Spectral(2).fit(x).labels_) > 0.95
    assert adjusted_rand_score(truth, make_clusterer("kmeans", 2).fit(x).labels_) < 0.2


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="kmeans"):
        make_clusterer("dbscan", 3)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> StoreConfig:
    return StoreConfig(cache_dir=tmp_path_factory.mktemp("store"))  # embed the demo once


@pytest.mark.parametrize(
    "algorithm,k",
    [("hdbscan", None), ("agglomerative", None), ("kmeans", None), ("spectral", None)],
)
def test_run_with_each_algorithm_exports_every_image(
    demo_photos: Path, tmp_path: Path, store: StoreConfig, algorithm: str, k: int | None
) -> None:
    cfg = RunConfig(
        inputs=(demo_photos,),
        out=tmp_path / "out",
        store=store,
        cluster=ClusterConfig(k=k, algorithm=algorithm),
    )
    result = run(cfg)
    assert len(result.paths) == 96
    with open(result.out_dir / "assignments.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 96  # noise images are listed too, never dropped
    ids = {int(r["cluster"]) for r in rows}
    assert ids == set(result.labels.tolist())
    assert result.k >= 6


def test_centred_embedding_is_unit_rows_around_zero() -> None:
    from imgclust.cluster import make_features

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 8)).astype(np.float32) + 5.0  # a shared offset
    feats = make_features("embedding-centred", logits=emb, embedding=emb)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    plain = make_features("embedding", logits=emb, embedding=emb)
    # the shared direction dominates the plain embedding, not the centred one
    assert abs(feats.mean(axis=0)).max() < abs(plain.mean(axis=0)).max()


def test_auto_is_spectral_for_small_collections_and_kmeans_beyond() -> None:
    from sklearn.datasets import make_blobs
    from sklearn.metrics import adjusted_rand_score

    from imgclust.cluster import make_clusterer
    from imgclust.cluster.factory import AutoAlgorithm

    x, y = make_blobs(n_samples=600, centers=6, n_features=16, cluster_std=1.0, random_state=0)
    x = x.astype(np.float32)
    small = make_clusterer("auto", 6).fit(x)
    assert small.algorithm_ == "spectral"
    assert adjusted_rand_score(y, small.labels_) > 0.95
    large = AutoAlgorithm(6, spectral_max=500).fit(x)  # 600 images > 500: k-means
    assert large.algorithm_ == "kmeans" and adjusted_rand_score(y, large.labels_) > 0.95
    assert large.cluster_centers_.shape == (6, 16) and large.distances_.shape == (600,)


@pytest.mark.parametrize("separated", [False, True])
def test_spectral_gives_scikit_learns_labels(separated: bool) -> None:
    # Our spectral clustering is scikit-learn's algorithm written out (to skip its ~1 s
    # import): the same labels on a connected graph and on one in several pieces, where the
    # eigenvectors of the zero eigenvalue are only defined up to a rotation.
    import warnings

    from sklearn.cluster import SpectralClustering
    from sklearn.metrics import adjusted_rand_score

    from imgclust.cluster.spectral import spectral_labels

    rng = np.random.default_rng(3)
    centers = rng.normal(size=(8, 32)) * (6.0 if separated else 0.9)
    x = (centers[rng.integers(0, 8, 400)] + rng.normal(size=(400, 32))).astype(np.float32)
    ours = spectral_labels(x, 8, n_neighbors=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = SpectralClustering(
            8,
            affinity="nearest_neighbors",
            n_neighbors=10,
            assign_labels="cluster_qr",
            random_state=0,
        ).fit_predict(x)
    assert adjusted_rand_score(ours, theirs) == pytest.approx(1.0)
    assert len(np.unique(ours)) == 8


def test_spectral_centres_directions_only() -> None:
    # Unit rows (the default embedding) are clustered by the centred cosine; other data by
    # plain L2 neighbours (the rings test above would fail otherwise).
    from sklearn.metrics import adjusted_rand_score

    from imgclust.cluster.features import centre_and_normalize
    from imgclust.cluster.spectral import spectral_labels

    rng = np.random.default_rng(5)
    shared = rng.normal(size=64) * 3.0  # what every "photo" has in common
    groups = rng.normal(size=(5, 64))
    x = shared + groups[rng.integers(0, 5, 300)] + rng.normal(size=(300, 64)) * 0.8
    unit = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    auto = Spectral(5).fit(unit).labels_
    assert (auto == Spectral(5, centred=True).fit(unit).labels_).all()
    expected = spectral_labels(centre_and_normalize(unit), 5)
    assert adjusted_rand_score(auto, expected) == pytest.approx(1.0)
    raw = x.astype(np.float32)
    assert (Spectral(5).fit(raw).labels_ == Spectral(5, centred=False).fit(raw).labels_).all()
