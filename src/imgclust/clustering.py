"""The one record of a clustering: a per-image table, the clusters, and what places new photos.

Every consumer reads this record: the report and the exports (:mod:`imgclust.report`), the
saved state that ``assign`` and ``similar`` load (:mod:`imgclust.state`), and the Python
result of a run. The per-image table is defined once, in :func:`image_table`: a column added
there reaches ``assignments.csv``, ``assignments.parquet`` and the gallery's hover text.
Extra per-image columns (``columns``) come from :data:`IMAGE_COLUMNS`, a registry of
functions of the image paths (e.g. the EXIF capture date), computed once by whoever builds
the record.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .config import ReportConfig
from .decode import exif_date
from .describe import ClusterSummary, ClusterTree, ImageTopClasses
from .scan import Rejection
from .uri import is_uri, read_file, read_head

#: The name of the group of photos in no cluster (HDBSCAN's noise, label -1).
UNCLUSTERED = "unclustered"
#: The name (and label) of the group of photos ``imgclust review`` marked "not this cluster":
#: in no cluster, like the unclustered, but put there by the user (kept apart from the noise).
UNSORTED = "unsorted"
UNSORTED_LABEL = -2


def group_name(label: int) -> str:
    """The name of the group of photos of a negative ``label``: unclustered or unsorted."""
    return UNSORTED if label == UNSORTED_LABEL else UNCLUSTERED


#: Extra per-image columns: name → function of the image paths giving one value per path
#: (strings; "" when unknown). Registered with :func:`register_image_column`.
IMAGE_COLUMNS: dict[str, Callable[[Sequence[str]], np.ndarray]] = {}


def register_image_column(
    name: str,
) -> Callable[[Callable[[Sequence[str]], np.ndarray]], Callable[[Sequence[str]], np.ndarray]]:
    """Decorator: add a per-image column ``name`` computed from the image paths."""

    def add(fn: Callable[[Sequence[str]], np.ndarray]) -> Callable[[Sequence[str]], np.ndarray]:
        IMAGE_COLUMNS[name] = fn
        return fn

    return add


@register_image_column("taken")
def capture_dates(paths: Sequence[str]) -> np.ndarray:
    """When each photo was taken, from its EXIF (:func:`imgclust.decode.exif_date`);
    ``""`` when it has none. Decoding records it in the feature store, so a run reads files
    here only for photos stored before it did (:func:`image_columns`' ``known``). Reads only
    the file's header (about 0.1 ms a photo), a few files at a time, so a slow disk's
    latency overlaps; of a photo in object storage its first :data:`HEADER_BYTES` (one
    request each, more at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    remote = any(is_uri(p) for p in paths)
    with ThreadPoolExecutor(max_workers=32 if remote else 8) as pool:
        return np.array(list(pool.map(_capture_date, paths, chunksize=256)), dtype=object)


#: Bytes of an object read for its EXIF: JPEG puts its APP1 segment (at most 64 KiB) first.
HEADER_BYTES = 128 * 1024


def _capture_date(path: str) -> str:
    try:
        if not is_uri(path):
            return _exif_date(path)
        try:
            return _exif_date(io.BytesIO(read_head(path, HEADER_BYTES)))
        except Exception:  # headers past HEADER_BYTES (a large XMP or Photoshop block)
            return _exif_date(io.BytesIO(read_file(path)[0]))
    except Exception:  # no header, or not an image: the date is unknown
        return ""


def _exif_date(source: Any) -> str:
    """The EXIF date of an image (a path or a file object), as :func:`exif_date` gives it."""
    from PIL import Image

    with Image.open(source) as img:
        return exif_date(img)


def image_columns(
    paths: Sequence[str], known: Mapping[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Every registered extra column for ``paths``. ``known`` may give a column's values
    already (the feature store keeps the EXIF date read while decoding): only its ``None``
    entries are computed."""
    columns: dict[str, np.ndarray] = {}
    for name, fn in IMAGE_COLUMNS.items():
        values = np.full(len(paths), None, dtype=object)
        if known is not None and name in known:
            values[:] = known[name]
        todo = [i for i, v in enumerate(values) if v is None]
        if len(todo):
            values[todo] = np.asarray(fn([paths[i] for i in todo]), dtype=object)
        columns[name] = values
    return columns


@dataclass(frozen=True)
class Clustering:
    """A clustered collection. Arrays indexed by image are aligned with ``paths``.

    Attributes:
        paths: absolute paths of the clustered images.
        labels: cluster id of each image (0 = the largest; -1: unclustered; -2: unsorted,
            marked "not this cluster" in ``imgclust review``).
        ranks: rank inside its cluster (0 = nearest the centroid).
        distances: distance to its cluster's centroid in the clustered feature space.
        image_top_classes: each image's strongest ImageNet classes as (description, score)
            (an :class:`~imgclust.describe.ImageTopClasses` when made by a run).
        clusters: one summary per cluster, by id (the unclustered group, if any, too).
        rejected: files that were found but not clustered, with the reason.
        model: the model (with its precision) that made the features.
        features: which features were clustered (``"embedding"``, ...).
        outliers: beyond its cluster's outlier fence; ``None`` when not computed.
        coords: ``(n, 2)`` map positions; ``None``: no map.
        duplicate_of: the near-duplicate group leader an image is shown under, or -1.
        columns: extra per-image columns (:data:`IMAGE_COLUMNS`), by name.
        store_dir: the feature store the features are in.
        centroids: ``(k, d)`` centroids in the clustered space (what ``assign`` uses).
        fences: ``(k,)`` the distance beyond which a member is an outlier.
        layout: places photos added later on the same map.
        feature_centre: the mean ``embedding-centred`` features take out.
        assigned_inputs: folders/files added by ``assign``, which the next ``run`` rescans.
        report: how the gallery was drawn (``assign`` redraws it the same way).
        index_crc32: CRC-32 of ``index.faiss`` as saved (set when loaded).
        tree: the clusters' tree and their groups (:mod:`imgclust.describe.groups`).
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
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)
    store_dir: str = ""
    centroids: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    fences: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    layout: Any = None  # report.layout.MapLayout (not imported here: the report imports us)
    feature_centre: np.ndarray | None = None
    assigned_inputs: Sequence[str] = ()
    report: ReportConfig = field(default_factory=ReportConfig)
    index_crc32: int | None = None
    tree: ClusterTree | None = None

    def __post_init__(self) -> None:
        n = len(self.paths)
        for name in ("labels", "ranks", "distances", "image_top_classes", "outliers", "coords",
                     "duplicate_of"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"Clustering.{name} has {len(value)} rows, not {n}")
        for name, value in self.columns.items():
            if len(value) != n:
                raise ValueError(f"Clustering column {name!r} has {len(value)} rows, not {n}")

    @property
    def n_scanned(self) -> int:
        """Number of files considered: clustered images plus rejected files."""
        return len(self.paths) + len(self.rejected)

    @property
    def named(self) -> list[ClusterSummary]:
        """The clusters with an id (0..k-1, in order), not the unclustered group."""
        return sorted((c for c in self.clusters if c.cluster_id >= 0), key=lambda c: c.cluster_id)

    @property
    def names(self) -> list[str]:
        """Cluster names by id."""
        return [c.name for c in self.named]

    @property
    def k(self) -> int:
        """Number of clusters (the unclustered photos are not one)."""
        return len(self.named)

    @property
    def medoids(self) -> np.ndarray:
        """Image index of each cluster's medoid, by id."""
        return np.array([c.medoid for c in self.named], dtype=np.int64)

    @property
    def cluster_top_classes(self) -> list[tuple[tuple[str, float], ...]]:
        """Each cluster's strongest classes, by id."""
        return [c.top_classes for c in self.named]

    @property
    def top_class_ids(self) -> np.ndarray:
        """``(n, 3)`` each image's strongest class ids."""
        return self.top_class_arrays()[0]

    @property
    def top_class_scores(self) -> np.ndarray:
        """``(n, 3)`` their scores."""
        return self.top_class_arrays()[1]

    def cluster_name(self, label: int) -> str:
        """The name of cluster ``label`` (:data:`UNCLUSTERED` for -1, :data:`UNSORTED` for -2)."""
        names = self.names
        return names[label] if 0 <= label < len(names) else group_name(label)

    def top_class_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Each image's top classes as ``(ids, scores)``, ``(n, 3)`` arrays."""
        tops = self.image_top_classes
        if isinstance(tops, ImageTopClasses):
            return np.asarray(tops.ids), np.asarray(tops.scores)
        raise TypeError("only a clustering with ImageNet class ids can be saved")

    def grown(self, added: Clustering) -> Clustering:
        """This clustering with the images of ``added`` (same clusters) appended; ranks,
        members and medoids of the clusters follow."""
        ids, scores = self.top_class_arrays()
        new_ids, new_scores = added.top_class_arrays()
        labels = np.concatenate([self.labels, added.labels])
        distances = np.concatenate([self.distances, added.distances])
        tops = ImageTopClasses(
            np.concatenate([ids, new_ids]),
            np.concatenate([scores, new_scores]),
            self.image_top_classes.class_names,  # type: ignore[attr-defined]
        )
        return replace(
            self,
            paths=[*self.paths, *added.paths],
            labels=labels,
            ranks=ranks_by_cluster(labels, distances),
            distances=distances,
            image_top_classes=tops,
            clusters=regroup(self.clusters, labels, distances),
            rejected=sorted([*self.rejected, *added.rejected], key=lambda r: r.path),
            outliers=_cat(self.outliers, added.outliers),
            coords=_cat(self.coords, added.coords),
            duplicate_of=_cat(self.duplicate_of, added.duplicate_of),
            columns={k: np.concatenate([v, added.columns[k]]) for k, v in self.columns.items()},
            assigned_inputs=list(dict.fromkeys([*self.assigned_inputs, *added.assigned_inputs])),
        )


def _cat(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return None
    if b is None:
        raise ValueError("the images added lack a column the clustering has")
    return np.concatenate([a, b])


def ranks_by_cluster(labels: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Rank of each image inside its cluster by distance to the centroid (0 = nearest)."""
    from .describe import rank_members

    return rank_members(labels, distances)


def regroup(
    clusters: Sequence[ClusterSummary], labels: np.ndarray, distances: np.ndarray
) -> list[ClusterSummary]:
    """The summaries of ``clusters`` (names, classes, medoids kept) with their members and
    distances taken from ``labels`` again, nearest first; an unclustered group appears when
    ``labels`` has -1s (an unsorted one for -2s), and clusters left empty are dropped."""
    by_id = {c.cluster_id: c for c in clusters}
    out = []
    for cid in sorted(set(np.unique(labels).tolist()), key=lambda c: (c < 0, c)):
        idx = np.flatnonzero(labels == cid)
        idx = idx[np.lexsort((idx, distances[idx]))]
        old = by_id.get(int(cid))
        out.append(
            ClusterSummary(
                cluster_id=int(cid),
                name=old.name if old else group_name(int(cid)),
                top_classes=old.top_classes if old else (),
                members=idx,
                distances=distances[idx],
                medoid=old.medoid if old else int(idx[0]),
                distinctive=old.distinctive if old else (),
            )
        )
    return out


# -- the per-image table ---------------------------------------------------------------------


def image_table(c: Clustering) -> dict[str, Any]:
    """The per-image table of ``c``, column by column, rows ordered by cluster then rank.

    The one definition of what ``assignments.csv`` / ``assignments.parquet`` hold: path
    (absolute), cluster, rank (0 = nearest the centroid), distance, outlier, cluster_name,
    top_classes (``desc:score|...``), duplicate_of (the path it is collapsed under, or ""),
    x and y (map position, when there is a map), then every extra column.
    """
    from .report.exports import format_classes

    n = len(c.paths)
    labels = np.asarray(c.labels)
    ranks = np.asarray(c.ranks)
    order = np.lexsort((np.arange(n), ranks, labels))
    names = {s.cluster_id: _shown_name(s) for s in c.clusters}
    outliers = np.zeros(n, bool) if c.outliers is None else np.asarray(c.outliers)
    dups = np.full(n, -1) if c.duplicate_of is None else np.asarray(c.duplicate_of)
    paths = [c.paths[i] for i in order]
    table: dict[str, Any] = {
        "path": paths,
        "cluster": labels[order].astype(np.int64),
        "rank": ranks[order].astype(np.int64),
        "distance": np.asarray(c.distances)[order],
        "outlier": outliers[order].astype(np.int8),
        "cluster_name": [names.get(int(lab), "") for lab in labels[order]],
        "top_classes": [format_classes(c.image_top_classes[i]) for i in order],
        "duplicate_of": [c.paths[d] if d >= 0 else "" for d in dups[order]],
    }
    if c.coords is not None:  # the map position, to plot or join the layout elsewhere
        coords = np.asarray(c.coords, dtype=np.float32)
        table["x"], table["y"] = coords[order, 0], coords[order, 1]
    for name, values in c.columns.items():
        table[name] = np.asarray(values, dtype=object)[order]
    return table


def _shown_name(summary: ClusterSummary) -> str:
    """A cluster's name in the tables; the photos in no cluster are a group by what they
    are (:func:`group_name`), not by the classes they happen to share."""
    return summary.name if summary.cluster_id >= 0 else group_name(summary.cluster_id)


def cluster_table(c: Clustering) -> dict[str, Any]:
    """The per-cluster table (``clusters.csv`` / ``clusters.parquet``), by id: cluster, size,
    name, medoid, top_classes (dominant), distinctive_classes, and with a tree: group,
    group_name, parent (the tree node it first merges into: clusters are ``0..k-1``,
    merges ``k..2k-2`` in the order of ``tree.linkage``)."""
    from .report.exports import format_classes

    rows = sorted(c.clusters, key=lambda s: (s.cluster_id < 0, s.cluster_id))
    table: dict[str, Any] = {
        "cluster": np.array([s.cluster_id for s in rows], dtype=np.int64),
        "size": np.array([s.size for s in rows], dtype=np.int64),
        "name": [_shown_name(s) for s in rows],
        "medoid": [c.paths[s.medoid] for s in rows],
        "top_classes": [format_classes(s.top_classes) for s in rows],
        # (empty where none is stronger there than in the whole collection: e.g. with one
        # cluster, or for a clustering saved before these were kept)
        "distinctive_classes": [format_classes(s.distinctive) for s in rows],
    }
    if c.tree is not None:  # the group a cluster is in, and its first merge in the tree
        tree = c.tree
        table["group"] = np.array(
            [tree.groups[s.cluster_id] if s.cluster_id >= 0 else -1 for s in rows], np.int64
        )
        table["group_name"] = [
            tree.names[g] if g >= 0 else group_name(int(cid))
            for g, cid in zip(table["group"], table["cluster"], strict=True)
        ]
        table["parent"] = np.array(
            [tree.parents[s.cluster_id] if s.cluster_id >= 0 else -1 for s in rows], np.int64
        )
    return table


__all__ = [
    "IMAGE_COLUMNS",
    "UNCLUSTERED",
    "UNSORTED",
    "UNSORTED_LABEL",
    "Clustering",
    "cluster_table",
    "group_name",
    "image_columns",
    "image_table",
    "ranks_by_cluster",
    "register_image_column",
    "regroup",
]
