"""Assign new photos to the clusters of an earlier run, without clustering again.

``assign_folder`` scans the new folders, embeds only images the collection does not hold yet
(through the run's feature store), puts each in the cluster of its nearest saved centroid with
its distance and outlier flag (the cluster's saved fence), and rewrites the exports, the
report, the similarity index and ``model.npz`` with the grown collection. Cluster names,
centroids and fences stay as the run made them. The folders given are remembered in
``model.npz``, so a later ``imgclust run`` into the same output folder scans them too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .cluster import softmax
from .cluster.kmeans import nearest_centroids
from .config import EmbedConfig
from .describe import ClusterSummary, rank_members, top_class_ids
from .exceptions import InputError
from .models import imagenet_class_names
from .report import ReportData, write_exports, write_report
from .scan import Rejection, check_roots, scan
from .state import (
    SavedClustering,
    features_of,
    load_clustering,
    read_index,
    save_clustering_meta,
    write_index,
)
from .steps import Progress, SilentProgress, embed_missing, embedder_for, output_folder
from .store import FeatureStore

#: The name of the group of photos in no cluster (HDBSCAN's noise).
UNCLUSTERED = "unclustered"


@dataclass(frozen=True)
class AssignResult:
    """What ``assign`` did.

    Attributes:
        paths: newly assigned images, aligned with ``labels``/``distances``/``outliers``.
        rejected: new files that could not be read, with reasons.
        n_known: files found that the collection already held, clustered or rejected.
        n_total: images in the collection now.
        names: cluster names by id.
        report: path of ``index.html``.
    """

    out_dir: Path
    paths: list[str]
    labels: np.ndarray
    distances: np.ndarray
    outliers: np.ndarray
    rejected: list[Rejection]
    n_known: int
    n_total: int
    names: list[str]
    report: Path


def assign_folder(
    inputs: list[Path],
    out: Path,
    *,
    embed: EmbedConfig | None = None,
    shard_size: int = 1024,
    progress: Progress | None = None,
    **options: Any,
) -> AssignResult:
    """Add the photos under ``inputs`` to the clustered collection in ``out``.

    ``embed`` (or ``options`` by name: ``workers``, ``device``, ``batch_size``, ``runtime``,
    ``decode_timeout``) says how new photos are decoded and embedded; the model and
    precision are the saved clustering's. Holds the output folder's lock throughout.

    Raises:
        InputError: ``out`` holds no saved clustering, or no input exists.
        StoreError, OutputError, ModelUnavailableError: as for a run.
    """
    prog: Progress = progress or SilentProgress()
    embed = replace(embed or EmbedConfig(), **options)
    out = Path(out).resolve()
    check_roots(inputs)
    with output_folder(out, "assign", create=False) as marker:
        saved = load_clustering(marker)
        index = read_index(marker, len(saved.paths), saved=saved)
        known = set(saved.paths) | {r.path for r in saved.rejected}
        found = scan(inputs, exclude=[out, saved.store_dir])
        records = [r for r in found.records if r.path not in known]
        embedder = embedder_for(embed, model=saved.model)
        with FeatureStore(Path(saved.store_dir), saved.model) as store:
            embedded = embed_missing(records, embedder, store, shard_size=shard_size, progress=prog)
            new_paths = sorted(embedded.found)
            stored = store.load(new_paths, embedded.found, arrays=("logits", "embedding"))
        rejected = [r for r in found.rejected if r.path not in known] + embedded.rejected
        placed = _place(saved, new_paths, stored, index)
        grown = _grown(saved, new_paths, placed, rejected, inputs)
        data = report_data(grown)
        write_exports(out, data)
        prog.start("report")
        report = write_report(out, data, grown.report)
        prog.finish()
        if new_paths:
            write_index(marker, index)
        if new_paths or grown.assigned_inputs != list(saved.assigned_inputs):
            save_clustering_meta(marker, grown)
    return AssignResult(
        out_dir=out,
        paths=new_paths,
        labels=placed.labels,
        distances=placed.distances,
        outliers=placed.outliers,
        rejected=rejected,
        n_known=len(found.records) - len(records),
        n_total=len(grown.paths),
        names=list(saved.names),
        report=report,
    )


@dataclass(frozen=True)
class _Placed:
    """New images in the saved clustering: cluster, distance, outlier flag, classes, map."""

    labels: np.ndarray
    distances: np.ndarray
    outliers: np.ndarray
    top_ids: np.ndarray
    top_scores: np.ndarray
    coords: np.ndarray


def _place(
    saved: SavedClustering, paths: list[str], stored: dict[str, np.ndarray], index: object
) -> _Placed:
    """Each new image's nearest saved centroid (unclustered when the clustering has none)."""
    n = len(paths)
    if not n:
        return _Placed(
            np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, bool),
            np.zeros((0, 3), np.int32), np.zeros((0, 3), np.float32), np.zeros((0, 2), np.float32),
        )  # fmt: skip
    feats = features_of(saved, logits=stored["logits"], embedding=stored["embedding"])
    if len(saved.centroids):
        labels, distances = nearest_centroids(saved.centroids, feats)
        outliers = distances > saved.fences[labels]
    else:  # all of the collection is unclustered (HDBSCAN found no group): so are these
        labels, distances = np.full(n, -1, np.int64), np.zeros(n, np.float32)
        outliers = np.zeros(n, bool)
    scores = softmax(stored["logits"])
    top_ids = top_class_ids(scores, 3)
    index.add(np.ascontiguousarray(feats, dtype=np.float32))  # type: ignore[attr-defined]
    coords = np.zeros((n, 2), np.float32)
    if saved.layout is not None:
        ids = np.where(labels < 0, len(saved.centroids), labels)
        centres = saved.centroids
        if (labels < 0).any():
            centres = np.vstack([centres, feats[labels < 0].mean(axis=0, keepdims=True)])
        coords = saved.layout.place(feats, centres, ids, distances)
    return _Placed(
        labels, distances, outliers, top_ids, np.take_along_axis(scores, top_ids, axis=1), coords
    )


