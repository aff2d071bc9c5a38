"""The saved clustering of an output folder, so later commands need not cluster again.

A run leaves, under ``OUT/.imgclust/``:

* ``model.npz``: the centroids (in the clustered feature space), which features and model
  made them, each cluster's outlier fence, name, top classes and medoid, and the image table
  (paths, cluster, distance, outlier flag, top-3 classes) plus the rejected files; the
  feature store's folder, relative to ``OUT/.imgclust`` when it lies inside ``OUT`` (so a
  copied output folder uses its own copy), absolute otherwise (``--cache``); the CRC-32 of
  ``index.faiss`` as written; and ``crc32``, the CRC-32 of all of its other arrays;
* ``index.faiss``: a faiss index of the clustered features, row ``i`` being image ``i`` of
  ``model.npz``: exact L2 search over the features kept as float16 (faiss's fp16 scalar
  quantizer), the precision the store keeps them in. A run fills the index's storage straight
  from the store (:func:`feature_index`), so at a million images the index *is* the feature
  matrix the run clusters (2.5 GB), never a second copy; no training, new rows can be added,
  and an exact query scans a million rows in well under a second.

Both are written atomically (temporary file, fsync, rename), the index first and
``model.npz`` last. Reading checks both: a ``model.npz`` that does not decode or whose arrays
differ from its CRC-32 is an :class:`InputError` naming it and the fix (run again); an index
whose CRC-32 differs from the recorded one (damage, or a crash between the two writes), that
does not decode or has the wrong row count is rebuilt from the feature store, with a warning,
and written back. Files saved before the checksums were kept are read unchecked, as before.

A run whose clustering ran as passes over the store's shards (the Ray engine on several
nodes) never holds the whole matrix, so it writes no index (``model.npz`` then records no
CRC-32 for one): the first command that needs it (``assign``, ``similar``, ``review``)
builds it from the store, quietly, and writes it back.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ._fs import atomic_write
from .clustering import Clustering, ranks_by_cluster, regroup
from .config import ReportConfig
from .describe import ClusterSummary, ClusterTree
from .exceptions import InputError, OutputError
from .report.layout import MapLayout
from .scan import Rejection
from .store import DECODE_ERRORS, FeatureStore, file_crc32

logger = logging.getLogger(__name__)

MODEL_FILE = "model.npz"
INDEX_FILE = "index.faiss"
_FORMAT = 1


#: The saved clustering is the run's record itself (:class:`~imgclust.clustering.Clustering`).
SavedClustering = Clustering


def from_parts(
    *,
    names: Sequence[str],
    cluster_top_classes: Sequence[tuple[tuple[str, float], ...]],
    medoids: np.ndarray,
    labels: np.ndarray,
    distances: np.ndarray,
    top_class_ids: np.ndarray,
    top_class_scores: np.ndarray,
    distinctive: Sequence[tuple[tuple[str, float], ...]] | None = None,
    **fields: Any,
) -> Clustering:
    """A :class:`Clustering` from its saved parts: cluster names, top classes and medoids by
    id, and the per-image arrays (members, ranks and top-class words are derived)."""
    from .describe import ImageTopClasses
    from .models import imagenet_class_names

    labels, distances = np.asarray(labels), np.asarray(distances)
    distinctive = distinctive or [()] * len(names)
    parts = zip(names, cluster_top_classes, medoids, distinctive, strict=True)
    summaries = [
        ClusterSummary(cid, name, tuple(tops), np.zeros(0, np.int64), np.zeros(0), int(m), tuple(d))
        for cid, (name, tops, m, d) in enumerate(parts)
    ]
    return Clustering(
        labels=labels,
        ranks=ranks_by_cluster(labels, distances),
        distances=distances,
        image_top_classes=ImageTopClasses(
            np.asarray(top_class_ids), np.asarray(top_class_scores), imagenet_class_names()
        ),
        clusters=regroup(summaries, labels, distances),
        **fields,
    )


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
    """Write ``model.npz``, recording the CRC-32 of the ``index.faiss`` now on disk."""
    index = marker_dir / INDEX_FILE
    try:
        index_crc32: int | None = file_crc32(index) if index.exists() else None
    except OSError as exc:
        raise OutputError(f"cannot read {index} back: {exc}; check the output folder") from exc
    meta = {
        "format": _FORMAT,
        "model": saved.model,
        "features": saved.features,
        "store_dir": _portable_store_dir(marker_dir, saved.store_dir),
        "index_crc32": index_crc32,
        "names": saved.names,
        "cluster_top_classes": [[list(t) for t in c.top_classes] for c in saved.named],
        "paths": list(saved.paths),
        "rejected": [[r.path, r.reason] for r in saved.rejected],
        "report": asdict(saved.report),
        "assigned_inputs": list(saved.assigned_inputs),
        "columns": {name: [str(v) for v in values] for name, values in saved.columns.items()},
        "cluster_distinctive": [[list(t) for t in c.distinctive] for c in saved.named],
        "group_names": list(saved.tree.names) if saved.tree is not None else None,
    }
    top_ids, top_scores = saved.top_class_arrays()
    blob = np.frombuffer(json.dumps(meta, ensure_ascii=True).encode("ascii"), dtype=np.uint8)
    arrays: dict[str, np.ndarray] = {
        "meta": blob,
        "centroids": np.asarray(saved.centroids, np.float32),
        "fences": np.asarray(saved.fences, np.float32),
        "medoids": np.array([c.medoid for c in saved.named], np.int64),
        "labels": np.asarray(saved.labels, np.int64),
        "distances": np.asarray(saved.distances, np.float32),
        "outliers": np.asarray(saved.outliers, bool),
        "top_class_ids": np.asarray(top_ids, np.int32),
        "top_class_scores": np.asarray(top_scores, np.float32),
    }
    if saved.duplicate_of is not None:
        arrays["duplicate_of"] = np.asarray(saved.duplicate_of, np.int64)
    if saved.feature_centre is not None:
        arrays["feature_centre"] = np.asarray(saved.feature_centre, np.float32)
    if saved.tree is not None:
        arrays["tree_linkage"] = np.asarray(saved.tree.linkage, np.float64)
        arrays["tree_groups"] = np.asarray(saved.tree.groups, np.int64)
        arrays["tree_parents"] = np.asarray(saved.tree.parents, np.int64)
    if saved.coords is not None and saved.layout is not None:
        arrays["coords"] = np.asarray(saved.coords, np.float32)
        for name in ("centres", "radii", "basis", "scale", "anchors"):
            value = getattr(saved.layout, name, None)
            if value is not None:
                arrays[f"map_{name}"] = value
    arrays["crc32"] = np.array(_payload_crc32(arrays), dtype=np.uint32)
    atomic_write(marker_dir / MODEL_FILE, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]


def _payload_crc32(arrays: dict[str, np.ndarray]) -> int:
    """CRC-32 of every array's name, dtype, shape and bytes, in name order."""
    crc = 0
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        crc = zlib.crc32(f"{name}:{array.dtype.str}:{array.shape};".encode(), crc)
        crc = zlib.crc32(array.data, crc)
    return crc


