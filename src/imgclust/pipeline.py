"""The pipeline: scan → decode/embed → store → cluster → describe → report. Wiring only.

What each step does lives in :mod:`imgclust.steps` (shared with ``assign``, ``similar`` and
``evaluate``) and in the stage modules; this module only orders them for ``imgclust run``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ._fs import atomic_write_text
from .cluster import (
    Clusterer,
    SplitClusters,
    create_clusterer,
    feature_source,
    finish_features,
    row_features,
)
from .cluster.distributed import FeatureRows
from .clustering import UNSORTED_LABEL, Clustering, image_columns
from .config import DEFAULT_K, SMALL_COLLECTION, RunConfig, default_k
from .decode import ThumbTarget
from .describe import ClusterSummary, class_statistics, describe, name_and_group
from .embed import Embedder
from .engines import Engine, create_engine
from .exceptions import ConfigError, InputError
from .models import imagenet_class_names
from .models.spec import ModelSpec
from .neardup import near_duplicates
from .report import write_exports, write_report
from .report.layout import MapLayout, fit_layout
from .review.carry import carry_review, save_carried
from .review.edits import EXCLUDED_REASON
from .scan import Rejection, check_roots, display_path, scan
from .state import (
    SavedClustering,
    centroids_by_label,
    feature_index,
    load_clustering,
    save_clustering,
    saved_inventory,
)
from .steps import (
    MARKER_DIR,
    Fitted,
    Progress,
    SilentProgress,
    embed_missing,
    embedder_for,
    input_exists,
    input_key,
    inside,
    output_folder,
    plural,
)
from .store import STRING_COLUMNS, FeatureStore, Location, Lookup, Rows, StoredRows

__all__ = ["MARKER_DIR", "Progress", "RunResult", "run"]


@dataclass(frozen=True)
class RunResult:
    """What a run produced: its :class:`~imgclust.clustering.Clustering` and how it went.

    Attributes:
        clustering: the record the report, exports and saved state were written from
            (``paths``, ``labels``, ``ranks``, ``distances``, ``clusters``, ``rejected`` are
            also properties here).
        n_embedded: images embedded by this run (the rest came from the store).
        report: path of ``index.html``.
        timings: seconds per stage, and (where the OS tells) the process's peak resident
            memory in GiB at the end of each stage (``<stage>_peak_rss_gib``).
        n_new: images that were not in the previous run's clustering (the folder grew and
            was re-clustered); ``None`` on a first run.
        algorithm: the clustering algorithm that ran (what ``auto`` chose).
        refined: with ``--refine``: each split cluster's id in the previous report → the ids
            of its parts in this one.
        assigned_missing: folders/files added by ``assign`` that no longer exist.
        skipped: imgclust output or export folders inside the inputs, not scanned.
        notes: where the result differs from what was asked (k lowered, fewer clusters,
            unclustered photos, files that changed while read, damaged shards), and which
            review edits carried over and which could not (:mod:`imgclust.review.carry`).
    """

    out_dir: Path
    clustering: Clustering
    n_embedded: int
    report: Path
    timings: dict[str, float] = field(default_factory=dict)
    n_new: int | None = None
    algorithm: str = ""
    refined: dict[int, list[int]] = field(default_factory=dict)
    assigned_missing: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        """Clustered images (absolute), aligned with ``labels``, ``ranks``, ``distances``."""
        return list(self.clustering.paths)

    @property
    def labels(self) -> np.ndarray:
        """Cluster id of each image (0 = the largest cluster; -1: unclustered)."""
        return self.clustering.labels

    @property
    def ranks(self) -> np.ndarray:
        """Rank inside its cluster (0 = nearest the centroid)."""
        return self.clustering.ranks

    @property
    def distances(self) -> np.ndarray:
        """Distance to the cluster centroid in the clustered feature space."""
        return self.clustering.distances

    @property
    def clusters(self) -> list[ClusterSummary]:
        """One summary per cluster, by id (the unclustered group, if any, too)."""
        return list(self.clustering.clusters)

    @property
    def rejected(self) -> list[Rejection]:
        """Files that were not clustered, with reasons."""
        return list(self.clustering.rejected)

    @property
    def model(self) -> str:
        """The model that made the features, with its precision."""
        return self.clustering.model

    @property
    def features(self) -> str:
        """What was clustered."""
        return self.clustering.features

    @property
    def assigned_inputs(self) -> list[str]:
        """Folders/files added by ``imgclust assign`` outside the inputs, scanned too."""
        return list(self.clustering.assigned_inputs)

    @property
    def n_cached(self) -> int:
        """Images whose features came from the store."""
        return len(self.clustering.paths) - self.n_embedded

    @property
    def k(self) -> int:
        """Number of clusters (the unclustered photos are not one)."""
        return self.clustering.k

    @property
    def n_unclustered(self) -> int:
        """Photos in no cluster (HDBSCAN's noise; not the photos review marked unsorted)."""
        return int((self.labels == -1).sum())

    @property
    def n_scanned(self) -> int:
        """Image files found: clustered plus rejected."""
        return self.clustering.n_scanned

    def assignments(self) -> dict[str, int]:
        """Path → cluster id."""
        return dict(zip(self.paths, self.labels.tolist(), strict=True))


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = round(time.perf_counter() - start, 3)
    peak = _peak_rss_gib()
    if peak is not None:  # the process's peak so far: the stage where it jumps used it
        timings[f"{stage}_peak_rss_gib"] = round(peak, 2)


def _peak_rss_gib() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / (2**30 if sys.platform == "darwin" else 2**20)  # macOS counts bytes


def run(config: RunConfig, *, progress: Progress | None = None) -> RunResult:
    """Cluster the photos under ``config.inputs`` and write the report and exports.

    Holds the output folder's lock throughout: another command on the same folder is refused.

    Raises:
        InputError: no input exists or no image could be decoded.
        OutputError: the output folder cannot be written, or another command is using it.
        ModelUnavailableError: the model cannot be loaded.
        StoreError: the feature store cannot be used.
    """
    out = config.out.resolve()
    check_roots(config.inputs)  # before anything is written
    # --refine splits clusters of the clustering the report in OUT shows: same model,
    # features and store as that run, and the same images (checked after the scan).
    base = load_clustering(out / MARKER_DIR) if config.cluster.refine else None
    # The engine (Ray, with --engine ray) is joined once for the command and left after it.
    with output_folder(out, "run"), create_engine(config.embed) as engine:
        return _run(config, out, base, progress or SilentProgress(), engine)


class _NothingToCluster(InputError):
    """No photo of the run could be clustered (the message says what the scan found)."""


def _skipped_hint(skipped: Sequence[str], n_ignored: int = 0) -> str:
    """Why a scan that found nothing may have found nothing: the files it passed over for
    their extension, and the imgclust output and export folders it did not look into (a
    move export inside an input took the photos there)."""
    ignored = (
        f"; {plural(n_ignored, 'file')} passed over: not an image type by "
        f"{'its' if n_ignored == 1 else 'their'} extension (images: .jpg, .png, .heic, ...)"
        if n_ignored
        else ""
    )
    if not skipped:
        return ignored
    shown = ", ".join(display_path(p) for p in skipped[:3])
    more = f" and {len(skipped) - 3:,} more" if len(skipped) > 3 else ""
    return ignored + (
        f"; not scanned: {shown}{more} (imgclust output or export folders, or inside one: "
        "their photos are not scanned again; `imgclust export --undo FOLDER` puts a moved "
        "export's photos back)"
    )


@dataclass
class _Collection:
    """The run's images after embedding: paths, the feature matrix, and what it came from."""

    paths: list[str]
    rejected: list[Rejection]
    found: dict[str, Location]
    # The similarity index's own storage (float16); where the clustering runs as passes over
    # the shards, rows read from the store when a stage asks for some, and no index.
    features: Rows
    index: Any
    centre: np.ndarray | None
    n_embedded: int
    notes: list[str]


def _run(
    config: RunConfig, out: Path, base: SavedClustering | None, prog: Progress, engine: Engine
) -> RunResult:
    timings: dict[str, float] = {}
    previous = saved_inventory(out / MARKER_DIR)
    assigned, missing = _assigned_inputs(config, [] if previous is None else previous[1])
    store_dir = Path(base.store_dir) if base else config.store_dir.resolve()
    feature_kind = base.features if base else config.cluster.features
    embedder = embedder_for(
        engine.place(config.embed),  # the device (and so precision) of its model workers
        model=base.model if base else None,
        # Every image gets a thumbnail (member pages show them all): made while decoding,
        # the report need not decode each photo a second time.
        thumbnails=ThumbTarget(str(out), config.report.thumb_size),
    )
    if not FeatureStore.holds_shards(store_dir, embedder.spec.name):
        # A first run will embed (if the scan finds photos): Ray's start overlaps the scan.
        # A rerun starts it only if the store lacks some photo (never, when none changed).
        engine.warm_up()
    with _timed(timings, "scan"):
        prog.start("scan")
        # Never cluster our own output (thumbnails) when --out lies inside an input folder.
        found = scan([*config.inputs, *assigned], exclude=[out, store_dir])  # (str: URIs whole)
        prog.finish()
    records, scan_rejected = found.records, list(found.rejected)
    if base is not None:  # --refine: photos excluded in review stay out (and rejected)
        kept_out = {r.path: r for r in base.rejected if r.reason == EXCLUDED_REASON}
        scan_rejected += [kept_out[r.path] for r in records if r.path in kept_out]
        records = [r for r in records if r.path not in kept_out]

    def in_passes(n: int) -> bool:  # (then the matrix is never loaded here)
        clusterer = _clusterer(config, base, _resolve_k(config.cluster.k, n)[0])
        return engine.clusters_in_passes(clusterer, feature_kind)

    try:
        coll = _embed(
            config, records, scan_rejected, embedder, store_dir, base, prog, timings, engine,
            in_passes=in_passes, scratch=out / MARKER_DIR,
        )  # fmt: skip
    except _NothingToCluster as exc:
        raise InputError(str(exc) + _skipped_hint(found.skipped, found.n_ignored)) from None
    with _timed(timings, "cluster"):
        prog.start("cluster")
        k, k_note = _resolve_k(config.cluster.k, len(coll.paths))
        # hdbscan finds its own number: a note on k only when the user gave one
        unasked = config.cluster.algorithm == "hdbscan" and config.cluster.k == DEFAULT_K
        k_note = None if unasked else k_note
        fitted = engine.fit_clusters(  # (the Ray engine: k-means as passes over the shards)
            coll.features,
            coll.paths,
            _clusterer(config, base, k),
            algorithm=config.cluster.algorithm,
            requested_k=None if base or unasked else k,
            rows=FeatureRows(store_dir, embedder.spec.name, feature_kind, coll.found),
            work_dir=out / MARKER_DIR / "passes",
            dup_threshold=config.report.dup_threshold,
        )
        fitted.notes[:0] = [] if base or k_note is None else [k_note]
        prog.finish()
    clustering = _record(config, coll, fitted, embedder.spec, store_dir, feature_kind, timings)
    clustering = replace(clustering, assigned_inputs=assigned)
    with _timed(timings, "carry"):
        # The user's edits in `imgclust review` carried onto this clustering (names, merges,
        # moves, exclusions): what the outputs show; the run's own becomes the review base.
        carry = carry_review(out / MARKER_DIR, clustering, coll.features)
    carried = carry.carried if carry is not None else None
    shown = carried.clustering if carried is not None else clustering
    with _timed(timings, "report"):
        index = _write_outputs(out, shown, config, prog)
    with _timed(timings, "save"):
        # Last: assign/similar must never see a clustering the report on disk does not show.
        if carried is not None:
            save_carried(out / MARKER_DIR, carried, coll.index)
        else:
            save_clustering(out / MARKER_DIR, clustering, coll.index)
    clustering = shown
    result = RunResult(
        out_dir=out,
        clustering=clustering,
        n_embedded=coll.n_embedded,
        report=index,
        timings=timings,
        n_new=None if previous is None else len(set(clustering.paths) - previous[0]),
        algorithm=fitted.algorithm,
        refined=_refined_ids(fitted.model, fitted.labels),
        assigned_missing=missing,
        skipped=found.skipped,
        notes=coll.notes + fitted.notes + (carry.notes if carry is not None else []),
    )
    _write_run_info(out, config, result)
    return result


def _embed(
    config: RunConfig,
    records: list[Any],
    scan_rejected: list[Rejection],
    embedder: Embedder,
    store_dir: Path,
    base: SavedClustering | None,
    prog: Progress,
    timings: dict[str, float],
    engine: Engine,
    *,
    in_passes: Callable[[int], bool],
    scratch: Path,
) -> _Collection:
    """Embed what the store lacks, then load the clustered features into one matrix, unless
    ``in_passes(n)``: the engine clusters them as passes over the shards, and the later stages
    read the rows they need (samples; the map's placement in order) from the store (a
    per-cluster stage's scratch file in ``scratch``)."""
    spec = embedder.spec
    kind = base.features if base else config.cluster.features
    with FeatureStore(store_dir, spec.name) as store:
        if base is not None:
            _check_refinable(base, store.lookup(records), config)
        with _timed(timings, "embed"):
            embedded = embed_missing(
                records, embedder, store, shard_size=config.store.shard_size, progress=prog,
                engine=engine,
            )  # fmt: skip
        paths = sorted(embedded.found)
        rejected = list(scan_rejected) + embedded.rejected
        if not paths:
            shown = "; ".join(f"{display_path(r.path)}: {r.reason}" for r in rejected[:5])
            more = f"; and {len(rejected) - 5:,} more" if len(rejected) > 5 else ""
            raise _NothingToCluster(
                f"no image could be clustered: "
                f"{plural(len(records) + len(scan_rejected), 'candidate file')}, "
                f"{len(rejected):,} rejected" + (f" ({shown}{more})" if rejected else "")
            )
        # The features go from the store straight into the similarity index's float16
        # storage, shard by shard, and that one matrix is what is clustered: at a million
        # images no raw array, float32 copy or second matrix is ever held. Clustered as
        # passes over the shards, no process ever holds them all, this one neither.
        source = feature_source(kind)
        width = spec.embedding_dim if source == "embedding" else spec.n_classes
        with _timed(timings, "load"):
            if in_passes(len(paths)):
                index, centre = None, None  # (only kinds without a centre are clustered so)
                feats: Rows = StoredRows(
                    FeatureStore(store_dir, spec.name),  # (finished shards: no open needed)
                    paths,
                    embedded.found,
                    source,
                    width,
                    transform=lambda _, rows: row_features(kind, rows),
                    scratch=scratch,  # (a per-cluster stage's spill file, not in /tmp's RAM)
                )
            else:
                index, feats, centre = _load_matrix(store, paths, embedded.found, kind, width)
        damaged = list(store.damaged)
    notes = list(embedded.notes)  # (the Ray engine's photos and img/s per node)
    if damaged:
        notes.append(
            f"{plural(len(damaged), 'damaged feature-store shard')} set aside as *.damaged "
            "(" + ", ".join(p.name for p in damaged) + "); their photos were embedded again"
        )
    if embedded.n_changed:
        notes.append(
            f"{plural(embedded.n_changed, 'file')} changed while being read: checked and "
            "embedded again (or rejected, if still changing)"
        )
    return _Collection(
        paths, rejected, embedded.found, feats, index, centre, embedded.n_embedded, notes
    )


def _load_matrix(
    store: FeatureStore, paths: list[str], found: dict[str, Location], kind: str, width: int
) -> tuple[Any, np.ndarray, np.ndarray | None]:
    """The similarity index, its storage filled with the features of ``paths``, and the
    centre taken out (:func:`finish_features`)."""
    source = feature_source(kind)
    index, feats = feature_index(len(paths), width)
    store.load(
        paths,
        found,
        arrays=(source,),
        transform=lambda _, rows: row_features(kind, rows),
        out={source: feats},
    )
    return index, feats, finish_features(kind, feats)


def _record(
    config: RunConfig,
    coll: _Collection,
    fitted: Fitted,
    spec: ModelSpec,
    store_dir: Path,
    feature_kind: str,
    timings: dict[str, float],
) -> Clustering:
    """The run's :class:`Clustering`: names, near-duplicates, map, every column."""
    with _timed(timings, "describe"):
        # (what decoding recorded, e.g. the EXIF date: read with the logits, in one pass)
        known = {name: np.full(len(coll.paths), None, dtype=object) for name in STRING_COLUMNS}
        clusters, stats = _describe(coll, fitted, spec, store_dir, config.cluster.seed, known)
        columns = image_columns(coll.paths, known)
    with _timed(timings, "duplicates"):
        duplicate_of = _duplicates(coll, fitted, feature_kind, spec, store_dir, config)
    with _timed(timings, "groups"):
        centroids = centroids_by_label(
            fitted.model.cluster_centers_, fitted.model.labels_, fitted.labels
        )
        clusters, tree = name_and_group(
            clusters,
            stats.cluster_scores,
            centroids,
            coll.features,
            fitted.labels,
            imagenet_class_names(),
            method=config.cluster.names,
        )
    with _timed(timings, "layout"):
        layout, coords = map_layout(
            coll.features,
            centroids,
            fitted.labels,
            fitted.distances,
            groups=None if tree is None else tree.groups,
        )
    return Clustering(
        paths=coll.paths,
        labels=fitted.labels,
        ranks=fitted.ranks,
        distances=fitted.distances,
        image_top_classes=stats.image_top_classes(imagenet_class_names()),
        clusters=clusters,
        rejected=sorted(coll.rejected, key=lambda r: r.path),
        model=spec.name,
        features=feature_kind,
        outliers=fitted.outliers,
        coords=coords,
        duplicate_of=duplicate_of,
        columns=columns,
        store_dir=str(store_dir),
        centroids=centroids,
        fences=fitted.fences,
        layout=layout,
        feature_centre=coll.centre,
        report=config.report,
        tree=tree,
    )


def _describe(
    coll: _Collection,
    fitted: Fitted,
    spec: ModelSpec,
    store_dir: Path,
    seed: int,
    strings: dict[str, np.ndarray],
) -> tuple[list[ClusterSummary], Any]:
    """Cluster names and each image's top classes, in one streamed pass over the logits
    (which also fills ``strings``, the string columns the store keeps), unless the clustering
    passes gathered those over the shards already (``fitted.stats``)."""
    if fitted.stats is not None:
        stats = fitted.stats
        for name, values in (fitted.strings or {}).items():
            strings[name][:] = values
    else:
        # A shard at a time: never all 1,000 scores of every image at once. Finished shards
        # are read without re-opening (and re-indexing) the whole store.
        store = FeatureStore(store_dir, spec.name)
        rows = store.iter_rows(coll.paths, coll.found, "logits", strings=strings)
        stats = class_statistics(rows, fitted.labels)
    clusters = describe(
        fitted.labels,
        fitted.distances,
        coll.features,
        stats.cluster_scores,
        imagenet_class_names(),
        seed=seed,
        medoids=fitted.medoids,
    )
    return clusters, stats


def _duplicates(
    coll: _Collection,
    fitted: Fitted,
    feature_kind: str,
    spec: ModelSpec,
    store_dir: Path,
    config: RunConfig,
) -> np.ndarray:
    """Near-duplicate groups, judged on the L2-normalised embedding: by default the clustered
    matrix itself; other feature kinds read the embedding from the store. (Found already
    where the clustering passes grouped each cluster's rows.)"""
    if fitted.duplicate_of is not None:
        return fitted.duplicate_of
    embedding = coll.features
    if feature_kind != "embedding":
        stored = FeatureStore(store_dir, spec.name)  # finished shards: no re-open needed
        embedding = stored.load(coll.paths, coll.found, arrays=("embedding",))["embedding"]
    return near_duplicates(
        embedding, fitted.labels, fitted.distances, threshold=config.report.dup_threshold
    )


def map_layout(
    features: Rows,
    centroids: np.ndarray,
    labels: np.ndarray,
    distances: np.ndarray,
    *,
    groups: np.ndarray | None = None,
) -> tuple[MapLayout, np.ndarray]:
    """The map's layout and every image's position; unclustered images get a disc of their
    own (after the clusters'), around their mean, in a group of their own. ``groups``: each
    cluster's group (the clustering's tree), whose clusters are placed side by side."""
    ids = np.asarray(labels).copy()
    noise = ids < 0
    centres = np.asarray(centroids, dtype=np.float32)
    if groups is not None:
        groups = np.asarray(groups, dtype=np.int64)
    if noise.any():
        ids[noise] = len(centres)
        centres = np.vstack([centres, features[noise].astype(np.float32).mean(axis=0)])
        if groups is not None:
            groups = np.r_[groups, groups.max(initial=-1) + 1]
    layout = fit_layout(features, centres, ids, distances, groups=groups)
    return layout, layout.place(features, centres, ids, distances)


def _write_outputs(out: Path, data: Clustering, config: RunConfig, prog: Progress) -> Path:
    write_exports(out, data)
    per_row = config.report.thumbs_per_row
    prog.start("thumbnails", min(len(data.paths), sum(min(c.size, per_row) for c in data.clusters)))
    index = write_report(out, data, config.report, on_progress=prog.advance)
    prog.finish()
    return index


def _check_refinable(base: SavedClustering, lookup: Lookup, config: RunConfig) -> None:
    """Refuse ``--refine`` when the images differ from the clustering OUT's report shows.

    Cluster ids name clusters of that report; re-clustering a grown folder first would
    renumber them, and the split would hit a cluster the user never chose.
    """
    now = set(lookup.found) | {r.path for r in lookup.todo}
    before = set(base.paths)
    n_new = len(now - before - {r.path for r in base.rejected})
    n_gone = len(before - now)
    n_changed = sum(r.path in before for r in lookup.todo)
    if before and not before & set(lookup.found) and n_changed == len(before):
        raise InputError(
            f"the feature store {base.store_dir} holds none of the photos of the clustering "
            f"in {config.out} (removed or moved since?), so --refine cannot split its "
            f"clusters; run `imgclust run ... --out {config.out}` first (it embeds them again)"
        )
    if n_new or n_gone or n_changed:
        folders = " ".join(str(p) for p in config.inputs)
        raise InputError(
            f"the photos differ from the clustering in {config.out} ({n_new} new, {n_gone} "
            f"gone, {n_changed} changed images), so its cluster ids may no longer mean what "
            f"its report shows; run `imgclust run {folders} --out {config.out}` first, then "
            "--refine by the ids of the new report"
        )
    labels = np.asarray(base.labels)
    sizes = np.bincount(labels[labels >= 0], minlength=len(base.names))
    for cid in config.cluster.refine:
        if not len(sizes):
            raise ConfigError(
                f"--refine {cid}: {config.out} has no clusters (every photo is unclustered); "
                "run without --refine, e.g. with another --algorithm"
            )
        if not 0 <= cid < len(sizes):
            raise ConfigError(
                f"--refine {cid}: {config.out} has clusters 0 to {len(sizes) - 1}; "
                "use an id its report shows"
            )
        if sizes[cid] < 2:
            raise ConfigError(f"--refine {cid}: cluster {cid} has one image; nothing to split")


def _resolve_k(k: int | str | None, n: int) -> tuple[int | None, str | None]:
    """The k to cluster ``n`` photos with, and a note when the default rule lowered it."""
    if k != DEFAULT_K:
        return (k if isinstance(k, int) or k is None else int(k)), None
    chosen = default_k(n)
    if chosen == 100:
        return chosen, None
    return chosen, (
        f"k = {chosen} for {plural(n, 'photo')}: the default below "
        f"{SMALL_COLLECTION:,} photos is 1.6·√n, not 100 (--k N to choose)"
    )


def _clusterer(config: RunConfig, base: SavedClustering | None, k: int | None) -> Clusterer:
    """The run's clusterer, or, with ``--refine``, the saved clustering with clusters split."""
    c = config.cluster
    if base is None:
        return create_clusterer(c.algorithm, k, random_state=c.seed)
    return SplitClusters(
        base.labels,
        base.centroids,
        base.distances,
        c.refine,
        n_clusters=c.refine_k,
        random_state=c.seed,
    )


def _refined_ids(model: Clusterer, labels: np.ndarray) -> dict[int, list[int]]:
    """Split cluster (old id) → its parts' ids after renumbering by size."""
    if not isinstance(model, SplitClusters):
        return {}
    new_id = dict(zip(model.labels_.tolist(), labels.tolist(), strict=True))
    return {old: sorted(new_id[p] for p in parts) for old, parts in model.parts_.items()}


def _assigned_inputs(config: RunConfig, remembered: list[str]) -> tuple[list[str], list[str]]:
    """Of the inputs ``assign`` added to OUT, those the run must scan besides its own inputs
    (not inside them), and those that no longer exist."""
    own = [input_key(p) for p in config.inputs]
    extra = [p for p in dict.fromkeys(remembered) if not inside(p, own)]
    there = {p: input_exists(p) for p in extra}
    return [p for p in extra if there[p]], [p for p in extra if not there[p]]


def _write_run_info(out: Path, config: RunConfig, result: RunResult) -> None:
    info = {
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "n_scanned": result.n_scanned,
        "n_clustered": len(result.paths),
        "n_rejected": len(result.rejected),
        "n_embedded": result.n_embedded,
        "n_cached": result.n_cached,
        "k": result.k,
        "n_unclustered": result.n_unclustered,
        "n_unsorted": int((result.labels == UNSORTED_LABEL).sum()),  # (review's "not this")
        "notes": result.notes,
        "model": result.model,  # with its precision: what "auto" chose
        "algorithm": result.algorithm,
        "timings": result.timings,
    }
    atomic_write_text(out / MARKER_DIR / "run.json", json.dumps(info, indent=2))
