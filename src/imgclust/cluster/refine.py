"""Refinement: split chosen clusters of an existing clustering again (``--refine``).

The other clusters keep their members, centroids and distances exactly; each chosen cluster
is clustered again by k-means on its own members (k given, or chosen by :func:`choose_k`).
Sub-clusters get new ids after the existing ones; the pipeline then renumbers all clusters
by size as for any run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import Clusterer
from .kmeans import KMeans
from .select import choose_k


class SplitClusters(Clusterer):
    """Split clusters ``split`` of a fitted clustering; same contract as :class:`KMeans`.

    Args:
        labels: the existing cluster of each row (``-1``: noise, kept as it is).
        centers: ``(k, d)`` existing centroids, indexed by label.
        distances: each row's distance to its existing centroid.
        split: the cluster ids to split.
        n_clusters: sub-clusters per split cluster; ``None`` chooses k from its members.
        random_state: seed of the sub-clusterings.

    Attributes:
        labels_, cluster_centers_, distances_, n_clusters_: as :class:`KMeans`.
        parts_: split cluster id → the (pre-renumbering) labels of its sub-clusters.
    """

    def __init__(
        self,
        labels: np.ndarray,
        centers: np.ndarray,
        distances: np.ndarray,
        split: Sequence[int],
        *,
        n_clusters: int | None = None,
        random_state: int = 0,
    ) -> None:
        super().__init__(n_clusters, random_state=random_state)
        self.labels = labels
        self.centers = centers
        self.distances = distances
        self.split = split

    def fit(self, X: np.ndarray) -> SplitClusters:
        """Cluster the members of each split cluster again; ``X`` are the clustered rows."""
        labels = np.asarray(self.labels, dtype=np.int64).copy()
        distances = np.asarray(self.distances, dtype=np.float32).copy()
        centers = [np.array(self.centers, dtype=np.float32)]  # a copy: rows are replaced
        next_id = len(self.centers)
        self.parts_: dict[int, list[int]] = {}
        self.notes_: list[str] = []  # (a k above a cluster's size, lowered)
        for cid in dict.fromkeys(self.split):  # each once, in the order given
            members = np.flatnonzero(self.labels == cid)
            if len(members) < 2:
                raise ValueError(f"cluster {cid} has {len(members)} image(s); nothing to split")
            x = X[members]
            k = self.n_clusters
            if k is None:
                k, _ = choose_k(x, random_state=self.random_state)
            elif k > len(members):
                self.notes_.append(
                    f"cluster #{cid} has {len(members)} photos: split in at most "
                    f"{len(members)}, not {k}"
                )
                k = len(members)
            sub = KMeans(max(k, 1), random_state=self.random_state).fit(x)
            # Sub-cluster 0 keeps the old id (its centroid row is replaced); the rest are new.
            ids = np.array([cid, *range(next_id, next_id + sub.n_clusters_ - 1)])
            next_id += sub.n_clusters_ - 1
            labels[members] = ids[sub.labels_]
            distances[members] = sub.distances_
            centers[0][cid] = sub.cluster_centers_[0]
            centers.append(sub.cluster_centers_[1:])
            used = np.unique(sub.labels_)
            self.parts_[int(cid)] = [int(i) for i in ids[used]]
        self.labels_ = labels
        self.cluster_centers_ = np.concatenate(centers)
        self.distances_ = distances
        self.n_clusters_ = len(self.cluster_centers_)
        return self
