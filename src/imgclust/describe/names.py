"""Names that tell clusters apart.

A cluster's *dominant* classes are those with the highest mean score among its photos (what
the gallery always showed). A class strong in every photo of the collection ("grocery store"
in a shop's photos) is dominant everywhere and tells no cluster from another. The
*distinctive* classes weigh each class's mean score in the cluster by how much more it is
there than in the whole collection: ``m_c * log(m_c / m_all)``, the class's term of the
Kullback-Leibler divergence of the cluster from the collection. Rare classes need mass in the
cluster to count, and shared ones need to be stronger than usual. Measured against lift and
log-odds scores in ``bench/results/names.md``.

Then:

* where the leading classes are close (the second at least half the first) their lowest
  common WordNet hypernym names the cluster when it is specific ("citrus" for lemon and
  orange, "motor vehicle" for cars and trucks);
* clusters that end up with the same name get the class that sets each apart from the others
  of that name ("Granny Smith / lemon"); those that still collide, or that nothing separates,
  are numbered by size ("Granny Smith · 2 of 6").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .hierarchy import Hierarchy
from .summary import NAME_CLASSES, NAME_SHARE, short_name

#: How classes are scored for a name ("auto": dominant, distinctive where that repeats).
METHODS = ("auto", "distinctive", "dominant")
#: With "auto", a class leading more than this share of the clusters' dominant names is too
#: common to tell them apart: those clusters are named by their distinctive classes.
MAX_LEAD_SHARE = 0.1
#: Re-scoring such a crowd, a cluster is named only by classes strong in it (at least this
#: share of its top mean score), ...
STRONG = 0.4
#: ... each scored by its divergence term from the crowd plus this much of its own mean score,
#: ``m_c * (log(m_c / m_crowd) + OWN_MASS)``: what sets it apart, among what it shows. Both from
#: ``bench/names.py`` (a plateau: 0.4-0.5 and 0.5-1.0 score alike on both labelled sets).
OWN_MASS = 0.5
#: A second class this close to the first makes the leaves "disagree": a hypernym may name them.
CLOSE = 0.5
#: Below this divergence from the others of its name (nats), nothing separates a cluster.
SEPARABLE = 0.02
_EPS = 1e-9


@dataclass(frozen=True)
class Naming:
    """One cluster's name and the classes behind it."""

    name: str
    lead: int  # the class the name starts from (its index in the scores)
    distinctive: tuple[tuple[str, float], ...]  # (description, score), strongest first
    dominant: tuple[tuple[str, float], ...]  # (description, mean score), strongest first


def class_scores(means: np.ndarray, background: np.ndarray, method: str) -> np.ndarray:
    """Per class, how well it names a cluster whose mean scores are ``means`` (rows)."""
    if method == "dominant":
        return means
    if method == "distinctive":
        return means * np.log((means + _EPS) / (background + _EPS))
    raise ValueError(f"unknown naming method {method!r}; choose one of {', '.join(METHODS)}")


def name_clusters(
    means: np.ndarray,
    sizes: np.ndarray,
    class_names: Sequence[str],
    *,
    method: str = "distinctive",
    hierarchy: Hierarchy | None = None,
    scores: np.ndarray | None = None,
) -> list[Naming]:
    """Names for clusters with mean class scores ``means`` (``(k, C)``) and ``sizes``.

    ``scores`` (``(k, C)``) replaces ``method``'s class scores (the bench tries others).
    """
    means = np.asarray(means, dtype=np.float64)
    if not len(means):
        return []
    weights = np.asarray(sizes, dtype=np.float64)
    background = (means * weights[:, None]).sum(axis=0) / max(weights.sum(), 1.0)
    if scores is None and method == "auto":
        scores = _uncrowded(means, weights, class_scores(means, background, "dominant"))
    elif scores is None:
        scores = class_scores(means, background, method)
    leads = [_leading(row) for row in scores]
    names = [
        _words(lead, row, class_names, hierarchy) for lead, row in zip(leads, scores, strict=True)
    ]
    names = _separate(names, means, class_names, weights)
    return [
        Naming(
            name=names[c],
            lead=leads[c][0],
            distinctive=_top(class_scores(means[c : c + 1], background, "distinctive")[0],
                             class_names, above_zero=True),
            dominant=_top(means[c], class_names),
        )
        for c in range(len(means))
    ]  # fmt: skip


