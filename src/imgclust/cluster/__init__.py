"""Clustering: feature spaces and clusterers with the scikit-learn estimator contract."""

from .factory import ALGORITHMS, make_clusterer
from .features import is_normalized, make_features, make_features_lowmem, softmax
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
    "is_normalized",
    "make_clusterer",
    "make_features",
    "make_features_lowmem",
    "softmax",
]
