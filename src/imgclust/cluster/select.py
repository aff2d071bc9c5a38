"""Choosing k from the data (``--k auto``): silhouette of k-means on a sample.

Candidates are spread geometrically from 2 to about ``sqrt(n)`` (at most
:data:`MAX_AUTO_K`); each is fitted on a sample of at most ``sample_size`` images and scored
by the silhouette of that sample, so the cost does not grow with the collection: on 100k
images it is the same as on ``sample_size``. The chosen k is then fitted on all images.
"""

from __future__ import annotations

import numpy as np

from .kmeans import KMeans

#: Largest k that ``--k auto`` considers.
MAX_AUTO_K = 200


def candidate_ks(n: int, *, n_candidates: int = 12) -> list[int]:
    """Geometric grid of k from 2 to ``min(sqrt(n) * 2, MAX_AUTO_K, n - 1)``."""
    top = int(min(max(2.0, 2 * np.sqrt(n)), MAX_AUTO_K, max(n - 1, 2)))
    grid = np.unique(np.round(np.geomspace(2, top, n_candidates)).astype(int))
    return [int(k) for k in grid if k < n] or [1]


def choose_k(
    X: np.ndarray, *, sample_size: int = 3000, random_state: int = 0
) -> tuple[int, dict[int, float]]:
    """The k of best silhouette (cosine for unit rows), and the score of each candidate."""
    from sklearn.metrics import silhouette_score

    x = np.ascontiguousarray(X, dtype=np.float32)
    n = len(x)
    if n < 4:
        return 1, {}
    rng = np.random.default_rng(random_state)
    sample = x if n <= sample_size else x[np.sort(rng.choice(n, sample_size, replace=False))]
    scores: dict[int, float] = {}
    for k in candidate_ks(len(sample)):
        labels = KMeans(k, n_init=2, random_state=random_state).fit(sample).labels_
        if len(np.unique(labels)) < 2:
            continue
        scores[k] = float(silhouette_score(sample, labels))
    if not scores:
        return 1, scores
    return max(scores, key=lambda k: scores[k]), scores


class AutoKMeans:
    """k-means whose k is chosen by :func:`choose_k`.

    Attributes:
        labels_, cluster_centers_, distances_, n_clusters_: as :class:`KMeans`.
        k_scores_: silhouette of each candidate k.
    """

    def __init__(self, *, sample_size: int = 3000, random_state: int = 0) -> None:
        self.sample_size = sample_size
        self.random_state = random_state

    def fit(self, X: np.ndarray) -> AutoKMeans:
        """Choose k on a sample, then cluster all rows of ``X``."""
        k, self.k_scores_ = choose_k(
            X, sample_size=self.sample_size, random_state=self.random_state
        )
        model = KMeans(k, random_state=self.random_state).fit(X)
        self.labels_ = model.labels_
        self.cluster_centers_ = model.cluster_centers_
        self.distances_ = model.distances_
        self.n_clusters_ = model.n_clusters_
        return self