def _uncrowded(means: np.ndarray, weights: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Re-score the clusters whose leading class leads too many (> MAX_LEAD_SHARE): each by
    what sets it apart from the clusters it would share that lead with, among the classes
    strong in it (STRONG, OWN_MASS). A few rounds, as a re-scored crowd may gather under a new
    lead."""
    scores = scores.copy()
    limit = max(1, MAX_LEAD_SHARE * len(means))
    for _ in range(3):
        leaders = np.argmax(scores, axis=1)
        counts = np.bincount(leaders, minlength=scores.shape[1])
        crowded = np.unique(leaders[counts[leaders] > limit])
        if not len(crowded):
            break
        for leader in crowded:
            crowd = np.flatnonzero(leaders == leader)
            crowd_mean = (means[crowd] * weights[crowd, None]).sum(0) / weights[crowd].sum()
            own = means[crowd]
            apart = class_scores(own, crowd_mean, "distinctive") + OWN_MASS * own
            strong = own >= STRONG * own.max(axis=1, keepdims=True)
            # A weak class never leads; among them the old order stays (for the name's tail).
            rescored = np.where(strong, apart, own - 1e6)
            still = np.flatnonzero(np.argmax(rescored, axis=1) == leader)
            if len(still) > limit:  # nothing strong sets these apart: the clusters where the
                # crowd's class is weakest are named by whatever sets them apart at all
                free = still[np.argsort(-own[still, leader], kind="stable")[int(limit) :]]
                rescored[free] = apart[free]
            scores[crowd] = rescored
    return scores


def _leading(row: np.ndarray) -> list[int]:
    """The classes that lead a score row: the top one and those within NAME_SHARE of it."""
    order = np.argsort(-row)[:NAME_CLASSES]
    top = float(row[order[0]])
    return [int(j) for j in order if top > 0 and float(row[j]) >= NAME_SHARE * top] or [
        int(order[0])
    ]


def _words(
    lead: list[int], row: np.ndarray, class_names: Sequence[str], hierarchy: Hierarchy | None
) -> str:
    words = list(dict.fromkeys(short_name(class_names[j]) for j in lead))
    if hierarchy is not None and len(lead) > 1:
        close = [j for j in lead if row[j] >= CLOSE * row[lead[0]]]
        broader = hierarchy.common(close) if len(close) > 1 else None
        if broader is not None:
            return broader
    return " / ".join(words)


def _separate(
    names: list[str], means: np.ndarray, class_names: Sequence[str], sizes: np.ndarray
) -> list[str]:
    """Make names unique: add what sets each apart from the others of its name, or number.

    Names of the same words in another order ("valley / volcano", "volcano / valley") are
    the same name to a reader: they are told apart as well."""
    out = list(names)
    for members in _collisions(out).values():
        group_mean = means[members].mean(axis=0)
        for c in members:
            contrast = means[c] * np.log((means[c] + _EPS) / (group_mean + _EPS))
            if contrast.sum() < SEPARABLE:
                continue  # nothing sets it apart: numbered below
            used = {w for m in members for w in out[m].split(" / ")}
            # A word that sets it apart must also be there: 5% of its top class's score.
            present = means[c] >= 0.05 * means[c].max()
            for j in np.argsort(-contrast):
                word = short_name(class_names[int(j)])
                if contrast[j] <= 0 or not present[j]:
                    break
                if word not in used:
                    out[c] = f"{names[c]} / {word}"
                    break
    for members in _collisions(out).values():
        by_size = sorted(members, key=lambda c: (-sizes[c], c))
        shared = out[by_size[0]]  # (one order of the words for all: the largest's)
        for rank, c in enumerate(by_size, start=1):
            out[c] = f"{shared} · {rank} of {len(members)}"
    return out


def _collisions(names: list[str]) -> dict[frozenset[str], list[int]]:
    """Clusters whose names have the same words, in any order (only groups of two or more)."""
    seen: dict[frozenset[str], list[int]] = defaultdict(list)
    for c, name in enumerate(names):
        seen[frozenset(name.split(" / "))].append(c)
    return {n: m for n, m in seen.items() if len(m) > 1}


def _top(
    row: np.ndarray, class_names: Sequence[str], n: int = 5, *, above_zero: bool = False
) -> tuple[tuple[str, float], ...]:
    """The ``n`` strongest classes; with ``above_zero`` only those that score above 0 (a
    cluster no stronger in any class than the collection, e.g. the only one, has none)."""
    order = np.argsort(-row)[:n]
    return tuple(
        (class_names[int(j)], float(row[j])) for j in order if not above_zero or row[j] > 1e-9
    )
