"""Describe: what each cluster is, in words, and how the clusters group.

* :mod:`.summary`: members nearest-first, medoids, ranks, outlier fences, class statistics,
  and the plain "top mean classes" of a cluster;
* :mod:`.names`: names that tell the clusters apart (distinctive classes, WordNet hypernyms,
  no two alike);
* :mod:`.groups`: a tree over the clusters, cut into named groups;
* :mod:`.hierarchy`: the WordNet hypernyms of the ImageNet classes (vendored, offline).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from .groups import ClusterTree
from .names import METHODS as NAMING_METHODS
from .names import Naming, name_clusters
from .summary import (
    MIN_OUTLIER_CLUSTER,
    NAME_CLASSES,
    NAME_SHARE,
    ClassStats,
    ClusterSummary,
    ImageTopClasses,
    class_statistics,
    cluster_name,
    describe,
    mean_scores_by_cluster,
    medoid,
    outlier_thresholds,
    rank_members,
    relabel_by_size,
    short_name,
    top_class_ids,
    top_classes,
)

if TYPE_CHECKING:
    from ..store import Rows

__all__ = [
    "MIN_OUTLIER_CLUSTER",
    "NAME_CLASSES",
    "NAME_SHARE",
    "NAMING_METHODS",
    "ClassStats",
    "ClusterSummary",
    "ClusterTree",
    "ImageTopClasses",
    "Naming",
    "class_statistics",
    "cluster_name",
    "describe",
    "mean_scores_by_cluster",
    "medoid",
    "name_and_group",
    "name_clusters",
    "outlier_thresholds",
    "rank_members",
    "relabel_by_size",
    "short_name",
    "top_class_ids",
    "top_classes",
]


def name_and_group(
    clusters: list[ClusterSummary],
    cluster_scores: dict[int, np.ndarray],
    centroids: np.ndarray,
    features: Rows,
    labels: np.ndarray,
    class_names: list[str],
    *,
    method: str = "auto",
) -> tuple[list[ClusterSummary], ClusterTree | None]:
    """Name the clusters apart (:func:`name_clusters`) and group them (:mod:`.groups`).

    ``clusters`` come from :func:`describe` (ids 0..k-1, and -1 for the unclustered, which
    keeps its summary and is in no group); ``centroids`` are by id, in the clustered space.
    """
    from .groups import build_tree
    from .hierarchy import load

    named = sorted((c for c in clusters if c.cluster_id >= 0), key=lambda c: c.cluster_id)
    rest = [c for c in clusters if c.cluster_id < 0]
    if not named:
        return clusters, None
    means = np.array([cluster_scores[c.cluster_id] for c in named])
    sizes = np.array([c.size for c in named], dtype=np.float64)
    hierarchy = load()
    namings = name_clusters(means, sizes, class_names, method=method, hierarchy=hierarchy)
    out = [
        replace(c, name=n.name, distinctive=n.distinctive)
        for c, n in zip(named, namings, strict=True)
    ]
    linkage, groups, parents = build_tree(centroids, sizes, features=features, labels=labels)
    n_groups = int(groups.max()) + 1
    weights = np.bincount(groups, weights=sizes, minlength=n_groups)
    group_means = np.array(
        [
            (means[groups == g] * sizes[groups == g, None]).sum(0) / weights[g]
            for g in range(n_groups)
        ]
    )
    group_names = [
        n.name
        for n in name_clusters(
            group_means, weights, class_names, method=method, hierarchy=hierarchy
        )
    ]
    return out + rest, ClusterTree(linkage, groups, parents, group_names)
