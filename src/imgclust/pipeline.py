"""The pipeline: scan → decode/embed → store → cluster → describe → report. Wiring only."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .cluster import SplitClusters, feature_source, finish_features, make_clusterer, row_features
from .config import RunConfig
from .decode import ThumbTarget
from .describe import (
    ClusterSummary,
    class_statistics,
    describe,
    outlier_thresholds,
    rank_members,
    relabel_by_size,
)
from .embed import Embedder, model_for
from .exceptions import ConfigError, InputError, OutputError
from .models import imagenet_class_names
from .neardup import near_duplicates
from .report import ReportData, write_exports, write_report
from .report._io import atomic_write_text
from .report.layout import fit_layout
from .scan import Rejection, scan
from .state import (
    SavedClustering,
    centroids_by_label,
    feature_index,
    load_clustering,
    save_clustering,
    saved_inventory,
)
from .store import FeatureStore, Lookup

#: The marker folder that makes a folder an imgclust output folder (safe to write into).
MARKER_DIR = ".imgclust"


class Progress(Protocol):
    """What the pipeline tells a progress display. The CLI implements it with rich."""

    def start(self, stage: str, total: int | None = None) -> None:
        """A stage begins; ``total`` units of work if known."""

    def advance(self, n: int = 1) -> None:
        """``n`` more units of the current stage are done."""

    def finish(self) -> None:
        """The current stage is over."""


class _Silent:
    def start(self, stage: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass(frozen=True)
class RunResult:
    """What a run produced.

    Attributes:
        paths: clustered images (absolute), index-aligned with ``labels``/``ranks``/``distances``.
        labels: cluster id of each image (0 = the largest cluster).
        ranks: rank inside its cluster (0 = nearest the centroid).
        distances: distance to the cluster centroid in the clustered feature space.
        clusters: one summary per cluster, ordered by id.
        rejected: files that were not clustered, with reasons.
        n_embedded: images embedded by this run (the rest came from the store).
        n_cached: images whose features came from the store.
        report: path of ``index.html``.
        timings: seconds per stage, and (where the OS tells) the process's peak resident
            memory in GiB at the end of each stage (``<stage>_peak_rss_gib``).
        n_new: images that were not in the previous run's clustering (the folder grew and
            was re-clustered); ``None`` on a first run.
        algorithm: the clustering algorithm that ran (what ``auto`` chose).
        refined: with ``--refine``: each split cluster's id in the previous report → the ids
            of its parts in this one.
        assigned_inputs: folders/files added to OUT by ``imgclust assign`` that lie outside
            ``inputs``; scanned too, so their photos stay in the collection.
        assigned_missing: such folders/files that no longer exist (their photos are gone).
    """

    out_dir: Path
    paths: list[str]
    labels: np.ndarray
    ranks: np.ndarray
    distances: np.ndarray
    clusters: list[ClusterSummary]
    rejected: list[Rejection]
    n_embedded: int
    n_cached: int
    report: Path
    model: str
    features: str
    timings: dict[str, float] = field(default_factory=dict)
    n_new: int | None = None
    algorithm: str = ""
    refined: dict[int, list[int]] = field(default_factory=dict)
    assigned_inputs: list[str] = field(default_factory=list)
    assigned_missing: list[str] = field(default_factory=list)

    @property
    def k(self) -> int:
        """Number of clusters."""
        return len(self.clusters)

    @property
    def n_scanned(self) -> int:
        """Image files found: clustered plus rejected."""
        return len(self.paths) + len(self.rejected)

    def assignments(self) -> dict[str, int]:
        """Path → cluster id."""
        return dict(zip(self.paths, self.labels.tolist(), strict=True))


def prepare_out_dir(out: Path) -> None:
    """Create ``out`` or check it is safe to write into.

    Raises:
        OutputError: ``out`` is a non-empty folder that imgclust did not make, or unwritable.
    """
    if out.exists():
        if not out.is_dir():
            raise OutputError(f"{out} exists and is not a folder; choose another --out")
        if any(out.iterdir()) and not (out / MARKER_DIR).is_dir():
            raise OutputError(
                f"{out} is not empty and was not made by imgclust; choose an empty or new "
                "--out so nothing there is overwritten"
            )
    try:
        (out / MARKER_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {out}: {exc}") from exc
    if not os.access(out, os.W_OK):
        raise OutputError(f"the output folder {out} is not writable")


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


def _is_inside(path: str, folders: list[str]) -> bool:
    return any(path == f or path.startswith(f + os.sep) for f in folders)


def run(config: RunConfig, *, progress: Progress | None = None) -> RunResult:
    """Cluster the photos under ``config.inputs`` and write the report and exports.

    Raises:
        InputError: no input exists or no image could be decoded.
        OutputError: the output folder cannot be written.
        ModelUnavailableError: the model cannot be loaded.
        StoreError: the feature store cannot be used.
    """
    prog: Progress = progress or _Silent()
    timings: dict[str, float] = {}
    out = config.out.resolve()
    # --refine splits clusters of the clustering the report in OUT shows: same model,
    # features and store as that run, and the same images (checked after the scan).
    base = load_clustering(out / MARKER_DIR) if config.cluster.refine else None
    prepare_out_dir(out)
    store_dir = config.store_dir.resolve()
    model_name = model_for(config.embed)
    feature_kind = config.cluster.features
    if base is not None:
        model_name, feature_kind = base.model, base.features
        store_dir = Path(base.store_dir)
    previous = saved_inventory(out / MARKER_DIR)
    assigned, missing = _assigned_inputs(config, [] if previous is None else previous[1])

    with _timed(timings, "scan"):
        prog.start("scan")
        found = scan([*config.inputs, *map(Path, assigned)])
        # Never cluster our own output (thumbnails) when --out lies inside an input folder.
        own = [str(out), str(store_dir)]
        records = [r for r in found.records if not _is_inside(r.path, own)]
        prog.finish()

    embedder = Embedder(
        model_name,
        batch_size=config.embed.batch_size,
        device=config.embed.device,
        workers=config.embed.workers,
        decode_timeout=config.embed.decode_timeout,
        runtime=config.embed.runtime,
        # Every image gets a thumbnail (member pages show them all): made while decoding,
        # the report need not decode each photo a second time.
        thumbnails=ThumbTarget(str(out), config.report.thumb_size),
    )
    spec = embedder.spec
    with FeatureStore(store_dir, spec.name) as store:
        lookup = store.lookup(records)
        if base is not None:
            _check_refinable(base, lookup, config)
        n_embedded = 0
        if lookup.todo:
            with _timed(timings, "model"):
                # Its own stage: the first run converts (and for int8 calibrates) the model,
                # which would otherwise look like an embed bar stuck at 0.
                prog.start("model")
                embedder.load()
                prog.finish()
        with _timed(timings, "embed"):
            if lookup.todo:
                prog.start("embed", len(lookup.todo))
                for block in embedder.iter_blocks(
                    lookup.todo, config.store.shard_size, on_progress=prog.advance
                ):
                    store.write(block, spec.n_classes, spec.embedding_dim)
                    n_embedded += len(block.paths)
                prog.finish()
        del lookup  # a second path → location table of the whole collection otherwise
        final = store.lookup(records)
        rejected = list(found.rejected) + final.rejected
        paths = sorted(final.found)
        if not paths:
            raise InputError(
                f"no image could be clustered: {len(records)} candidate files, "
                f"{len(rejected)} rejected (see the reasons with --verbose or rejected.csv)"
            )
        with _timed(timings, "load"):
            # The features go from the store straight into the similarity index's float16
            # storage, shard by shard, and that one matrix is what is clustered: at a million
            # images no raw array, float32 copy or second matrix is ever held.
            kind = feature_kind
            source = feature_source(kind)
            width = spec.embedding_dim if source == "embedding" else spec.n_classes
            similarity_index, feats = feature_index(len(paths), width)
            store.load(
                paths,
                final.found,
                arrays=(source,),
                transform=lambda _, rows: row_features(kind, rows),
                out={source: feats},
            )
            feature_centre = finish_features(kind, feats)

    with _timed(timings, "cluster"):
        prog.start("cluster")
        model = _clusterer(config, base).fit(feats)
        algorithm = getattr(model, "algorithm_", config.cluster.algorithm)  # what auto chose
        labels = relabel_by_size(model.labels_, paths)
        distances = model.distances_
        ranks = rank_members(labels, distances)
        n_clusters = int(labels.max()) + 1
        fences = outlier_thresholds(labels, distances, n_clusters)
        outliers = (labels >= 0) & (distances > fences[np.maximum(labels, 0)])  # noise: no
        prog.finish()

    with _timed(timings, "describe"):
        # One more pass over the stored logits, a shard at a time: cluster mean scores (the
        # names) and each image's top classes, never all 1,000 scores of every image at once.
        # Finished shards, read without re-opening (and re-indexing) the whole store.
        rows = FeatureStore(store_dir, spec.name).iter_rows(paths, final.found, "logits")
        stats = class_statistics(rows, labels)
        class_names = imagenet_class_names()
        clusters = describe(
            labels, distances, feats, stats.cluster_scores, class_names, seed=config.cluster.seed
        )
        image_tops = stats.image_top_classes(class_names)

    with _timed(timings, "duplicates"):
        # Judged on the L2-normalised embedding: by default the clustered matrix itself;
        # other feature kinds read the embedding from the store (one more matrix in memory).
        embedding = feats
        if feature_kind != "embedding":
            stored = FeatureStore(store_dir, spec.name)  # finished shards: no re-open needed
            embedding = stored.load(paths, final.found, arrays=("embedding",))["embedding"]
        duplicate_of = near_duplicates(
            embedding, labels, distances, threshold=config.report.dup_threshold
        )
        del embedding

    rejected = sorted(rejected, key=lambda r: r.path)
    with _timed(timings, "layout"):
        centroids = centroids_by_label(model.cluster_centers_, model.labels_, labels)
        layout = fit_layout(feats, centroids, labels, distances)
        coords = layout.place(feats, centroids, labels, distances)
        saved = SavedClustering(
            model=spec.name,
            features=feature_kind,
            store_dir=str(store_dir),
            centroids=centroids,
            fences=fences,
            names=[c.name for c in clusters],
            cluster_top_classes=[c.top_classes for c in clusters],
            medoids=np.array([c.medoid for c in clusters], dtype=np.int64),
            paths=paths,
            labels=labels,
            distances=distances,
            outliers=outliers,
            top_class_ids=stats.top_ids,
            top_class_scores=stats.top_scores,
            rejected=rejected,
            report=config.report,
            coords=coords,
            layout=layout,
            duplicate_of=duplicate_of,
            assigned_inputs=assigned,
            feature_centre=feature_centre,
        )

    data = ReportData(
        paths=paths,
        labels=labels,
        ranks=ranks,
        distances=distances,
        image_top_classes=image_tops,
        clusters=clusters,
        rejected=rejected,
        model=spec.name,
        features=feature_kind,
        outliers=outliers,
        coords=coords,
        duplicate_of=duplicate_of,
    )
    with _timed(timings, "report"):
        write_exports(out, data)
        shown = min(len(paths), sum(min(c.size, config.report.thumbs_per_row) for c in clusters))
        prog.start("thumbnails", shown)
        index = write_report(out, data, config.report, on_progress=prog.advance)
        prog.finish()
    with _timed(timings, "save"):
        # Last: assign/similar must never see a clustering the report on disk does not show.
        save_clustering(out / MARKER_DIR, saved, similarity_index)

    result = RunResult(
        out_dir=out,
        paths=paths,
        labels=labels,
        ranks=ranks,
        distances=distances,
        clusters=clusters,
        rejected=list(data.rejected),
        n_embedded=n_embedded,
        n_cached=len(paths) - n_embedded,
        report=index,
        model=spec.name,
        features=feature_kind,
        timings=timings,
        n_new=None if previous is None else len(set(paths) - previous[0]),
        algorithm=algorithm,
        refined=_refined_ids(model, labels),
        assigned_inputs=assigned,
        assigned_missing=missing,
    )
    _write_run_info(out, config, result)
    return result


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
        if not 0 <= cid < len(sizes):
            raise ConfigError(
                f"--refine {cid}: {config.out} has clusters 0 to {len(sizes) - 1}; "
                "use an id its report shows"
            )
        if sizes[cid] < 2:
            raise ConfigError(f"--refine {cid}: cluster {cid} has one image; nothing to split")


def _clusterer(config: RunConfig, base: SavedClustering | None) -> Any:
    """The run's clusterer, or, with ``--refine``, the saved clustering with clusters split."""
    c = config.cluster
    if base is None:
        return make_clusterer(c.algorithm, c.k or None, random_state=c.seed)
    return SplitClusters(
        base.labels,
        base.centroids,
        base.distances,
        c.refine,
        n_clusters=c.refine_k or None,
        random_state=c.seed,
    )


