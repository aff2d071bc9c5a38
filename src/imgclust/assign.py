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

import numpy as np

from .cluster import softmax
from .cluster.kmeans import nearest_centroids
from .describe import ClusterSummary, rank_members, top_class_ids
from .embed import Embedder
from .exceptions import InputError
from .models import imagenet_class_names
from .pipeline import MARKER_DIR, Progress, _Silent
from .report import ReportData, write_exports, write_report
from .scan import Rejection, scan
from .state import (
    SavedClustering,
    features_of,
    load_clustering,
    read_index,
    save_clustering_meta,
    write_index,
)
from .store import FeatureStore


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
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
    progress: Progress | None = None,
) -> AssignResult:
    """Add the photos under ``inputs`` to the clustered collection in ``out``.

    Raises:
        InputError: ``out`` holds no saved clustering, or no input exists.
        StoreError, OutputError, ModelUnavailableError: as for a run.
    """
    prog: Progress = progress or _Silent()
    out = out.resolve()
    marker = out / MARKER_DIR
    saved = load_clustering(marker)
    index = read_index(marker, len(saved.paths))
    known = set(saved.paths) | {r.path for r in saved.rejected}

    found = scan(inputs)
    own = str(out) + "/"
    records = [r for r in found.records if r.path not in known and not r.path.startswith(own)]
    n_known = len(found.records) - len(records)
    embedder = Embedder(saved.model, batch_size=batch_size, device=device, workers=workers)
    with FeatureStore(Path(saved.store_dir), saved.model) as store:
        lookup = store.lookup(records)
        if lookup.todo:
            prog.start("embed", len(lookup.todo))
            for block in embedder.iter_blocks(lookup.todo, 1024, on_progress=prog.advance):
                store.write(block, embedder.spec.n_classes, embedder.spec.embedding_dim)
            prog.finish()
        final = store.lookup(records)
        new_paths = sorted(final.found)
        stored = store.load(new_paths, final.found, arrays=("logits", "embedding"))
    rejected = [r for r in found.rejected if r.path not in known] + final.rejected

    if new_paths:
        feats = features_of(saved, logits=stored["logits"], embedding=stored["embedding"])
        labels, distances = nearest_centroids(saved.centroids, feats)
        outliers = distances > saved.fences[labels]
        scores = softmax(stored["logits"])
        top_ids = top_class_ids(scores, 3)
        index.add(np.ascontiguousarray(feats, dtype=np.float32))
        new_xy = None
        if saved.layout is not None and saved.coords is not None:
            new_xy = saved.layout.place(feats, saved.centroids, labels, distances)
    else:
        labels = np.zeros(0, np.int64)
        distances = np.zeros(0, np.float32)
        outliers = np.zeros(0, bool)
        scores = np.zeros((0, 1), np.float32)
        top_ids = np.zeros((0, 3), np.int64)
        new_xy = np.zeros((0, 2), np.float32)
    grown = replace(
        saved,
        paths=list(saved.paths) + new_paths,
        labels=np.concatenate([saved.labels, labels]),
        distances=np.concatenate([saved.distances, distances]),
        outliers=np.concatenate([saved.outliers, outliers]),
        top_class_ids=np.concatenate([saved.top_class_ids, top_ids]),
        top_class_scores=np.concatenate(
            [saved.top_class_scores, np.take_along_axis(scores, top_ids, axis=1)]
        ),
        rejected=sorted(list(saved.rejected) + rejected, key=lambda r: r.path),
        coords=None
        if saved.coords is None or new_xy is None
        else np.concatenate([saved.coords, new_xy]),
        # new photos are not grouped as near-duplicates until the next run
        duplicate_of=None
        if saved.duplicate_of is None
        else np.concatenate([saved.duplicate_of, np.full(len(new_paths), -1, np.int64)]),
        # remembered so that the next `imgclust run OUT` scans them too
        assigned_inputs=list(
            dict.fromkeys([*saved.assigned_inputs, *(str(Path(p).resolve()) for p in inputs)])
        ),
    )
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
        labels=labels,
        distances=distances,
        outliers=outliers,
        rejected=rejected,
        n_known=n_known,
        n_total=len(grown.paths),
        names=list(saved.names),
        report=report,
    )


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
    for cid, name in enumerate(saved.names):
        idx = np.flatnonzero(labels == cid)
        idx = idx[np.lexsort((idx, distances[idx]))]
        clusters.append(
            ClusterSummary(
                cluster_id=cid,
                name=name,
                top_classes=tuple(saved.cluster_top_classes[cid]),
                members=idx,
                distances=distances[idx],
                medoid=int(saved.medoids[cid]),
            )
        )
    return ReportData(
        paths=list(saved.paths),
        labels=labels,
        ranks=rank_members(labels, distances),
        distances=distances,
        image_top_classes=image_tops,
        clusters=[c for c in clusters if c.size],
        rejected=list(saved.rejected),
        model=saved.model,
        features=saved.features,
        outliers=np.asarray(saved.outliers),
        coords=saved.coords,
        duplicate_of=saved.duplicate_of,
    )
