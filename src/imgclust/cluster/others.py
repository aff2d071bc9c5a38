"""Agglomerative, HDBSCAN and spectral clustering behind the :class:`~.base.Clusterer` contract.

Agglomerative and HDBSCAN come from scikit-learn; spectral is :mod:`.spectral`. The base
class adds what the pipeline reads from every clusterer: ``cluster_centers_`` (member
means) and ``distances_``. HDBSCAN's noise keeps label ``-1`` (the report's "unclustered"
group); a noise image's distance is to the nearest centre.

Agglomerative and HDBSCAN need all pairwise distances (memory and time grow with n²);
spectral clustering needs a sparse kNN graph and its leading eigenvectors. Use them on
collections of a few ten thousand images at most; k-means is the one that scales.
"""

from __future__ import annotations

import numpy as np

from .base import Clusterer, centers_and_distances

__all__ = ["HDBSCAN", "MIN_CLUSTER_SIZE", "Agglomerative", "Spectral", "centers_and_distances"]

#: HDBSCAN's smallest group that counts as a cluster.
MIN_CLUSTER_SIZE = 5


class Agglomerative(Clusterer):
    """Hierarchical clustering: Ward with ``n_clusters``, or average linkage cut at a distance.

    Args:
        n_clusters: k (Ward linkage); ``None`` cuts an average-linkage (cosine) tree at
            ``distance_threshold`` instead, so the data decides how many clusters there are.
        distance_threshold: cosine distance at which average-linkage merging stops.
    """

    def __init__(
        self,
        n_clusters: int | None = 100,
        *,
        distance_threshold: float = 0.5,
        random_state: int = 0,
    ) -> None:
        super().__init__(n_clusters, random_state=random_state)
        self.distance_threshold = distance_threshold

    def _labels(self, x: np.ndarray, k: int | None) -> np.ndarray:
        from sklearn.cluster import AgglomerativeClustering

        if len(x) == 1 or k == 1:
            return np.zeros(len(x), dtype=np.int64)
        if k is not None:
            return AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x)
        # A zero row has no direction: zero rows form one group of their own.
        nonzero = np.linalg.norm(x, axis=1) > 0
        labels = np.zeros(len(x), dtype=np.int64)
        if nonzero.sum() >= 2:
            labels[nonzero] = 1 + AgglomerativeClustering(
                n_clusters=None,
                linkage="average",
                metric="cosine",
                distance_threshold=self.distance_threshold,
            ).fit_predict(x[nonzero])
        else:
            labels[nonzero] = 1
        return labels


class HDBSCAN(Clusterer):
    """Density-based clustering; images in no dense region are noise (label ``-1``).

    k is not used: the data decides how many clusters there are, and a collection with no
    group of ``min_cluster_size`` similar photos is all noise.

    Args:
        min_cluster_size: the smallest group that counts as a cluster.
    """

    def __init__(
        self,
        n_clusters: int | None = None,
        *,
        min_cluster_size: int = MIN_CLUSTER_SIZE,
        random_state: int = 0,
    ) -> None:
        super().__init__(None, random_state=random_state)
        self.min_cluster_size = min_cluster_size

    def _labels(self, x: np.ndarray, k: int | None) -> np.ndarray:
        from sklearn.cluster import HDBSCAN as _SkHDBSCAN

        if len(x) < max(2, self.min_cluster_size):
            return np.full(len(x), -1, dtype=np.int64)
        return _SkHDBSCAN(min_cluster_size=self.min_cluster_size, copy=True).fit_predict(x)


class Spectral(Clusterer):
    """Spectral clustering of the symmetric k-nearest-neighbour graph (:mod:`.spectral`).

    Follows the neighbourhoods of images rather than distances to a centre, so elongated or
    curved groups (one object seen from all sides) stay whole. Labels come from the
    eigenvectors by QR pivoting (``cluster_qr``): deterministic, no k-means restarts.

    Where the features are directions (unit rows, like the default L2-normalised embedding),
    neighbours are found by the cosine of the features minus their mean (``centred``).
    What every photo shares then no longer makes a few "hub" images everyone's neighbour
    (Suzuki et al., "Centering similarity measures to reduce hubs", EMNLP 2013). On the
    labelled sets: intel-scenes-dev NMI 0.776 against 0.757, coil100-dev 0.991 against 0.994
    (int8 Lite0), and higher on intel for all six model/precision pairs measured
    (docs/notes-issue-4.md). Centres and distances stay in the features' own space.

    A neighbour graph says nothing when every image is everyone's neighbour: with no more
    images than ``n_neighbors`` the rows are clustered by k-means instead, and k equal to the
    number of images makes each image its own cluster.

    Args:
        n_clusters: k; ``None`` chooses it by :func:`~imgclust.cluster.select.choose_k`.
        n_neighbors: neighbours per image in the graph.
        random_state: seed of the eigen-solver's start vector.
        centred: neighbours by centred cosine, or by the features' L2 distance; ``None``
            (default): centred cosine when every row has unit length. (Centring, then
            normalising, would erase what L2 distance sees in other data: two concentric
            rings in the plane become one circle of directions.)
    """

    def __init__(
        self,
        n_clusters: int | None = 100,
        *,
        n_neighbors: int = 10,
        random_state: int = 0,
        centred: bool | None = None,
    ) -> None:
        super().__init__(n_clusters, random_state=random_state)
        self.n_neighbors = n_neighbors
        self.centred = centred

    def _labels(self, x: np.ndarray, k: int | None) -> np.ndarray:
        from .features import centre_and_normalize
        from .kmeans import KMeans
        from .select import choose_k
        from .spectral import spectral_labels

        if k is None:
            k = min(choose_k(x, random_state=self.random_state)[0], len(x))
        if k >= len(x):
            return np.arange(len(x))
        if k == 1:
            return np.zeros(len(x), dtype=np.int64)
        if len(x) <= self.n_neighbors:
            return KMeans(k, random_state=self.random_state).fit(x).labels_
        # A graph in several pieces (well-separated groups) is expected and works.
        centred = self.centred
        if centred is None:
            centred = bool(np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-2))
        graph_x = centre_and_normalize(x) if centred else x
        return spectral_labels(
            graph_x, k, n_neighbors=self.n_neighbors, random_state=self.random_state
        )
