"""``make_clusterer``: an algorithm name and k → an unfitted estimator."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import ALGORITHMS
from .kmeans import KMeans
from .others import HDBSCAN, Agglomerative, Spectral
from .select import AutoKMeans

__all__ = ["ALGORITHMS", "SPECTRAL_MAX", "AutoAlgorithm", "make_clusterer"]


#: ``auto`` clusters collections up to this size spectrally, larger ones with k-means.
SPECTRAL_MAX = 20_000


class AutoAlgorithm:
    """The default: spectral clustering of the kNN graph up to :data:`SPECTRAL_MAX` images,
    k-means beyond.

    Measured (``bench/results/quality.md``, k = classes, int8 Lite0): spectral scores NMI
    0.776 / 0.991 on intel-scenes-dev / coil100-dev against k-means' 0.751 / 0.968, in 0.2-0.4 s
    there; 20,000 synthetic 1280-d points into k=100 take 10 s. Its neighbour graph and
    eigen-solve grow faster than linearly (49 s at 50,000), so larger collections, up to
    millions, get k-means (train on a sample, assign all).

    Attributes:
        algorithm_: the algorithm that ran (``"spectral"`` or ``"kmeans"``); otherwise the
            fitted clusterer's ``labels_``, ``cluster_centers_``, ``distances_``.
    """

    def __init__(
        self, n_clusters: int | None, *, random_state: int = 0, spectral_max: int = SPECTRAL_MAX
    ) -> None:
        self.n_clusters = n_clusters
        self.random_state = random_state
        self.spectral_max = spectral_max

    def fit(self, X: np.ndarray) -> AutoAlgorithm:
        """Cluster the rows of ``X`` with the algorithm that suits its size."""
        self.algorithm_ = "spectral" if len(X) <= self.spectral_max else "kmeans"
        model = make_clusterer(self.algorithm_, self.n_clusters, random_state=self.random_state)
        model.fit(X)
        self.labels_ = model.labels_
        self.cluster_centers_ = model.cluster_centers_
        self.distances_ = model.distances_
        self.n_clusters_ = len(self.cluster_centers_)
        return self


def make_clusterer(algorithm: str, n_clusters: int | None, *, random_state: int = 0) -> Any:
    """The clusterer ``algorithm`` with ``n_clusters`` (``None``: chosen from the data).

    * ``auto`` (default): :class:`AutoAlgorithm`, spectral up to 20,000 images, else k-means.
    * ``kmeans``: :class:`KMeans`; ``None`` → :class:`AutoKMeans` (modularity on a sample).
    * ``agglomerative``: Ward with k; ``None`` → average linkage cut at a cosine distance.
    * ``hdbscan``: k is not used; noise images get label ``-1``.
    * ``spectral``: spectral clustering of the kNN graph; ``None`` → k chosen as for k-means.
    """
    if algorithm == "auto":
        return AutoAlgorithm(n_clusters, random_state=random_state)
    if algorithm == "kmeans":
        if n_clusters is None:
            return AutoKMeans(random_state=random_state)
        return KMeans(n_clusters, random_state=random_state)
    if algorithm == "agglomerative":
        return Agglomerative(n_clusters)
    if algorithm == "hdbscan":
        return HDBSCAN()
    if algorithm == "spectral":
        return Spectral(n_clusters, random_state=random_state)
    raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
