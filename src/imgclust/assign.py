"""Assign new photos to the clusters of an earlier run, without clustering again.

``assign_folder`` scans the new folders, embeds only images the collection does not hold yet
(through the run's feature store), puts each in the cluster of its nearest saved centroid with
its distance and outlier flag (the cluster's saved fence), and rewrites the exports, the
report, the similarity index and ``model.npz`` with the grown collection. Cluster names,
centroids and fences stay as the run made them. The folders given are remembered in
``model.npz``, so a later ``imgclust run`` into the same output folder scans them too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import uri
from .cluster import softmax
from .cluster.kmeans import nearest_centroids
from .clustering import Clustering, image_columns
from .config import EmbedConfig
from .describe import ImageTopClasses, top_class_ids
from .embed import check_device
from .models import imagenet_class_names
from .report import write_exports, write_report
from .review.edits import EXCLUDED_REASON
from .scan import Rejection, check_roots, scan
from .state import (
    SavedClustering,
    features_of,
    load_clustering,
    read_index,
    save_clustering_meta,
    write_index,
)
from .steps import (
    Progress,
    SilentProgress,
    embed_missing,
    embedder_for,
    input_key,
    output_folder,
)
from .store import STRING_COLUMNS, FeatureStore


@dataclass(frozen=True)
class AssignResult:
    """What ``assign`` did.

    Attributes:
        paths: newly assigned images, aligned with ``labels``/``distances``/``outliers``.
        rejected: new files that could not be read, with reasons.
        n_known: files found that the collection already held (clustered, or excluded in
            review); a file it had rejected is read again, and assigned if it now decodes.
        n_changed: of those, files edited since they were clustered: kept as they were
            clustered (``imgclust run`` embeds them again).
        n_total: images in the collection now.
        names: cluster names by id.
        report: path of ``index.html``.
        skipped: imgclust output or export folders the scan did not enter (an input that is
            one, or lies in one, is not remembered either).
        remembered: the inputs remembered for the next ``imgclust run OUT``.
    """

    out_dir: Path
    paths: list[str]
    labels: np.ndarray
    distances: np.ndarray
    outliers: np.ndarray
    rejected: list[Rejection]
    n_known: int
    n_total: int
    n_changed: int
    names: list[str]
    report: Path
    skipped: list[str] = field(default_factory=list)
    remembered: list[str] = field(default_factory=list)


def _gone(rejection: Rejection) -> bool:
    """Whether a rejected photo's file is gone (one excluded in review stays listed: that is
    the review's record; an object in storage is not asked)."""
    if rejection.reason == EXCLUDED_REASON or uri.is_uri(rejection.path):
        return False
    return not os.path.lexists(rejection.path)


