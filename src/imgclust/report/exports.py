"""Exports of a run: ``assignments``, ``clusters`` and ``rejected``, as CSV and Parquet.

The columns are :func:`imgclust.clustering.image_table` and
:func:`~imgclust.clustering.cluster_table`: defined once, written twice. ``assignments.csv``'s
``duplicate_of`` column names the photo a near-duplicate is shown under in the gallery (its
group's leader), empty for every other photo.

Each file is written atomically. CSVs are UTF-8; file names that are not valid UTF-8 are
written back as their original bytes (``errors="surrogateescape"``), so reading a CSV with
the same error handler gives paths that open the same files. The Parquet files (pandas,
Polars, DuckDB and pyarrow read them directly) hold such a name as its printable form.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._fs import atomic_open, atomic_write, ensure_dir
from ..describe import short_name

# The record is imported where it is used: clustering.py imports format_classes from here.
ASSIGNMENT_COLUMNS = (
    "path", "cluster", "rank", "distance", "outlier", "cluster_name", "top_classes",
    "duplicate_of",
)  # fmt: skip
CLUSTER_COLUMNS = ("cluster", "size", "name", "medoid", "top_classes")
REJECTED_COLUMNS = ("path", "reason")


def format_classes(classes: Iterable[tuple[str, float]]) -> str:
    """Classes as ``"espresso:0.902|cup:0.035"`` (first synonym, score to 3 decimals)."""
    return "|".join(f"{short_name(desc)}:{score:.3f}" for desc, score in classes)


def write_exports(out_dir: Path, data: Any) -> dict[str, Path]:
    """Write the exports of a :class:`~imgclust.clustering.Clustering` into ``out_dir``.

    Returns:
        The written files by name: ``"assignments"``, ``"clusters"``, ``"rejected"`` (CSV)
        and ``"assignments.parquet"``, ``"clusters.parquet"``.

    Raises:
        OutputError: when ``out_dir`` cannot be written.
    """
    from ..clustering import cluster_table, image_table

    out_dir = Path(out_dir)
    ensure_dir(out_dir)
    tables = {
        "assignments": image_table(data),
        "clusters": cluster_table(data),
        "rejected": {
            "path": [r.path for r in data.rejected],
            "reason": [r.reason for r in data.rejected],
        },
    }
    written = {}
    for name, table in tables.items():
        written[name] = out_dir / f"{name}.csv"
        _write_csv(written[name], table)
        if name != "rejected":
            written[f"{name}.parquet"] = out_dir / f"{name}.parquet"
            _write_parquet(written[f"{name}.parquet"], table)
    return written


def _cell(value: object) -> object:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return value


def _write_csv(path: Path, table: Mapping[str, Sequence[Any]]) -> None:
    columns = list(table)
    n = len(table[columns[0]]) if columns else 0
    with atomic_open(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for i in range(n):
            writer.writerow([_cell(table[c][i]) for c in columns])


def _write_parquet(path: Path, table: Mapping[str, Sequence[Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..scan import display_path

    arrays = {}
    for name, values in table.items():
        if isinstance(values, np.ndarray) and values.dtype != object:
            arrays[name] = pa.array(values)
        else:  # strings; an undecodable file name is kept in its printable form
            arrays[name] = pa.array([display_path(str(v)) for v in values], type=pa.string())
    atomic_write(path, lambda fh: pq.write_table(pa.table(arrays), fh))


__all__ = [
    "ASSIGNMENT_COLUMNS",
    "CLUSTER_COLUMNS",
    "REJECTED_COLUMNS",
    "format_classes",
    "write_exports",
]
