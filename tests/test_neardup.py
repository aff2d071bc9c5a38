"""Near-duplicate groups: known groups on small data, exact and inverted-file search alike."""

from __future__ import annotations

import numpy as np
import pytest

from imgclust import neardup
from imgclust.neardup import group_sizes, near_duplicates


def _bursts(n_photos: int, copies: int, noise: float, seed: int = 0) -> np.ndarray:
    """``copies`` noisy versions of each of ``n_photos`` random unit vectors, photo-major."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_photos, 256)).astype(np.float32)
    x = np.repeat(base, copies, axis=0)
    return x + rng.normal(scale=noise, size=x.shape).astype(np.float32)


def test_copies_of_one_photo_form_one_group_led_by_the_nearest() -> None:
    x = _bursts(20, 4, noise=0.02)
    labels = np.zeros(len(x), np.int64)
    distances = np.random.default_rng(1).random(len(x))
    dup = near_duplicates(x, labels, distances, threshold=0.05)
    for photo in range(20):
        rows = np.arange(photo * 4, photo * 4 + 4)
        nearest = rows[np.argmin(distances[rows])]
        assert dup[nearest] == -1
        assert set(dup[rows[rows != nearest]]) == {nearest}
    assert group_sizes(dup).max() == 3 and (group_sizes(dup) > 0).sum() == 20


def test_distinct_photos_and_other_clusters_are_never_grouped() -> None:
    x = _bursts(30, 1, noise=0.0)
    x = np.concatenate([x, x[:5]])  # exact copies, but in another cluster
    labels = np.r_[np.zeros(30, np.int64), np.ones(5, np.int64)]
    dup = near_duplicates(x, labels, np.zeros(len(x)), threshold=0.1)
    assert (dup == -1).all()


def test_threshold_zero_turns_grouping_off() -> None:
    x = _bursts(5, 3, noise=0.0)
    dup = near_duplicates(x, np.zeros(len(x), np.int64), np.zeros(len(x)), threshold=0)
    assert (dup == -1).all()


def test_groups_do_not_chain_beyond_the_threshold_of_their_leader() -> None:
    # a walk of small steps: each neighbour is close, the ends are far apart
    steps = np.linspace(0, 1.2, 25)
    x = np.c_[np.cos(steps), np.sin(steps)].astype(np.float32)
    dup = near_duplicates(x, np.zeros(25, np.int64), steps, threshold=0.01)
    for i, lead in enumerate(dup):
        if lead >= 0:
            assert 1 - float(x[i] @ x[lead]) < 0.01
    assert (dup == -1).sum() > 1


def test_large_clusters_use_an_inverted_file_and_find_the_same_groups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = _bursts(400, 3, noise=0.02, seed=3)
    labels = np.zeros(len(x), np.int64)
    distances = np.random.default_rng(4).random(len(x))
    exact = near_duplicates(x, labels, distances, threshold=0.05)
    monkeypatch.setattr(neardup, "EXACT_MAX", 100)
    monkeypatch.setattr(neardup, "LIST_SIZE", 40)  # 30 lists
    approx = near_duplicates(x, labels, distances, threshold=0.05)
    assert (exact >= 0).sum() == 800
    assert (approx == exact).mean() > 0.99