def _refined_ids(model: Any, labels: np.ndarray) -> dict[int, list[int]]:
    """Split cluster (old id) → its parts' ids after renumbering by size."""
    if not isinstance(model, SplitClusters):
        return {}
    new_id = dict(zip(model.labels_.tolist(), labels.tolist(), strict=True))
    return {old: sorted(new_id[p] for p in parts) for old, parts in model.parts_.items()}


def _assigned_inputs(config: RunConfig, remembered: list[str]) -> tuple[list[str], list[str]]:
    """Of the inputs ``assign`` added to OUT, those the run must scan besides its own inputs
    (not inside them), and those that no longer exist."""
    own = [str(Path(p).resolve()) for p in config.inputs]
    extra = [p for p in dict.fromkeys(remembered) if not _is_inside(p, own)]
    return [p for p in extra if os.path.exists(p)], [p for p in extra if not os.path.exists(p)]


def _write_run_info(out: Path, config: RunConfig, result: RunResult) -> None:
    info = {
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "n_scanned": result.n_scanned,
        "n_clustered": len(result.paths),
        "n_rejected": len(result.rejected),
        "n_embedded": result.n_embedded,
        "n_cached": result.n_cached,
        "k": result.k,
        "model": result.model,  # with its precision: what "auto" chose
        "algorithm": result.algorithm,
        "timings": result.timings,
    }
    atomic_write_text(out / MARKER_DIR / "run.json", json.dumps(info, indent=2))
