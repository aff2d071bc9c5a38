"""The map view's 2-D layout: every image as a point, clusters as discs.

Not UMAP: umap-learn needs minutes for 100k images on two cores and tens of minutes at 1M,
and its layout cannot place a photo added later without refitting. This layout is linear
in the number of images (one matrix product), and a new image is placed by the same rule:

* cluster centres are placed by PCA of the centroids (similar clusters land near each other),
  then pushed apart until no two discs overlap (a few hundred discs: milliseconds);
* a disc's radius grows with the square root of the cluster's size;
* a member sits at a distance from its disc's centre proportional to its distance to the
  centroid (outliers at the rim), in the direction of its offset from the centroid projected
  on the two main axes of all offsets (near members of one cluster stay near on the map).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_PUSH_ITERATIONS = 200
#: Images placed at a time (bounded memory at a million images).
_PLACE_ROWS = 8192


@dataclass(frozen=True)
class MapLayout:
    """A fitted layout; :meth:`place` maps images (features, cluster, distance) to 2-D."""

    centres: np.ndarray  # (k, 2) disc centres
    radii: np.ndarray  # (k,) disc radii
    basis: np.ndarray  # (d, 2) projection of offsets from the centroid
    scale: np.ndarray  # (k,) distance that reaches the rim

    def place(
        self,
        features: np.ndarray,
        centroids: np.ndarray,
        labels: np.ndarray,
        distances: np.ndarray,
    ) -> np.ndarray:
        """(n, 2) float32 positions of images of the given clusters.

        Works ``_PLACE_ROWS`` images at a time: a float32 copy of a million 1280-d rows
        (and of their centroids) would be 10 GB.
        """
        direction = np.empty((len(features), 2), dtype=np.float64)
        for start in range(0, len(features), _PLACE_ROWS):
            part = slice(start, start + _PLACE_ROWS)
            offsets = features[part].astype(np.float32) - centroids[labels[part]]
            direction[part] = offsets @ self.basis
        norm = np.linalg.norm(direction, axis=1, keepdims=True)
        direction = np.where(norm > 1e-12, direction / np.maximum(norm, 1e-12), [[1.0, 0.0]])
        reach = np.minimum(distances / self.scale[labels], 1.0) * self.radii[labels]
        return (self.centres[labels] + direction * reach[:, None]).astype(np.float32)


def fit_layout(
    features: np.ndarray, centroids: np.ndarray, labels: np.ndarray, distances: np.ndarray
) -> MapLayout:
    """Fit the layout of a clustering (``labels`` ≥ 0, aligned with ``features``)."""
    k = len(centroids)
    sizes = np.bincount(labels, minlength=k).astype(np.float64)
    radii = np.sqrt(np.maximum(sizes, 1.0))
    c = centroids.astype(np.float64) - centroids.mean(axis=0)
    if k > 2:
        _, _, vt = np.linalg.svd(c, full_matrices=False)
        centres = c @ vt[:2].T
    else:
        centres = np.c_[np.arange(k, dtype=np.float64), np.zeros(k)]
    spread = np.abs(centres).max() or 1.0
    centres = centres / spread * radii.sum() * 0.5
    centres = _push_apart(centres, radii * 1.08)
    sample = np.random.default_rng(0).choice(
        len(features), min(len(features), 10_000), replace=False
    )
    offsets = features[sample].astype(np.float32) - centroids[labels[sample]]
    basis = _top_axes(offsets - offsets.mean(axis=0))
    scale = np.ones(k)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    for cid in range(k):
        d = distances[order[bounds[cid] : bounds[cid + 1]]]
        if len(d):
            scale[cid] = max(float(np.percentile(d, 99)), 1e-6)
    return MapLayout(
        centres=centres.astype(np.float32),
        radii=radii.astype(np.float32),
        basis=basis.astype(np.float32),
        scale=scale.astype(np.float32),
    )


def _top_axes(x: np.ndarray, iterations: int = 12) -> np.ndarray:
    """The two main axes of the rows of ``x``, ``(d, 2)``, by subspace iteration: a few
    matrix-vector products instead of a full SVD (which takes minutes at 20k x 1280)."""
    d = x.shape[1]
    if d < 2 or len(x) < 2:
        return np.eye(d, 2)
    v = np.random.default_rng(0).normal(size=(d, 2))
    for _ in range(iterations):
        v, _ = np.linalg.qr(x.T @ (x @ v))
    return v


def _push_apart(centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Move discs apart along the line between their centres until none overlap."""
    p = centres.copy()
    rng = np.random.default_rng(1)
    for _ in range(_PUSH_ITERATIONS):
        delta = p[:, None, :] - p[None, :, :]
        dist = np.linalg.norm(delta, axis=2)
        need = radii[:, None] + radii[None, :]
        overlap = np.triu(need - dist, 1)
        if (overlap <= 1e-9).all():
            break
        overlap = np.maximum(overlap, 0)
        overlap = overlap + overlap.T
        safe = np.where(dist > 1e-9, dist, 1.0)
        unit = delta / safe[..., None]
        same = np.argwhere(dist <= 1e-9)  # coinciding centres: push apart in a random direction
        if len(same):
            unit[same[:, 0], same[:, 1]] = rng.normal(size=(len(same), 2))
        p += (
            0.5
            * (unit * overlap[..., None]).sum(axis=1)
            / np.maximum((overlap > 0).sum(1), 1)[:, None]
        )
    return p
