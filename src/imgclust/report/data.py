"""What the report and the exports are drawn from: one :class:`ReportData` per run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..describe import ClusterSummary
from ..scan import Rejection


@dataclass(frozen=True)
class ReportData:
    """The outcome of a run, as the gallery and the CSV exports see it.

    An image's index is its position in ``paths``; ``labels``, ``ranks``, ``distances`` and
    ``image_top_classes`` are aligned with it.

    Attributes:
        paths: absolute paths of the clustered images.
        labels: cluster id of each image.
        ranks: rank of each image inside its cluster, 0 = nearest the centroid.
        distances: distance of each image to its cluster centroid.
        image_top_classes: each image's strongest ImageNet classes as (description, score).
        clusters: one summary per cluster, ordered by ``cluster_id``.
        rejected: files that were found but not clustered, with the reason.
        model: name of the model that produced the features.
        features: which features were clustered (``"embedding"``, ``"scores"``, ...).
        outliers: per image, whether it lies beyond its cluster's outlier fence
            (:func:`imgclust.describe.outlier_thresholds`); ``None`` when not computed.
        coords: ``(n, 2)`` map positions (:mod:`imgclust.report.layout`); ``None``: no map.
        duplicate_of: per image, the index of the near-duplicate group's leader it is shown
            under, or -1 (:func:`imgclust.neardup.near_duplicates`); ``None``: no grouping.
    """

    paths: Sequence[str]
    labels: np.ndarray
    ranks: np.ndarray
    distances: np.ndarray
    image_top_classes: Sequence[tuple[tuple[str, float], ...]]
    clusters: Sequence[ClusterSummary]
    rejected: Sequence[Rejection]
    model: str
    features: str
    outliers: np.ndarray | None = None
    coords: np.ndarray | None = None
    duplicate_of: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.paths)
        for name in ("labels", "ranks", "distances", "image_top_classes", "outliers", "coords",
                     "duplicate_of"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"ReportData.{name} has {len(value)} rows, not {n}")

    @property
    def n_scanned(self) -> int:
        """Number of files considered: clustered images plus rejected files."""
        return len(self.paths) + len(self.rejected)


__all__ = ["ReportData"]
