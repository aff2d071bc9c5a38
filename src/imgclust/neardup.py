"""Near-duplicates inside each cluster: bursts and re-saves shown as one tile in the report.

Two images are near-duplicates when the cosine distance of their L2-normalised embeddings is
below a threshold (:data:`DEFAULT_THRESHOLD`, measured in ``docs/notes-issue-5.md``). Groups
are formed per cluster by *leader* grouping in nearest-first order: the member nearest the
centroid that is not yet in a group leads one and takes every ungrouped member within the
threshold of it. A group's spread is therefore bounded by the threshold around its leader
(no chains of small steps that end far away), and the leader is what the report shows.

Neighbours come from a faiss range search: exact up to :data:`EXACT_MAX` members per
cluster; beyond, an inverted file (about :data:`LIST_SIZE` members a list, :data:`N_PROBE`
lists searched), so a 100k cluster costs seconds, not the n² of the exact search. Near
duplicates are so close that they share a list or a neighbouring one; memory follows the
matches found, never the square of a cluster's size. (An HNSW graph was slower to build
here and missed copies: measured in docs/notes-issue-5.md.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .config import DUP_THRESHOLD as DEFAULT_THRESHOLD

if TYPE_CHECKING:
    from .store import Rows

#: Clusters up to this size are searched exactly; larger ones through an inverted file.
EXACT_MAX = 5_000
#: Members per inverted list of a large cluster, and lists searched per image.
LIST_SIZE = 1_000
N_PROBE = 3


def near_duplicates(
    embedding: Rows,
    labels: np.ndarray,
    distances: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> np.ndarray:
    """Group each cluster's near-duplicates.

    Args:
        embedding: ``(n, d)`` image embeddings (any scale; normalised here, a cluster at a time).
        labels: cluster of each image (noise, a negative id, is grouped like a cluster).
        distances: distance to the cluster centroid; the nearest member of a group leads it.
        threshold: cosine distance below which two images are grouped; ``0`` groups nothing.

    Returns:
        ``duplicate_of``: ``(n,)`` int64, the index of the image's group leader, or ``-1``
        for a leader or an image without near-duplicates.
    """
    n = len(labels)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    if threshold <= 0 or n < 2:
        return duplicate_of
    from .store import rows_by_group

    clusters = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) >= 2:
            clusters.append(members[np.lexsort((members, distances[members]))])  # nearest first
    # (rows kept in the store: read a batch of clusters at a time, not a cluster at a time)
    for members, rows in zip(clusters, rows_by_group(embedding, clusters), strict=True):
        x = np.asarray(rows, dtype=np.float32)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        lims, neighbours = _neighbours(x, 1.0 - threshold)
        leader = _lead(lims, neighbours)
        grouped = leader >= 0
        duplicate_of[members[grouped]] = members[leader[grouped]]
    return duplicate_of


def _neighbours(x: np.ndarray, min_similarity: float) -> tuple[np.ndarray, np.ndarray]:
    """CSR lists (``lims``, ``ids``) of each row's rows with inner product ``>= min_similarity``."""
    import faiss

    x = np.ascontiguousarray(x)
    index: Any
    if len(x) <= EXACT_MAX:
        index = faiss.IndexFlatIP(x.shape[1])
    else:
        quantizer = faiss.IndexFlatIP(x.shape[1])
        index = faiss.IndexIVFFlat(
            quantizer, x.shape[1], len(x) // LIST_SIZE, faiss.METRIC_INNER_PRODUCT
        )
        index.train(x)
        index.nprobe = N_PROBE
    index.add(x)
    lims, sims, ids = index.range_search(x, min_similarity)
    keep = sims >= min_similarity
    if not keep.all():  # drop results just under the radius (float rounding in faiss)
        rows = np.repeat(np.arange(len(x)), np.diff(lims))[keep]
        lims = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(x)))])
        ids = ids[keep]
    return np.asarray(lims, np.int64), np.asarray(ids, np.int64)


def _lead(lims: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Leader grouping over rows in order: each row's leader (a row number) or -1."""
    n = len(lims) - 1
    leader = np.full(n, -1, dtype=np.int64)
    taken = np.zeros(n, dtype=bool)
    for i in range(n):
        if taken[i]:
            continue
        taken[i] = True
        if lims[i + 1] - lims[i] <= 1:  # only itself
            continue
        near = ids[lims[i] : lims[i + 1]]
        near = near[~taken[near]]
        leader[near] = i
        taken[near] = True
    return leader


def group_sizes(duplicate_of: np.ndarray) -> np.ndarray:
    """Per image, how many near-duplicates it leads (0 for most images and every follower)."""
    counts = np.zeros(len(duplicate_of), dtype=np.int64)
    followers = duplicate_of[duplicate_of >= 0]
    np.add.at(counts, followers, 1)
    return counts


__all__ = ["DEFAULT_THRESHOLD", "EXACT_MAX", "group_sizes", "near_duplicates"]
