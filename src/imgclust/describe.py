"""Describe: name each cluster from its ImageNet class scores, order members, pick a medoid.

A cluster's name is made of the ImageNet classes that dominate its *mean* class-score vector
(the softmax scores, whatever features were clustered), written as words, never synset ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: A class joins a cluster's name if its mean score is at least this share of the top class's.
NAME_SHARE = 0.25
#: At most this many classes in a name.
NAME_CLASSES = 3
#: Medoid search: candidates nearest the centroid, measured against at most this many members.
_MEDOID_CANDIDATES = 256
_MEDOID_REFERENCES = 2048


@dataclass(frozen=True)
class ClusterSummary:
    """One cluster as the report and exports see it.

    Attributes:
        cluster_id: 0 is the largest cluster; ids follow size, then medoid path.
        name: a short readable name, e.g. ``"seashore / sandbar / lakeside"``.
        top_classes: the strongest ImageNet classes as (description, mean score).
        members: indices into the run's image table, nearest the centroid first.
        distances: each member's distance to the centroid, aligned with ``members``.
        medoid: index of the member with the smallest mean distance to the others.
    """

    cluster_id: int
    name: str
    top_classes: tuple[tuple[str, float], ...]
    members: np.ndarray
    distances: np.ndarray
    medoid: int

    @property
    def size(self) -> int:
        """Number of images in the cluster."""
        return len(self.members)


def short_name(description: str) -> str:
    """First synonym of an ImageNet class description (``"tabby, tabby cat"`` → ``"tabby"``)."""
    return description.split(",")[0].strip()


def cluster_name(mean_scores: np.ndarray, class_names: Sequence[str]) -> str:
    """Name from the classes dominating a mean score vector, strongest first."""
    order = np.argsort(-mean_scores)[:NAME_CLASSES]
    top = float(mean_scores[order[0]])
    words: list[str] = []
    for idx in order:
        word = short_name(class_names[int(idx)])
        if float(mean_scores[idx]) >= NAME_SHARE * top and word not in words:
            words.append(word)
    return " / ".join(words)


def top_class_ids(scores: np.ndarray, n: int = 3) -> np.ndarray:
    """Indices of the ``n`` strongest classes of each row, strongest first.

    ``argpartition`` then a sort of ``n`` columns: linear in the classes, not a full sort of
    every row (1,000 classes x a million images).
    """
    n = min(n, scores.shape[1])
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def top_classes(
    scores: np.ndarray, class_names: Sequence[str], n: int = 3, *, ids: np.ndarray | None = None
) -> list[tuple[tuple[str, float], ...]]:
    """The ``n`` strongest classes of each row of ``scores`` as (description, score).

    ``ids`` (from :func:`top_class_ids`) saves computing them again.
    """
    idx = top_class_ids(scores, n) if ids is None else ids
    return [
        tuple((class_names[int(j)], float(row[j])) for j in cols)
        for row, cols in zip(scores, idx, strict=True)
    ]


def rank_members(labels: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Rank of each image inside its cluster by distance to the centroid (0 = nearest)."""
    order = np.lexsort((np.arange(len(labels)), distances, labels))
    ranks = np.empty(len(labels), dtype=np.int64)
    sorted_labels = labels[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_labels)) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(labels)]))
    ranks[order] = np.arange(len(labels)) - run_start
    return ranks


def medoid(features: np.ndarray, members: np.ndarray, seed: int = 0) -> int:
    """The member minimising mean Euclidean distance to the others (exact up to 256 members).

    Larger clusters: candidates are the 256 members nearest the centroid (``members`` must be
    ordered nearest-first), measured against a random sample of 2,048 members.
    """
    candidates = members[:_MEDOID_CANDIDATES]
    references = members
    if len(members) > _MEDOID_REFERENCES:
        rng = np.random.default_rng(seed)
        references = rng.choice(members, _MEDOID_REFERENCES, replace=False)
    a = features[candidates].astype(np.float32)
    b = features[references].astype(np.float32)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    mean_dist = np.sqrt(np.maximum(sq, 0.0)).mean(axis=1)
    return int(candidates[int(np.argmin(mean_dist))])


def describe(
    labels: np.ndarray,
    distances: np.ndarray,
    features: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
    *,
    seed: int = 0,
) -> list[ClusterSummary]:
    """Summarise every non-empty cluster; ``labels`` must already be numbered by size.

    Args:
        labels: cluster id per image (``-1`` marks noise, summarised as its own group).
        distances: distance of each image to its cluster centre.
        features: the clustered features (for the medoid).
        scores: softmax class scores per image, ``(n, n_classes)``.
        class_names: ImageNet class descriptions, index-aligned with ``scores``.
    """
    summaries = []
    for cid in np.unique(labels):
        idx = np.flatnonzero(labels == cid)
        idx = idx[np.lexsort((idx, distances[idx]))]
        mean_scores = scores[idx].astype(np.float64).mean(axis=0)
        tops = tuple(
            (class_names[int(j)], float(mean_scores[j])) for j in np.argsort(-mean_scores)[:5]
        )
        summaries.append(
            ClusterSummary(
                cluster_id=int(cid),
                name=cluster_name(mean_scores, class_names),
                top_classes=tops,
                members=idx,
                distances=distances[idx],
                medoid=medoid(features, idx, seed),
            )
        )
    return summaries


def relabel_by_size(labels: np.ndarray, tiebreak: Sequence[str]) -> np.ndarray:
    """Renumber clusters 0.. by decreasing size (ties: smallest member path first).

    Negative labels (noise) are kept as they are.
    """
    ids = [int(c) for c in np.unique(labels) if c >= 0]
    first_path = {c: min(tiebreak[int(i)] for i in np.flatnonzero(labels == c)) for c in ids}
    sizes = {c: int((labels == c).sum()) for c in ids}
    order = sorted(ids, key=lambda c: (-sizes[c], first_path[c]))
    mapping = np.full(max(ids, default=-1) + 2, -1, dtype=np.int64)
    for new, old in enumerate(order):
        mapping[old] = new
    out = labels.astype(np.int64).copy()
    keep = out >= 0
    out[keep] = mapping[out[keep]]
    return out


#: Clusters smaller than this have no outlier tail (too few members to say what is typical).
MIN_OUTLIER_CLUSTER = 5


def outlier_thresholds(labels: np.ndarray, distances: np.ndarray, n_clusters: int) -> np.ndarray:
    """Per cluster, the distance beyond which a member is an outlier (Tukey's upper fence).

    The fence is ``q3 + 1.5 * (q3 - q1)`` of the cluster's member distances to its centroid;
    ``inf`` for clusters with fewer than :data:`MIN_OUTLIER_CLUSTER` members. A new image
    assigned to cluster ``c`` is an outlier when its distance exceeds ``thresholds[c]``.
    """
    thresholds = np.full(n_clusters, np.inf, dtype=np.float32)
    for cid in range(n_clusters):
        d = distances[labels == cid]
        if len(d) >= MIN_OUTLIER_CLUSTER:
            q1, q3 = np.percentile(d, [25, 75])
            thresholds[cid] = q3 + 1.5 * (q3 - q1)
    return thresholds
