"""Describe: name each cluster from its ImageNet class scores, order members, pick a medoid.

A cluster's name is made of the ImageNet classes that dominate its *mean* class-score vector
(the softmax scores, whatever features were clustered), written as words, never synset ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

import numpy as np

from ..cluster.features import softmax

if TYPE_CHECKING:
    from ..store import Rows

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
        distinctive: the classes that set it apart from the collection, as (description,
            score) (:mod:`imgclust.describe.names`); empty until named.
    """

    cluster_id: int
    name: str
    top_classes: tuple[tuple[str, float], ...]
    members: np.ndarray
    distances: np.ndarray
    medoid: int
    distinctive: tuple[tuple[str, float], ...] = ()

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


def top_classes(scores: np.ndarray, class_names: Sequence[str], n: int = 3) -> ImageTopClasses:
    """The ``n`` strongest classes of each row of ``scores`` as (description, score)."""
    ids = top_class_ids(scores, n)
    return ImageTopClasses(ids, np.take_along_axis(scores, ids, axis=1), class_names)


class ImageTopClasses(Sequence[tuple[tuple[str, float], ...]]):
    """Each image's strongest classes as ``((description, score), ...)``, made on access.

    Holds two small ``(n, top)`` arrays instead of a million tuples of tuples.
    """

    def __init__(self, ids: np.ndarray, scores: np.ndarray, class_names: Sequence[str]) -> None:
        self.ids, self.scores, self.class_names = ids, scores, class_names

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, i: int) -> tuple[tuple[str, float], ...]: ...

    @overload
    def __getitem__(self, i: slice) -> list[tuple[tuple[str, float], ...]]: ...

    def __getitem__(
        self, i: int | slice
    ) -> tuple[tuple[str, float], ...] | list[tuple[tuple[str, float], ...]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return tuple(
            (self.class_names[int(c)], float(s))
            for c, s in zip(self.ids[i], self.scores[i], strict=True)
        )


@dataclass(frozen=True)
class ClassStats:
    """What describing needs from the class scores, gathered in one pass over the logits.

    Attributes:
        cluster_scores: mean softmax class scores of each cluster id (``-1``: noise).
        top_ids: ``(n, top)`` each image's strongest classes, strongest first.
        top_scores: ``(n, top)`` their softmax scores.
    """

    cluster_scores: dict[int, np.ndarray]
    top_ids: np.ndarray
    top_scores: np.ndarray

    def image_top_classes(self, class_names: Sequence[str]) -> ImageTopClasses:
        """Each image's top classes with their descriptions."""
        return ImageTopClasses(self.top_ids, self.top_scores, class_names)


def class_statistics(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]], labels: np.ndarray, top: int = 3
) -> ClassStats:
    """Cluster mean scores and per-image top classes from ``(rows, logits)`` chunks.

    ``rows`` index the images of ``labels``; every image must come once. Only one chunk of
    softmax scores exists at a time, so a million images never need their 1,000 scores held
    at once (4 GB in float32).
    """
    clusters = np.unique(labels)
    where = np.searchsorted(clusters, labels)
    n = len(labels)
    sums: np.ndarray | None = None
    top_ids = np.zeros((n, top), dtype=np.int32)
    top_scores = np.zeros((n, top), dtype=np.float32)
    for rows, logits in chunks:
        scores = softmax(logits)
        if sums is None:
            sums = np.zeros((len(clusters), scores.shape[1]), dtype=np.float64)
        ids = top_class_ids(scores, top)
        top_ids[rows], top_scores[rows] = ids, np.take_along_axis(scores, ids, axis=1)
        order = np.argsort(where[rows], kind="stable")
        groups = where[rows][order]
        starts = np.r_[0, np.flatnonzero(np.diff(groups)) + 1]
        sums[groups[starts]] += np.add.reduceat(scores[order], starts, axis=0, dtype=np.float64)
    sizes = np.bincount(where, minlength=len(clusters))
    cluster_scores = {
        int(c): (sums[i] / max(int(sizes[i]), 1)) if sums is not None else np.zeros(0)
        for i, c in enumerate(clusters)
    }
    return ClassStats(cluster_scores, top_ids, top_scores)


