"""Clustering: feature spaces and clusterers with the scikit-learn estimator contract."""

from .base import (
    Clusterer,
    clusterer_help,
    create_clusterer,
    list_clusterers,
    register_clusterer,
)
from .factory import make_clusterer
from .features import (
    feature_source,
    finish_features,
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
    "HDBSCAN",
    "Agglomerative",
    "AutoKMeans",
    "Clusterer",
    "KMeans",
    "Spectral",
    "SplitClusters",
    "choose_k",
    "clusterer_help",
    "create_clusterer",
    "feature_source",
    "finish_features",
    "list_clusterers",
    "make_clusterer",
    "make_features",
    "make_features_lowmem",
    "register_clusterer",
    "row_features",
    "softmax",
]
