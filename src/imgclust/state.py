"""The saved clustering of an output folder, so later commands need not cluster again.

A run leaves, under ``OUT/.imgclust/``:

* ``model.npz``: the centroids (in the clustered feature space), which features and model
  made them, each cluster's outlier fence, name, top classes and medoid, and the image table
  (paths, cluster, distance, outlier flag, top-3 classes) plus the rejected files;
* ``index.faiss``: a faiss index of the clustered features, row ``i`` being image ``i`` of
  ``model.npz``: exact L2 search over the features kept as float16 (faiss's fp16 scalar
  quantizer), the precision the store keeps them in. A run fills the index's storage straight
  from the store (:func:`feature_index`), so at a million images the index *is* the feature
  matrix the run clusters (2.5 GB), never a second copy; no training, new rows can be added,
  and an exact query scans a million rows in well under a second.

Both are written atomically, the index first and ``model.npz`` last; a row-count mismatch
(a crash between the two) is reported with the fix instead of giving wrong neighbours.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import ReportConfig
from .exceptions import InputError, OutputError
from .report.layout import MapLayout
from .scan import Rejection

MODEL_FILE = "model.npz"
INDEX_FILE = "index.faiss"
_FORMAT = 1


@dataclass(frozen=True)
class SavedClustering:
    """Everything ``assign`` and ``similar`` need from the run that clustered a collection.

    Arrays indexed by image are aligned with ``paths``; arrays indexed by cluster with
    ``names``. ``top_class_ids``/``top_class_scores`` are each image's 3 strongest classes.
    """

    model: str
    features: str
    store_dir: str
    centroids: np.ndarray  # (k, d) float32
    fences: np.ndarray  # (k,) outlier fence per cluster
    names: Sequence[str]
    cluster_top_classes: Sequence[tuple[tuple[str, float], ...]]
    medoids: np.ndarray  # (k,) image index of each cluster's medoid
    paths: Sequence[str]
    labels: np.ndarray
    distances: np.ndarray
    outliers: np.ndarray
    top_class_ids: np.ndarray  # (n, 3) int
    top_class_scores: np.ndarray  # (n, 3) float
    rejected: Sequence[Rejection]
    report: ReportConfig
    coords: np.ndarray | None = None  # (n, 2) map positions
    layout: MapLayout | None = None  # places images added later on the same map
    duplicate_of: np.ndarray | None = None  # (n,) near-duplicate group leader, or -1
    assigned_inputs: Sequence[str] = ()  # folders/files added by `assign`; `run` rescans them
    feature_centre: np.ndarray | None = None  # (d,) the mean `embedding-centred` takes out


def centroids_by_label(
    centers: np.ndarray, raw_labels: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Reorder a clusterer's centroids to follow relabelled cluster ids."""
    keep = labels >= 0
    # Which raw cluster each new id was (n-sized integer arrays, never an (n, d) gather).
    raw_of = np.zeros(int(labels.max()) + 1, dtype=np.int64)
    raw_of[labels[keep]] = raw_labels[keep]
    return np.asarray(centers, dtype=np.float32)[raw_of]


def save_clustering(marker_dir: Path, saved: SavedClustering, index: Any) -> None:
    """Write ``index.faiss`` (rows aligned with ``saved.paths``), then ``model.npz``, both
    atomically.

    Raises:
        OutputError: the folder cannot be written.
    """
    write_index(marker_dir, index)
    _write_model(marker_dir, saved)


def save_clustering_meta(marker_dir: Path, saved: SavedClustering) -> None:
    """Rewrite ``model.npz`` only (after the index was updated in step)."""
    _write_model(marker_dir, saved)


def _write_model(marker_dir: Path, saved: SavedClustering) -> None:
    meta = {
        "format": _FORMAT,
        "model": saved.model,
        "features": saved.features,
        "store_dir": saved.store_dir,
        "names": list(saved.names),
        "cluster_top_classes": [list(map(list, t)) for t in saved.cluster_top_classes],
        "paths": list(saved.paths),
        "rejected": [[r.path, r.reason] for r in saved.rejected],
        "report": asdict(saved.report),
        "assigned_inputs": list(saved.assigned_inputs),
    }
    blob = np.frombuffer(json.dumps(meta, ensure_ascii=True).encode("ascii"), dtype=np.uint8)
    arrays: dict[str, np.ndarray] = {
        "meta": blob,
        "centroids": np.asarray(saved.centroids, np.float32),
        "fences": np.asarray(saved.fences, np.float32),
        "medoids": np.asarray(saved.medoids, np.int64),
        "labels": np.asarray(saved.labels, np.int64),
        "distances": np.asarray(saved.distances, np.float32),
        "outliers": np.asarray(saved.outliers, bool),
        "top_class_ids": np.asarray(saved.top_class_ids, np.int32),
        "top_class_scores": np.asarray(saved.top_class_scores, np.float32),
    }
    if saved.duplicate_of is not None:
        arrays["duplicate_of"] = np.asarray(saved.duplicate_of, np.int64)
    if saved.feature_centre is not None:
        arrays["feature_centre"] = np.asarray(saved.feature_centre, np.float32)
    if saved.coords is not None and saved.layout is not None:
        arrays["coords"] = np.asarray(saved.coords, np.float32)
        for name in ("centres", "radii", "basis", "scale"):
            arrays[f"map_{name}"] = getattr(saved.layout, name)
    _atomic(marker_dir / MODEL_FILE, lambda tmp: np.savez(tmp, **arrays))  # type: ignore[arg-type]


