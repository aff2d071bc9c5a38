"""Clustering: feature spaces and clusterers with the scikit-learn estimator contract."""

from .features import is_normalized, make_features, make_features_lowmem, softmax
from .kmeans import KMeans

__all__ = ["KMeans", "is_normalized", "make_features", "make_features_lowmem", "softmax"]
