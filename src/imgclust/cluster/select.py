"""Choosing k from the data (``--k auto``): modularity of k-means on a sample's kNN graph.

Candidates are every k from 2 to 16, then a geometric grid up to about ``2 sqrt(n)`` (at
most :data:`MAX_AUTO_K`), then every k between the best candidate's neighbours. Each is
fitted on a sample of at most ``sample_size`` images, so the cost does not grow with the
collection: on 100k images it is the same as on ``sample_size``. The chosen k is then
fitted on all images.

The score of a k is the modularity (Newman) of its k-means partition on the sample's
symmetric k-nearest-neighbour graph: the share of neighbour links inside clusters minus
what random links with the same degrees would give. Silhouette (mean distance to the own
vs the nearest other cluster) is kept as ``criterion="silhouette"``; on photo embeddings it
prefers a few coarse groups (intel scenes: 3 of 6; see bench/results/quality.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .base import Clusterer
from .kmeans import KMeans

#: Largest k that ``--k auto`` considers.
MAX_AUTO_K = 200
#: Every k up to this is a candidate; beyond, a geometric grid.
_DENSE_UP_TO = 16
#: Neighbours per image in the graph that modularity is measured on. 7, not 10: with groups
#: of ~8 photos (the demo: 12 scenes x 8 variants) 10 neighbours must reach into other groups
#: and modularity merged them (k 5-7 of 12, depending on the seeding); at 7 it finds 12, and
#: intel-scenes-dev (k 6, NMI 0.751) and coil100-dev (k 22, NMI 0.971) choose the same as at 10.
_GRAPH_NEIGHBOURS = 7
CRITERIA = ("modularity", "silhouette")


def candidate_ks(n: int, *, n_geometric: int = 8) -> list[int]:
    """Every k from 2 to 16, then a geometric grid up to ``min(2 sqrt(n), MAX_AUTO_K, n - 1)``."""
    top = int(min(max(2.0, 2 * np.sqrt(n)), MAX_AUTO_K, max(n - 1, 2)))
    ks = set(range(2, min(top, _DENSE_UP_TO) + 1))
    if top > _DENSE_UP_TO:
        ks |= {int(k) for k in np.round(np.geomspace(_DENSE_UP_TO, top, n_geometric))}
    return sorted(k for k in ks if k < n) or [1]


def knn_edges(x: np.ndarray, n_neighbors: int = _GRAPH_NEIGHBOURS) -> tuple[np.ndarray, ...]:
    """Both directions of every edge of the symmetric ``n_neighbors``-nearest-neighbour graph."""
    from scipy.sparse import coo_matrix

    from .spectral import nearest_neighbours

    n = len(x)
    nn = min(n_neighbors, n - 1)
    idx = nearest_neighbours(x, nn + 1)
    rows = np.repeat(np.arange(n), nn + 1)
    cols = idx.ravel()
    keep = (cols >= 0) & (cols != rows)
    a = coo_matrix((np.ones(int(keep.sum())), (rows[keep], cols[keep])), shape=(n, n)).tocsr()
    graph = (a + a.T).tocoo()  # duplicates summed: an edge counts once whichever side found it
    return graph.row, graph.col


def modularity(edges: tuple[np.ndarray, ...], labels: np.ndarray) -> float:
    """Newman modularity of ``labels`` on an unweighted graph given as both edge directions."""
    rows, cols = edges
    m2 = len(rows)
    if m2 == 0:
        return 0.0
    inside = float((labels[rows] == labels[cols]).sum()) / m2
    degree = np.bincount(rows, minlength=len(labels))
    share = np.bincount(labels, weights=degree) / m2
    return inside - float((share * share).sum())


def choose_k(
    X: np.ndarray,
    *,
    sample_size: int = 3000,
    random_state: int = 0,
    criterion: str = "modularity",
) -> tuple[int, dict[int, float]]:
    """The k of best ``criterion`` on a sample, and the score of each k tried."""
    n = len(X)
    if n < 4:
        return 1, {}
    rng = np.random.default_rng(random_state)
    rows = slice(None) if n <= sample_size else np.sort(rng.choice(n, sample_size, replace=False))
    # Sample first: a float32 copy of a million float16 rows would be gigabytes.
    sample = np.ascontiguousarray(X[rows], dtype=np.float32)
    score = _scorer(sample, criterion)
    scores: dict[int, float] = {}

    def trial(k: int) -> None:
        labels = KMeans(k, n_init=2, random_state=random_state).fit(sample).labels_
        if len(np.unique(labels)) >= 2:
            scores[k] = score(labels)

    grid = candidate_ks(len(sample))
    for k in grid:
        trial(k)
    if not scores:
        return 1, scores
    best = max(scores, key=lambda k: scores[k])
    # The geometric grid skips k's: try every k between the best one's neighbours.
    at = grid.index(best)
    low, high = grid[max(at - 1, 0)], grid[min(at + 1, len(grid) - 1)]
    for k in range(low + 1, high):
        if k not in scores:
            trial(k)
    return max(scores, key=lambda k: scores[k]), scores


def _scorer(sample: np.ndarray, criterion: str) -> Callable[[np.ndarray], float]:
    if criterion == "modularity":
        edges = knn_edges(sample)
        return lambda labels: modularity(edges, labels)
    if criterion == "silhouette":
        from sklearn.metrics import silhouette_score

        return lambda labels: float(silhouette_score(sample, labels))
    raise ValueError(f"unknown criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")


class AutoKMeans(Clusterer):
    """k-means whose k is chosen by :func:`choose_k`.

    Attributes:
        labels_, cluster_centers_, distances_, n_clusters_: as :class:`KMeans`.
        k_scores_: criterion score of each candidate k.
    """

    def __init__(
        self, *, sample_size: int = 3000, random_state: int = 0, criterion: str = "modularity"
    ) -> None:
        super().__init__(None, random_state=random_state)
        self.sample_size = sample_size
        self.criterion = criterion

    def fit(self, X: np.ndarray) -> AutoKMeans:
        """Choose k on a sample, then cluster all rows of ``X``."""
        k, self.k_scores_ = choose_k(
            X,
            sample_size=self.sample_size,
            random_state=self.random_state,
            criterion=self.criterion,
        )
        model = KMeans(k, random_state=self.random_state).fit(X)
        self.labels_ = model.labels_
        self.cluster_centers_ = model.cluster_centers_
        self.distances_ = model.distances_
        self.n_clusters_ = model.n_clusters_
        return self
