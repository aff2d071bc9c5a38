"""Bounded-memory clustering: float16 features built in chunks, assigned in chunks."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from imgclust.cluster import KMeans, make_features, make_features_lowmem
from imgclust.cluster import kmeans as kmeans_module


@pytest.mark.parametrize("kind", ["embedding", "logits", "scores", "sqrt-scores"])
def test_lowmem_features_equal_float32_ones(kind: str) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (1000, 50)).astype(np.float16)
    emb = rng.normal(0, 1, (1000, 40)).astype(np.float16)
    ref = make_features(kind, logits=logits, embedding=emb)
    low = make_features_lowmem(kind, logits=logits, embedding=emb, rows=128)
    assert low.dtype == np.float16 and low.shape == ref.shape
    np.testing.assert_allclose(low.astype(np.float32), ref, rtol=2e-3, atol=1e-4)


def test_float16_input_is_assigned_in_chunks_like_float32(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, truth = make_blobs(3000, n_features=16, centers=8, cluster_std=0.5, random_state=3)
    monkeypatch.setattr(kmeans_module, "_ASSIGN_ROWS", 257)  # many uneven chunks
    half = KMeans(8, n_init=2, random_state=0).fit(x.astype(np.float16))
    full = KMeans(8, n_init=2, random_state=0).fit(x.astype(np.float32))
    assert adjusted_rand_score(truth, half.labels_) == pytest.approx(1.0)
    assert adjusted_rand_score(full.labels_, half.labels_) == pytest.approx(1.0)
    assert half.cluster_centers_.dtype == np.float32
    np.testing.assert_array_equal(half.predict(x.astype(np.float16)), half.labels_)
    centre = half.cluster_centers_[half.labels_]
    expected = np.linalg.norm(x.astype(np.float16).astype(np.float32) - centre, axis=1)
    np.testing.assert_allclose(half.distances_, expected, rtol=1e-4, atol=1e-4)


def test_training_sample_is_capped_by_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    x, truth = make_blobs(4000, n_features=8, centers=4, cluster_std=0.3, random_state=1)
    monkeypatch.setattr(kmeans_module, "_TRAIN_BYTES", 4 * 8 * 200)  # at most 200 rows
    model = KMeans(4, n_init=1, random_state=0).fit(x)
    assert len(model.labels_) == 4000  # all points assigned, only 200 trained on
    assert adjusted_rand_score(truth, model.labels_) == pytest.approx(1.0)
