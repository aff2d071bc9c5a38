"""What every clusterer shares: the scikit-learn contract, k rules, and a registry.

A clusterer is made by :func:`create_clusterer` from a registered name, stores its
parameters in ``__init__``, and ``fit(X)`` returns itself with ``labels_`` (``-1``: noise),
``cluster_centers_`` (member means, or the algorithm's own centroids), ``distances_`` (each
row's distance to its own centre; noise: to the nearest) and ``n_clusters_``. ``n_clusters``
is ``None`` for "chosen from the data"; a k above the number of rows is lowered to it.

Adding an algorithm is a subclass of :class:`Clusterer` with ``_labels`` and one
``@register_clusterer`` line: config validation, ``--help`` and the factory read the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np


def centers_and_distances(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each cluster ``0..max`` and every row's distance to its own centre.

    Rows labelled ``-1`` (noise) get the distance to the nearest centre.
    """
    ids = np.arange(int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0)
    centers = np.zeros((len(ids), x.shape[1]), dtype=np.float32)
    for c in ids:
        members = labels == c
        if members.any():
            centers[c] = x[members].mean(axis=0)
    distances = np.zeros(len(x), dtype=np.float32)
    if len(ids):
        own = labels >= 0
        distances[own] = np.linalg.norm(x[own] - centers[labels[own]], axis=1)
        if (~own).any():
            noise = x[~own]
            sq = (
                (noise * noise).sum(1)[:, None]
                + (centers * centers).sum(1)[None]
                - 2 * noise @ centers.T
            )
            distances[~own] = np.sqrt(np.maximum(sq.min(axis=1), 0.0))
    return centers, distances


class Clusterer:
    """Base of the clusterers: parameters in ``__init__``, the shared fit tail in :meth:`fit`.

    Subclasses implement :meth:`_labels`; ``fit`` checks the input, lowers k to the number
    of rows, numbers the clusters ``0..m-1`` (noise stays ``-1``) and computes the centres
    and distances.

    Attributes:
        labels_, cluster_centers_, distances_, n_clusters_: see the module docstring.
        notes_: where the fit differs from what was asked, in words for the run's summary.
    """

    notes_: Sequence[str] = ()

    def __init__(self, n_clusters: int | None = 100, *, random_state: int = 0) -> None:
        self.n_clusters = n_clusters
        self.random_state = random_state

    def fit(self, X: np.ndarray) -> Clusterer:
        """Cluster the rows of ``X``."""
        x = np.ascontiguousarray(X, dtype=np.float32)
        if len(x) == 0:
            raise ValueError("cannot cluster zero points")
        k = None if self.n_clusters is None else max(1, min(self.n_clusters, len(x)))
        return self._finish(x, self._labels(x, k))

    def _labels(self, x: np.ndarray, k: int | None) -> np.ndarray:
        """Labels of the rows of ``x`` (``-1``: noise) for ``k`` clusters (``None``: auto)."""
        raise NotImplementedError

    def _finish(self, x: np.ndarray, labels: np.ndarray) -> Clusterer:
        labels = np.asarray(labels, dtype=np.int64)
        keep = labels >= 0
        numbered = np.full(len(labels), -1, dtype=np.int64)
        numbered[keep] = np.unique(labels[keep], return_inverse=True)[1]  # 0..m-1, none empty
        self.labels_ = numbered
        self.cluster_centers_, self.distances_ = centers_and_distances(x, numbered)
        self.n_clusters_ = len(self.cluster_centers_)
        return self


@dataclass(frozen=True)
class ClustererInfo:
    """A registered algorithm: its name, how to make it, and a line for ``--help``."""

    name: str
    factory: Callable[[int | None, int], Clusterer]
    help: str


_REGISTRY: dict[str, ClustererInfo] = {}
F = TypeVar("F", bound=Callable[[int | None, int], Clusterer])


def register_clusterer(name: str, help: str) -> Callable[[F], F]:
    """Decorator: register ``factory(n_clusters, random_state)`` as algorithm ``name``."""

    def add(factory: F) -> F:
        _REGISTRY[name] = ClustererInfo(name, factory, help)
        return factory

    return add


def list_clusterers() -> list[str]:
    """Registered algorithm names, ``auto`` first."""
    _load_builtins()
    return sorted(_REGISTRY, key=lambda n: (n != "auto", n))


def clusterer_help() -> str:
    """One line of ``--help`` text over every registered algorithm."""
    _load_builtins()
    return "; ".join(f"{n}: {_REGISTRY[n].help}" for n in list_clusterers())


def create_clusterer(name: str, n_clusters: int | None, *, random_state: int = 0) -> Clusterer:
    """The clusterer ``name`` with ``n_clusters`` (``None``: chosen from the data).

    Raises:
        ValueError: ``name`` is not registered (config validation names the choices first).
    """
    _load_builtins()
    if name not in _REGISTRY:
        choices = ", ".join(list_clusterers())
        raise ValueError(f"unknown algorithm {name!r}; choose one of {choices}")
    return _REGISTRY[name].factory(n_clusters, random_state)


def _load_builtins() -> None:
    from . import factory  # noqa: F401  (its import registers the built-in algorithms)
