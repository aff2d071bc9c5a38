"""The built-in algorithms, registered by name (:func:`~.base.register_clusterer`)."""

from __future__ import annotations

import numpy as np

from .base import Clusterer, create_clusterer, register_clusterer
from .kmeans import KMeans
from .others import HDBSCAN, Agglomerative, Spectral
from .select import AutoKMeans

__all__ = ["SPECTRAL_MAX", "AutoAlgorithm", "make_clusterer"]


#: ``auto`` clusters collections up to this size spectrally, larger ones with k-means.
SPECTRAL_MAX = 20_000

#: The registry's factory under the name the code has always used.
make_clusterer = create_clusterer


class AutoAlgorithm(Clusterer):
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
        super().__init__(n_clusters, random_state=random_state)
        self.spectral_max = spectral_max

    def fit(self, X: np.ndarray) -> AutoAlgorithm:
        """Cluster the rows of ``X`` with the algorithm that suits its size."""
        self.algorithm_ = "spectral" if len(X) <= self.spectral_max else "kmeans"
        model = create_clusterer(self.algorithm_, self.n_clusters, random_state=self.random_state)
        model.fit(X)
        self.labels_ = model.labels_
        self.cluster_centers_ = model.cluster_centers_
        self.distances_ = model.distances_
        self.n_clusters_ = len(self.cluster_centers_)
        return self


@register_clusterer("auto", "spectral up to 20,000 images, kmeans beyond (default)")
def _auto(n_clusters: int | None, random_state: int) -> Clusterer:
    return AutoAlgorithm(n_clusters, random_state=random_state)


@register_clusterer("kmeans", "k-means++ seeding, faiss iterations; scales to millions")
def _kmeans(n_clusters: int | None, random_state: int) -> Clusterer:
    if n_clusters is None:
        return AutoKMeans(random_state=random_state)
    return KMeans(n_clusters, random_state=random_state)


@register_clusterer("agglomerative", "Ward with k; average linkage (cosine 0.5) with --k auto")
def _agglomerative(n_clusters: int | None, random_state: int) -> Clusterer:
    return Agglomerative(n_clusters, random_state=random_state)


@register_clusterer("hdbscan", "density; k unused, unclustered images listed apart")
def _hdbscan(n_clusters: int | None, random_state: int) -> Clusterer:
    return HDBSCAN(random_state=random_state)


@register_clusterer("spectral", "kNN graph; up to a few 10k images")
def _spectral(n_clusters: int | None, random_state: int) -> Clusterer:
    return Spectral(n_clusters, random_state=random_state)