def assign_folder(
    inputs: Sequence[str | Path],
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
    check_device(embed.device)
    out = Path(out).resolve()
    check_roots(inputs)
    with output_folder(out, "assign", create=False) as marker:
        saved = load_clustering(marker)
        index = read_index(marker, len(saved.paths), saved=saved)
        # A photo rejected before is tried again (the store still knows an unchanged bad
        # file, so only a mended one is decoded); one excluded in review stays out.
        excluded = {r.path for r in saved.rejected if r.reason == EXCLUDED_REASON}
        clustered = set(saved.paths)
        known = clustered | excluded
        found = scan(inputs, exclude=[out, saved.store_dir])
        records = [r for r in found.records if r.path not in known]
        rescanned = [r for r in found.rejected if r.path not in known]
        embedder = embedder_for(embed, model=saved.model)
        with FeatureStore(Path(saved.store_dir), saved.model) as store:
            # (edited since they were clustered)
            n_changed = len(store.lookup([r for r in found.records if r.path in clustered]).todo)
            embedded = embed_missing(records, embedder, store, shard_size=shard_size, progress=prog)
            new_paths = sorted(embedded.found)
            # (and what decoding recorded, e.g. the EXIF date, from the same reads)
            strings = {name: np.full(len(new_paths), None, object) for name in STRING_COLUMNS}
            stored = store.load(
                new_paths, embedded.found, arrays=("logits", "embedding"), strings=strings
            )
        rejected = rescanned + embedded.rejected
        # (an input the scan skipped whole, e.g. OUT/thumbs, is not one to remember)
        skipped = {os.path.abspath(p) for p in found.skipped if not uri.is_uri(p)}
        kept_inputs = [p for p in inputs if uri.is_uri(p) or os.path.abspath(p) not in skipped]
        added = _place(saved, new_paths, stored, index, rejected, kept_inputs, strings)
        # (their earlier rejections give way to now's, as do those of files the scan
        # rejected again: a dangling link is listed once; and a rejected file deleted
        # since is no longer listed)
        retried = {r.path for r in records} | {r.path for r in rescanned}
        kept = [r for r in saved.rejected if r.path not in retried and not _gone(r)]
        grown = replace(saved, rejected=kept)
        grown = grown.grown(added)
        write_exports(out, grown)
        prog.start("report")
        report = write_report(out, grown, grown.report)
        prog.finish()
        if new_paths:
            write_index(marker, index)
        changed = grown.assigned_inputs != list(saved.assigned_inputs) or (
            grown.rejected != list(saved.rejected)  # (what rejected.csv now lists)
        )
        if new_paths or changed:
            save_clustering_meta(marker, grown)
    return AssignResult(
        out_dir=out,
        paths=new_paths,
        labels=added.labels,
        distances=added.distances,
        outliers=np.asarray(added.outliers),
        rejected=rejected,
        n_known=len(found.records) - len(records),
        n_changed=n_changed,
        n_total=len(grown.paths),
        names=list(saved.names),
        report=report,
        skipped=list(found.skipped),
        remembered=[os.fspath(p) for p in kept_inputs],
    )


def _place(
    saved: SavedClustering,
    paths: list[str],
    stored: dict[str, np.ndarray],
    index: Any,
    rejected: list[Rejection],
    inputs: Sequence[str | Path],
    strings: dict[str, np.ndarray],
) -> Clustering:
    """The new images as a clustering of their own in ``saved``'s clusters: each in the
    cluster of its nearest saved centroid (unclustered when the clustering has none), with
    its distance, outlier flag, top classes and map position; added to ``index`` too.
    ``strings``: the string columns the store kept for them (``None``: not kept)."""
    n = len(paths)
    feats = np.zeros((0, 1), np.float32)
    if n:
        feats = features_of(saved, logits=stored["logits"], embedding=stored["embedding"])
    labels, distances = np.full(n, -1, np.int64), np.zeros(n, np.float32)
    outliers = np.zeros(n, bool)
    if n and len(saved.centroids):
        labels, distances = nearest_centroids(saved.centroids, feats)
        outliers = distances > saved.fences[labels]
    scores = softmax(stored["logits"]) if n else np.zeros((0, 3), np.float32)
    top_ids = top_class_ids(scores, 3) if n else np.zeros((0, 3), np.int64)
    coords = None if saved.coords is None else np.zeros((n, 2), np.float32)
    if n:
        index.add(np.ascontiguousarray(feats, dtype=np.float32))
        if saved.layout is not None and saved.coords is not None:
            ids = np.where(labels < 0, len(saved.centroids), labels)
            centres = saved.centroids
            if (labels < 0).any():
                centres = np.vstack([centres, feats[labels < 0].mean(axis=0, keepdims=True)])
            coords = saved.layout.place(feats, centres, ids, distances)
    return Clustering(
        paths=paths,
        labels=labels,
        ranks=np.zeros(n, np.int64),  # ranked with the whole collection when appended
        distances=distances,
        image_top_classes=ImageTopClasses(
            top_ids, np.take_along_axis(scores, top_ids, axis=1), imagenet_class_names()
        ),
        clusters=[],
        rejected=rejected,
        model=saved.model,
        features=saved.features,
        outliers=outliers,
        coords=coords,
        # new photos are not grouped as near-duplicates until the next run
        duplicate_of=None if saved.duplicate_of is None else np.full(n, -1, np.int64),
        columns=image_columns(paths, strings) if saved.columns else {},
        # remembered so that the next `imgclust run OUT` scans them too
        assigned_inputs=[input_key(p) for p in inputs],
    )
