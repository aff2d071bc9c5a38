"""CSV exports of a run: ``assignments.csv``, ``clusters.csv`` and ``rejected.csv``.

``assignments.csv``'s ``duplicate_of`` column names the photo a near-duplicate is shown under
in the gallery (its group's leader), empty for every other photo.

Each file is UTF-8 and written atomically. File names that are not valid UTF-8 are written
back as their original bytes (``errors="surrogateescape"``), so reading a CSV with the same
error handler gives paths that open the same files.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .._fs import atomic_open, ensure_dir
from ..describe import short_name
from .data import ReportData

ASSIGNMENT_COLUMNS = (
    "path", "cluster", "rank", "distance", "outlier", "cluster_name", "top_classes",
    "duplicate_of",
)  # fmt: skip
CLUSTER_COLUMNS = ("cluster", "size", "name", "medoid", "top_classes")
REJECTED_COLUMNS = ("path", "reason")


def format_classes(classes: Iterable[tuple[str, float]]) -> str:
    """Classes as ``"espresso:0.902|cup:0.035"`` (first synonym, score to 3 decimals)."""
    return "|".join(f"{short_name(desc)}:{score:.3f}" for desc, score in classes)


def write_exports(out_dir: Path, data: ReportData) -> dict[str, Path]:
    """Write the three CSV exports of ``data`` into ``out_dir``.

    Returns:
        The written files by name: ``"assignments"``, ``"clusters"`` and ``"rejected"``.

    Raises:
        OutputError: when ``out_dir`` cannot be written.
    """
    out_dir = Path(out_dir)
    ensure_dir(out_dir)
    tables: dict[str, tuple[Sequence[str], Iterable[Sequence[object]]]] = {
        "assignments": (ASSIGNMENT_COLUMNS, _assignment_rows(data)),
        "clusters": (CLUSTER_COLUMNS, _cluster_rows(data)),
        "rejected": (REJECTED_COLUMNS, ([r.path, r.reason] for r in data.rejected)),
    }
    written = {}
    for name, (columns, rows) in tables.items():
        written[name] = out_dir / f"{name}.csv"
        _write_csv(written[name], columns, rows)
    return written


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    with atomic_open(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)


def _assignment_rows(data: ReportData) -> Iterable[list[object]]:
    names = {c.cluster_id: c.name for c in data.clusters}
    labels = np.asarray(data.labels)
    ranks = np.asarray(data.ranks)
    outliers = np.zeros(len(labels), bool) if data.outliers is None else np.asarray(data.outliers)
    dups = np.full(len(labels), -1) if data.duplicate_of is None else np.asarray(data.duplicate_of)
    for i in np.lexsort((np.arange(len(labels)), ranks, labels)):
        label = int(labels[i])
        yield [
            data.paths[i],
            label,
            int(ranks[i]),
            f"{float(data.distances[i]):.6g}",
            int(bool(outliers[i])),
            names.get(label, ""),
            format_classes(data.image_top_classes[i]),
            data.paths[dups[i]] if dups[i] >= 0 else "",
        ]


def _cluster_rows(data: ReportData) -> Iterable[list[object]]:
    for c in data.clusters:
        yield [c.cluster_id, c.size, c.name, data.paths[c.medoid], format_classes(c.top_classes)]


__all__ = [
    "ASSIGNMENT_COLUMNS",
    "CLUSTER_COLUMNS",
    "REJECTED_COLUMNS",
    "format_classes",
    "write_exports",
]
