"""``make_clusterer``: an algorithm name and k → an unfitted estimator."""

from __future__ import annotations

from typing import Any

from ..config import ALGORITHMS
from .kmeans import KMeans
from .others import HDBSCAN, Agglomerative, Spectral
from .select import AutoKMeans

__all__ = ["ALGORITHMS", "make_clusterer"]


def make_clusterer(algorithm: str, n_clusters: int | None, *, random_state: int = 0) -> Any:
    """The clusterer ``algorithm`` with ``n_clusters`` (``None``: chosen from the data).

    * ``kmeans``: :class:`KMeans`; ``None`` → :class:`AutoKMeans` (modularity on a sample).
    * ``agglomerative``: Ward with k; ``None`` → average linkage cut at a cosine distance.
    * ``hdbscan``: k is not used; noise images get label ``-1``.
    * ``spectral``: spectral clustering of the kNN graph; ``None`` → k chosen as for k-means.
    """
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
