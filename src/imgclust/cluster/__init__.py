"""Clustering: feature spaces and clusterers with the scikit-learn estimator contract."""

from .factory import ALGORITHMS, make_clusterer
from .features import (
    feature_source,
    finish_features,
    is_normalized,
    make_features,
    make_features_lowmem,
    row_features,
    softmax,
)
from .kmeans import KMeans
from .others import HDBSCAN, Agglomerative, Spectral
from .refine import SplitClusters
from .select import AutoKMeans, choose_k

__all__ = [
    "ALGORITHMS",
    "HDBSCAN",
    "Agglomerative",
    "AutoKMeans",
    "KMeans",
    "Spectral",
    "SplitClusters",
    "choose_k",
    "feature_source",
    "finish_features",
    "is_normalized",
    "make_clusterer",
    "make_features",
    "make_features_lowmem",
    "row_features",
    "softmax",
]
