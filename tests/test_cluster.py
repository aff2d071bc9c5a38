"""k-means: known answers on separable data, the estimator contract, k above n."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from imgclust.cluster import KMeans, make_features, softmax


def test_recovers_separated_blobs() -> None:
    x, y = make_blobs(1500, centers=8, n_features=16, cluster_std=0.5, random_state=1)
    km = KMeans(8, random_state=0).fit(x)
    assert adjusted_rand_score(y, km.labels_) > 0.99
    assert km.cluster_centers_.shape == (8, 16)


def test_distances_are_to_own_centroid() -> None:
    x, _ = make_blobs(300, centers=4, n_features=5, random_state=2)
    km = KMeans(4).fit(x)
    expected = np.linalg.norm(x - km.cluster_centers_[km.labels_], axis=1)
    np.testing.assert_allclose(km.distances_, expected, rtol=1e-4, atol=1e-4)
    assert np.allclose(km.inertia_, (expected**2).sum(), rtol=1e-3)


def test_same_seed_same_labels() -> None:
    x, _ = make_blobs(800, centers=20, n_features=8, random_state=3)
    a = KMeans(20, random_state=7).fit(x).labels_
    b = KMeans(20, random_state=7).fit(x).labels_
    assert (a == b).all()


def test_k_is_lowered_to_the_number_of_points() -> None:
    x = np.random.default_rng(0).normal(size=(5, 3))
    km = KMeans(100).fit(x)
    assert km.n_clusters_ == 5 and sorted(km.labels_) == [0, 1, 2, 3, 4]
    assert np.allclose(km.distances_, 0)


def test_predict_matches_fit() -> None:
    x, _ = make_blobs(400, centers=3, n_features=4, random_state=4)
    km = KMeans(3).fit(x)
    assert (km.predict(x) == km.labels_).all()


def test_feature_kinds() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(10, 1000)).astype(np.float16)
    emb = rng.normal(size=(10, 1280)).astype(np.float16)
    e = make_features("embedding", logits=logits, embedding=emb)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, rtol=1e-5)
    s = make_features("scores", logits=logits, embedding=emb)
    np.testing.assert_allclose(s.sum(1), 1, rtol=1e-5)
    h = make_features("sqrt-scores", logits=logits, embedding=emb)
    np.testing.assert_allclose(np.linalg.norm(h, axis=1), 1, rtol=1e-5)
    assert softmax(logits).argmax(1).tolist() == logits.argmax(1).tolist()


def test_lowmem_features_match_in_memory_for_every_kind() -> None:
    from imgclust.cluster import make_features_lowmem
    from imgclust.config import FEATURE_KINDS

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(50, 1000)).astype(np.float16)
    emb = rng.normal(size=(50, 1280)).astype(np.float16)
    for kind in FEATURE_KINDS:
        full = make_features(kind, logits=logits, embedding=emb)
        chunked = make_features_lowmem(kind, logits=logits, embedding=emb, rows=7)
        np.testing.assert_allclose(chunked, full, atol=2e-3, err_msg=kind)


def test_kmeans_plusplus_seeds_as_well_as_scikit_learn() -> None:
    from sklearn.cluster import kmeans_plusplus as sk_seed
    from sklearn.datasets import make_blobs

    from imgclust.cluster.kmeans import kmeans_plusplus

    x, y = make_blobs(n_samples=3000, centers=40, n_features=32, cluster_std=1.0, random_state=3)
    x = x.astype(np.float32)

    def potential(centres: np.ndarray) -> float:
        d = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
        return float(d.min(axis=1).sum())

    ours = [potential(kmeans_plusplus(x, 40, seed=s)) for s in range(5)]
    theirs = [potential(sk_seed(x, 40, random_state=s)[0]) for s in range(5)]
    assert np.mean(ours) <= 1.1 * np.mean(theirs)
    # Well separated blobs: the greedy seeding puts a centre in (nearly) every one.
    centres = kmeans_plusplus(x, 40, seed=0)
    hit = {int(y[((x - c) ** 2).sum(1).argmin()]) for c in centres}
    assert len(hit) >= 38
    # Duplicate points only: no division by zero, k centres all the same.
    same = np.ones((10, 4), np.float32)
    assert (kmeans_plusplus(same, 3, seed=0) == 1).all()


@pytest.mark.parametrize(("n", "k"), [(9, 1), (9, 8), (50, 20), (300, 64), (700, 100)])
def test_a_rows_distance_does_not_depend_on_the_rows_asked_with_it(n: int, k: int) -> None:
    """A shard, a Ray task, or `assign` asks for a few rows; the run asked for all of them:
    each row's centroid and distance are the same bits either way (faiss's own distances,
    from BLAS, were not for k >= 20, and ranked near-duplicates differently)."""
    from imgclust.cluster.kmeans import nearest_centroids

    rng = np.random.default_rng(n + k)
    x = rng.normal(size=(n, 1280)).astype(np.float16)
    centroids = rng.normal(size=(k, 1280)).astype(np.float32)
    if k > 1:  # near-ties: centroids within rounding of one another, and of the rows
        centroids[k // 2 :] = centroids[: k - k // 2][: k // 2] + 1e-7
        centroids[0] = x[0]
    labels, dist = nearest_centroids(centroids, x)
    for start in range(0, n, 7):
        part_labels, part_dist = nearest_centroids(centroids, x[start : start + 7])
        np.testing.assert_array_equal(part_labels, labels[start : start + 7])
        np.testing.assert_array_equal(part_dist, dist[start : start + 7])
    same = x.astype(np.float32)
    nearest_centroids(centroids, same)  # the caller's float32 rows are read, never written
    np.testing.assert_array_equal(same, x.astype(np.float32))