def _grown(
    saved: SavedClustering,
    paths: list[str],
    placed: _Placed,
    rejected: list[Rejection],
    inputs: list[Path],
) -> SavedClustering:
    """The saved clustering with the new images appended."""
    return replace(
        saved,
        paths=list(saved.paths) + paths,
        labels=np.concatenate([saved.labels, placed.labels]),
        distances=np.concatenate([saved.distances, placed.distances]),
        outliers=np.concatenate([saved.outliers, placed.outliers]),
        top_class_ids=np.concatenate([saved.top_class_ids, placed.top_ids]),
        top_class_scores=np.concatenate([saved.top_class_scores, placed.top_scores]),
        rejected=sorted(list(saved.rejected) + rejected, key=lambda r: r.path),
        coords=None if saved.coords is None else np.concatenate([saved.coords, placed.coords]),
        # new photos are not grouped as near-duplicates until the next run
        duplicate_of=None
        if saved.duplicate_of is None
        else np.concatenate([saved.duplicate_of, np.full(len(paths), -1, np.int64)]),
        # remembered so that the next `imgclust run OUT` scans them too
        assigned_inputs=list(
            dict.fromkeys([*saved.assigned_inputs, *(str(Path(p).resolve()) for p in inputs)])
        ),
    )


def cluster_name(saved: SavedClustering, label: int) -> str:
    """The saved name of cluster ``label`` (``"unclustered"`` for -1)."""
    return saved.names[label] if 0 <= label < len(saved.names) else UNCLUSTERED


def report_data(saved: SavedClustering) -> ReportData:
    """The report and exports of a saved clustering (names and medoids as saved)."""
    if not len(saved.paths):
        raise InputError("the saved clustering holds no images")
    class_names = imagenet_class_names()
    labels = np.asarray(saved.labels)
    distances = np.asarray(saved.distances)
    image_tops = [
        tuple((class_names[int(j)], float(s)) for j, s in zip(ids, sc, strict=True))
        for ids, sc in zip(saved.top_class_ids, saved.top_class_scores, strict=True)
    ]
    clusters = []
    for cid in range(-1, len(saved.names)):
        idx = np.flatnonzero(labels == cid)
        if not len(idx):
            continue
        idx = idx[np.lexsort((idx, distances[idx]))]
        clusters.append(
            ClusterSummary(
                cluster_id=cid,
                name=cluster_name(saved, cid),
                top_classes=tuple(saved.cluster_top_classes[cid]) if cid >= 0 else (),
                members=idx,
                distances=distances[idx],
                medoid=int(saved.medoids[cid]) if cid >= 0 else int(idx[0]),
            )
        )
    return ReportData(
        paths=list(saved.paths),
        labels=labels,
        ranks=rank_members(labels, distances),
        distances=distances,
        image_top_classes=image_tops,
        clusters=clusters,
        rejected=list(saved.rejected),
        model=saved.model,
        features=saved.features,
        outliers=np.asarray(saved.outliers),
        coords=saved.coords,
        duplicate_of=saved.duplicate_of,
    )
