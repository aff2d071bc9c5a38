"""Groups above the clusters: a tree over the k clusters, cut where it stops being one thing.

The tree is agglomerative over the cluster centroids, in the space that was clustered, by
Ward's linkage. It is cut where the photos' own neighbour graph is most modular: each cut of
the tree into 2 to ``2 sqrt(k)`` groups is scored by the modularity of a sample's kNN graph
under it (the criterion ``--k auto`` uses), and the best wins. Measured in
``bench/results/names.md`` against average and complete linkage and against cutting into
``sqrt(k)`` groups or at the largest gap in merge heights: at k = 100, Ward + modularity gives
a group level whose NMI against the true classes is within 0.02 of clustering straight at
k = number of classes on both labelled sets (the others: 0.03 to 0.46 below).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..store import Rows

#: Tree linkages (scipy names) and cut rules the bench compares.
LINKAGES = ("average", "ward", "complete")
CUTS = ("sqrt", "gap", "modularity")


@dataclass(frozen=True)
class ClusterTree:
    """The clusters' tree and its cut into groups.

    Attributes:
        linkage: ``(k-1, 4)`` scipy linkage matrix: row ``i`` merges nodes ``a`` and ``b``
            (clusters are ``0..k-1``, merges ``k..2k-2``) at height ``d`` into ``n`` clusters.
        groups: ``(k,)`` each cluster's group, ``0`` the group with the most photos.
        parents: ``(k,)`` the tree node each cluster first merges into (``-1``: k = 1).
        names: each group's name, by id.
    """

    linkage: np.ndarray
    groups: np.ndarray
    parents: np.ndarray
    names: Sequence[str]

    @property
    def n_groups(self) -> int:
        """Number of groups."""
        return len(self.names)


def build_linkage(centroids: np.ndarray, *, method: str = "average") -> np.ndarray:
    """The scipy linkage of the centroids (``average``/``complete``: cosine; ``ward``: L2)."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import pdist

    x = np.asarray(centroids, dtype=np.float64)
    if len(x) < 2:
        return np.zeros((0, 4))
    if method == "ward":
        return linkage(x, method="ward")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)  # a zero centroid (no direction) stays zero
    return linkage(np.clip(pdist(x, "sqeuclidean") / 2, 0, 2), method=method)  # = cosine


def n_groups_for(k: int, heights: np.ndarray | None = None, *, cut: str = "sqrt") -> int:
    """How many groups ``k`` clusters make: ``round(sqrt(k))`` (at least 1, at most k), or
    with ``cut="gap"`` the count at the largest jump in merge heights within
    ``[2, 2 sqrt(k)]``."""
    if k <= 2:
        return 1
    if cut == "sqrt" or heights is None or len(heights) < 2:
        return max(1, min(k, round(np.sqrt(k))))
    top = max(2, min(k - 1, int(2 * np.sqrt(k))))
    # Cutting below merge i (heights ascending) leaves k - i groups.
    jumps = np.diff(heights)  # jumps[i]: from merge i to i + 1
    candidates = [(jumps[k - g - 1], g) for g in range(2, top + 1) if 0 <= k - g - 1 < len(jumps)]
    return max(candidates)[1] if candidates else max(1, round(np.sqrt(k)))


def cut_groups(linkage: np.ndarray, k: int, n_groups: int, sizes: np.ndarray) -> np.ndarray:
    """Each cluster's group when the tree is cut into ``n_groups``, numbered by photos."""
    from scipy.cluster.hierarchy import fcluster

    if k == 0:
        return np.zeros(0, np.int64)
    if k == 1 or n_groups <= 1:
        return np.zeros(k, np.int64)
    raw = fcluster(linkage, t=n_groups, criterion="maxclust") - 1
    weight = np.bincount(raw, weights=np.asarray(sizes, dtype=np.float64))
    order = sorted(range(len(weight)), key=lambda g: (-weight[g], g))
    renumber = np.empty(len(weight), np.int64)
    renumber[order] = np.arange(len(order))
    return renumber[raw]


def first_parents(linkage: np.ndarray, k: int) -> np.ndarray:
    """The tree node (``k..2k-2``) each cluster is first merged into."""
    parents = np.full(k, -1, np.int64)
    for i, (a, b, _, _) in enumerate(linkage):
        for node in (int(a), int(b)):
            if node < k:
                parents[node] = k + i
    return parents


def modularity_cut(
    linkage: np.ndarray,
    k: int,
    sizes: np.ndarray,
    features: Rows,
    labels: np.ndarray,
    *,
    sample_size: int = 3000,
    seed: int = 0,
) -> int:
    """The number of groups (2 to ``2 sqrt(k)``) whose photos' kNN graph has the highest
    modularity: the same criterion ``--k auto`` uses, now choosing among cuts of the tree."""
    from ..cluster.select import knn_edges, modularity

    keep = np.flatnonzero(labels >= 0)
    if k <= 2 or len(keep) < 4:
        return 1
    rng = np.random.default_rng(seed)
    rows = keep if len(keep) <= sample_size else np.sort(rng.choice(keep, sample_size, False))
    edges = knn_edges(np.ascontiguousarray(features[rows], dtype=np.float32))
    top = max(2, min(k - 1, int(2 * np.sqrt(k))))
    scores = {
        g: modularity(edges, cut_groups(linkage, k, g, sizes)[labels[rows]])
        for g in range(2, top + 1)
    }
    return max(scores, key=lambda g: (scores[g], -g))


def build_tree(
    centroids: np.ndarray,
    sizes: np.ndarray,
    *,
    method: str = "ward",
    cut: str = "modularity",
    features: Rows | None = None,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(linkage, groups, parents)`` of the clusters (names come from :mod:`.names`).

    ``cut="modularity"`` needs the clustered ``features`` and their cluster ``labels``.
    """
    k = len(centroids)
    link = build_linkage(centroids, method=method)
    if cut == "modularity" and features is not None and labels is not None and k > 2:
        n_groups = modularity_cut(link, k, sizes, features, labels)
    else:
        n_groups = n_groups_for(k, link[:, 2] if len(link) else None, cut=cut)
    return link, cut_groups(link, k, n_groups, sizes), first_parents(link, k)