def _portable_store_dir(marker_dir: Path, store_dir: str) -> str:
    """``store_dir`` relative to ``marker_dir`` when it lies inside the output folder (a
    copied output folder then uses its own store), absolute otherwise."""
    store, marker = Path(store_dir).resolve(), marker_dir.resolve()
    if store.is_relative_to(marker.parent):
        return os.path.relpath(store, marker)
    return str(store)


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
    fix = f"run `imgclust run PHOTOS --out {marker_dir.parent}` again to rewrite it"
    try:
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files}
        if "crc32" in arrays and int(arrays.pop("crc32")) != _payload_crc32(arrays):
            raise InputError(f"{path} is damaged (its checksum does not match); {fix}")
        meta = json.loads(arrays.pop("meta").tobytes().decode("ascii"))
        return _saved_from(marker_dir, meta, arrays)
    except DECODE_ERRORS as exc:
        raise InputError(
            f"{path} is damaged or unreadable ({type(exc).__name__}: {exc}); {fix}"
        ) from exc


def _saved_from(
    marker_dir: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]
) -> SavedClustering:
    """The clustering ``model.npz`` in ``marker_dir`` holds, from its decoded parts."""
    return from_parts(
        names=meta["names"],
        cluster_top_classes=[
            tuple((d, float(s)) for d, s in t) for t in meta["cluster_top_classes"]
        ],
        medoids=arrays["medoids"],
        labels=arrays["labels"],
        distances=arrays["distances"],
        top_class_ids=arrays["top_class_ids"],
        top_class_scores=arrays["top_class_scores"],
        distinctive=[
            tuple((d, float(s)) for d, s in t) for t in meta.get("cluster_distinctive") or []
        ]
        or None,
        tree=ClusterTree(
            arrays["tree_linkage"],
            arrays["tree_groups"],
            arrays["tree_parents"],
            meta["group_names"],
        )
        if "tree_linkage" in arrays
        else None,
        model=meta["model"],
        features=meta["features"],
        store_dir=str((marker_dir / meta["store_dir"]).resolve()),
        centroids=arrays["centroids"],
        fences=arrays["fences"],
        paths=meta["paths"],
        outliers=arrays["outliers"],
        rejected=[Rejection(p, r) for p, r in meta["rejected"]],
        report=ReportConfig(**meta["report"]),
        coords=arrays.get("coords"),
        layout=MapLayout(
            arrays["map_centres"],
            arrays["map_radii"],
            arrays["map_basis"],
            arrays["map_scale"],
            arrays.get("map_anchors"),
        )
        if "map_centres" in arrays
        else None,
        duplicate_of=arrays.get("duplicate_of"),
        columns={k: np.asarray(v, dtype=object) for k, v in meta.get("columns", {}).items()},
        assigned_inputs=meta.get("assigned_inputs", []),
        feature_centre=arrays.get("feature_centre"),
        index_crc32=meta.get("index_crc32"),
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


def write_index(marker_dir: Path, index: Any) -> None:
    """Write a faiss index to ``index.faiss`` atomically; ``None`` (a run that never held
    the matrix) removes the one there, to be built from the store when first needed.

    Raises:
        OutputError: the old index cannot be removed.
    """
    import faiss

    if index is None:
        path = marker_dir / INDEX_FILE
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot remove {path}: {exc.strerror or exc}") from exc
        return

    def write(tmp: Path) -> None:
        try:
            faiss.write_index(index, str(tmp))
        except RuntimeError as exc:  # faiss reports a failed write (disk full) this way
            raise OSError(str(exc)) from exc

    atomic_write(marker_dir / INDEX_FILE, write_path=write)


def read_index(marker_dir: Path, n_expected: int, *, saved: SavedClustering | None = None) -> Any:
    """Read ``index.faiss``, checked against the CRC-32 ``model.npz`` recorded for it and for
    one row per saved image.

    A damaged index (wrong checksum, undecodable, missing, wrong row count) is rebuilt from
    the feature store and written back, with a warning.

    Args:
        marker_dir: the output folder's ``.imgclust`` folder.
        n_expected: the saved clustering's number of images (``len(saved.paths)``).
        saved: the clustering loaded from ``marker_dir``; read again here when not given.

    Raises:
        InputError: the index is damaged and the feature store cannot give the features of
            every saved image.
    """
    import faiss

    if saved is None:
        saved = load_clustering(marker_dir)
    path = marker_dir / INDEX_FILE
    problem = None
    if saved.index_crc32 is None and not path.exists():  # left unwritten by the run
        return _rebuild_index(marker_dir, saved, None)
    if saved.index_crc32 is not None:  # checked first: faiss may crash on damaged bytes
        try:
            if file_crc32(path) != saved.index_crc32:
                problem = "its checksum differs from the one model.npz recorded"
        except OSError as exc:
            problem = f"it cannot be read: {exc.strerror or exc}"
    if problem is None:
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            problem = f"it cannot be decoded: {exc}"
        else:
            if index.ntotal == n_expected:
                return index
            problem = f"it has {index.ntotal} rows for {n_expected} images"
    return _rebuild_index(marker_dir, saved, problem)


def _rebuild_index(marker_dir: Path, saved: SavedClustering, problem: str | None) -> Any:
    """The index of ``saved``'s images from their stored features, written back if it can be.

    Raises:
        InputError: the store cannot give every image's features (``problem`` says why the
            index is not used; ``None``: the run left it unwritten).
    """
    from .cluster import feature_source

    path = marker_dir / INDEX_FILE
    fix = f"run `imgclust run PHOTOS --out {marker_dir.parent}` again to rebuild it"
    state = (
        f"is damaged ({problem})"
        if problem
        else "was left unwritten by the run (its clustering ran over the store's shards)"
    )
    n = len(saved.paths)
    store = FeatureStore(Path(saved.store_dir), saved.model)
    if not store.dir.is_dir():  # checked first: opening would create it
        raise InputError(
            f"{path} {state} and the feature store that could rebuild it, "
            f"{store.dir}, is gone; {fix}"
        )
    with store:
        found = store.locate(saved.paths)
        if len(found) < n:
            raise InputError(
                f"{path} {state} and the feature store {store.dir} lacks the "
                f"features of {n - len(found)} of its {n} images; {fix}"
            )
        source = feature_source(saved.features)
        index, storage = feature_index(n, int(saved.centroids.shape[1]))
        store.load(
            saved.paths,
            found,
            arrays=(source,),
            transform=lambda _, rows: features_of(saved, logits=rows, embedding=rows),
            out={source: storage},
        )
    if problem:
        logger.warning("%s %s: rebuilt it from the feature store %s", path, state, store.dir)
    else:
        logger.info("built %s from the feature store %s", path, store.dir)
    try:
        save_clustering(marker_dir, saved, index)  # model.npz records the new checksum
    except OutputError as exc:
        logger.warning("the rebuilt index is used but not saved (%s)", exc)
    return index