def mean_scores_by_cluster(scores: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Each cluster id's mean row of ``scores`` held in memory (see :func:`class_statistics`)."""
    return {
        int(c): scores[idx].astype(np.float64).mean(axis=0)
        for c, idx in _members_by_cluster(labels)
    }


def _members_by_cluster(labels: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(cluster id, member indices in ascending order)`` per cluster, one sort for all."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_labels)) + 1]
    ends = np.r_[starts[1:], len(labels)]
    for a, b in zip(starts, ends, strict=True):
        if b > a:
            yield int(sorted_labels[a]), order[a:b]


def rank_members(labels: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Rank of each image inside its cluster by distance to the centroid (0 = nearest)."""
    order = np.lexsort((np.arange(len(labels)), distances, labels))
    ranks = np.empty(len(labels), dtype=np.int64)
    sorted_labels = labels[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_labels)) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(labels)]))
    ranks[order] = np.arange(len(labels)) - run_start
    return ranks


def medoid(features: Rows, members: np.ndarray, seed: int = 0) -> int:
    """The member minimising mean Euclidean distance to the others (exact up to 256 members).

    Larger clusters: candidates are the 256 members nearest the centroid (``members`` must be
    ordered nearest-first), measured against a random sample of 2,048 members.
    """
    candidates, references = _medoid_sample(members, seed)
    return _medoid_of(candidates, features[candidates], features[references])


def _medoid_sample(members: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The candidates and the references :func:`medoid` compares them with."""
    references = members
    if len(members) > _MEDOID_REFERENCES:
        rng = np.random.default_rng(seed)
        references = rng.choice(members, _MEDOID_REFERENCES, replace=False)
    return members[:_MEDOID_CANDIDATES], references


def _medoid_of(candidates: np.ndarray, a: np.ndarray, b: np.ndarray) -> int:
    a, b = a.astype(np.float32), b.astype(np.float32)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    mean_dist = np.sqrt(np.maximum(sq, 0.0)).mean(axis=1)
    return int(candidates[int(np.argmin(mean_dist))])


def _medoids(features: Rows, members: list[np.ndarray], seed: int) -> list[int]:
    """:func:`medoid` of each of ``members``, their rows read a batch of clusters at a time
    (:func:`~imgclust.store.rows_by_group`)."""
    from ..store import rows_by_group

    samples = [_medoid_sample(m, seed) for m in members]
    groups = [np.concatenate([c, r]) for c, r in samples]
    return [
        _medoid_of(c, rows[: len(c)], rows[len(c) :])
        for (c, _), rows in zip(samples, rows_by_group(features, groups), strict=True)
    ]


def describe(
    labels: np.ndarray,
    distances: np.ndarray,
    features: Rows,
    cluster_scores: Mapping[int, np.ndarray],
    class_names: Sequence[str],
    *,
    seed: int = 0,
    medoids: np.ndarray | None = None,
) -> list[ClusterSummary]:
    """Summarise every non-empty cluster; ``labels`` must already be numbered by size.

    Args:
        labels: cluster id per image (``-1`` marks noise, summarised as its own group).
        distances: distance of each image to its cluster centre.
        features: the clustered features (for the medoid).
        cluster_scores: each cluster id's mean softmax class scores
            (:func:`class_statistics` or :func:`mean_scores_by_cluster`).
        class_names: ImageNet class descriptions, index-aligned with the scores.
        medoids: each cluster's medoid (an image index, by cluster id) where it was found
            elsewhere (the clustering passes); ``features`` are then not read.
    """
    summaries = []
    clusters = [
        (cid, idx[np.lexsort((idx, distances[idx]))]) for cid, idx in _members_by_cluster(labels)
    ]
    chosen = (  # (by cluster id; noise, -1, too)
        {int(c): int(medoids[c]) for c, _ in clusters}
        if medoids is not None
        else dict(
            zip(
                (c for c, _ in clusters),
                _medoids(features, [i for _, i in clusters], seed),
                strict=True,
            )
        )
    )
    for cid, idx in clusters:
        mean_scores = cluster_scores[int(cid)]
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
                medoid=chosen[cid],
            )
        )
    return summaries


def relabel_by_size(labels: np.ndarray, tiebreak: Sequence[str]) -> np.ndarray:
    """Renumber clusters 0.. by decreasing size (ties: smallest member path first).

    Negative labels (noise) are kept as they are.
    """
    groups = [(c, idx) for c, idx in _members_by_cluster(labels) if c >= 0]
    ids = [c for c, _ in groups]
    first_path = {c: min(tiebreak[int(i)] for i in idx) for c, idx in groups}
    sizes = {c: len(idx) for c, idx in groups}
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
    for cid, idx in _members_by_cluster(labels):
        d = distances[idx]
        if 0 <= cid < n_clusters and len(d) >= MIN_OUTLIER_CLUSTER:
            q1, q3 = np.percentile(d, [25, 75])
            thresholds[cid] = q3 + 1.5 * (q3 - q1)
    return thresholds