def load_clustering(marker_dir: Path) -> SavedClustering:
    """Read ``model.npz``.

    Raises:
        InputError: the folder holds no saved clustering (or an unreadable one).
    """
    path = marker_dir / MODEL_FILE
    if not path.is_file():
        raise InputError(
            f"{marker_dir.parent} holds no saved clustering ({path} is missing); "
            "run `imgclust run PHOTOS --out` into it first"
        )
    try:
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode("ascii"))
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path} is unreadable ({exc}); run `imgclust run` again") from exc
    return SavedClustering(
        model=meta["model"],
        features=meta["features"],
        store_dir=meta["store_dir"],
        centroids=arrays["centroids"],
        fences=arrays["fences"],
        names=meta["names"],
        cluster_top_classes=[
            tuple((d, float(s)) for d, s in t) for t in meta["cluster_top_classes"]
        ],
        medoids=arrays["medoids"],
        paths=meta["paths"],
        labels=arrays["labels"],
        distances=arrays["distances"],
        outliers=arrays["outliers"],
        top_class_ids=arrays["top_class_ids"],
        top_class_scores=arrays["top_class_scores"],
        rejected=[Rejection(p, r) for p, r in meta["rejected"]],
        report=ReportConfig(**meta["report"]),
        coords=arrays.get("coords"),
        layout=MapLayout(
            arrays["map_centres"], arrays["map_radii"], arrays["map_basis"], arrays["map_scale"]
        )
        if "map_centres" in arrays
        else None,
        duplicate_of=arrays.get("duplicate_of"),
        assigned_inputs=meta.get("assigned_inputs", []),
        feature_centre=arrays.get("feature_centre"),
    )


def features_of(saved: SavedClustering, *, logits: np.ndarray, embedding: np.ndarray) -> np.ndarray:
    """New images' features in the feature space ``saved`` was clustered in (float32).

    Raises:
        InputError: the features are centred but the clustering was saved without its
            centre (by an imgclust that did not keep it).
    """
    from .cluster import make_features

    if saved.features == "embedding-centred" and saved.feature_centre is None:
        raise InputError(
            "this clustering was saved without the centre of its features; "
            "run `imgclust run` into it again"
        )
    return make_features(
        saved.features, logits=logits, embedding=embedding, centre=saved.feature_centre
    )


def saved_inventory(marker_dir: Path) -> tuple[set[str], list[str]] | None:
    """The images of the last saved clustering and the inputs ``assign`` added to it, or
    ``None`` when there is none."""
    try:
        saved = load_clustering(marker_dir)
    except InputError:
        return None
    return set(saved.paths), list(saved.assigned_inputs)


def feature_index(n: int, dim: int) -> tuple[Any, np.ndarray]:
    """An exact faiss L2 index of ``n`` float16 rows, and its storage as an ``(n, dim)``
    float16 array to fill.

    Whatever is written into the array is what the index searches: a run loads the store's
    features straight into it and clusters that same array. The array views memory the index
    owns: keep the index alive as long as the array is used.
    """
    import faiss

    index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2)
    if n == 0:
        return index, np.zeros((0, dim), dtype=np.float16)
    index.codes.resize(n * index.code_size)
    index.ntotal = n
    raw = faiss.rev_swig_ptr(index.codes.data(), n * index.code_size)
    return index, raw.view(np.float16).reshape(n, dim)


def build_index(features: np.ndarray) -> Any:
    """:func:`feature_index` filled with ``features`` (any float dtype)."""
    index, storage = feature_index(len(features), features.shape[1])
    storage[:] = features
    return index


def write_index(marker_dir: Path, index: Any) -> None:
    """Write a faiss index to ``index.faiss`` atomically."""
    import faiss

    _atomic(marker_dir / INDEX_FILE, lambda tmp: faiss.write_index(index, str(tmp)))


def read_index(marker_dir: Path, n_expected: int) -> Any:
    """Read ``index.faiss`` and check it has one row per saved image.

    Raises:
        InputError: missing, unreadable or out of step with ``model.npz``.
    """
    import faiss

    path = marker_dir / INDEX_FILE
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise InputError(f"cannot read {path}; run `imgclust run` again") from exc
    if index.ntotal != n_expected:
        raise InputError(
            f"{path} has {index.ntotal} rows but the saved clustering {n_expected} images "
            "(an interrupted write); run `imgclust run` again"
        )
    return index


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp" + (".npz" if path.suffix == ".npz" else ""))
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(f"cannot write {path}: {exc}; check the output folder") from exc
