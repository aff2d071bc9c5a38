"""The pipeline: scan → decode/embed → store → cluster → describe → report. Wiring only."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from .cluster import make_clusterer, make_features_lowmem, softmax
from .config import RunConfig
from .describe import (
    ClusterSummary,
    describe,
    outlier_thresholds,
    rank_members,
    relabel_by_size,
    top_class_ids,
    top_classes,
)
from .embed import Embedder
from .exceptions import InputError, OutputError
from .models import imagenet_class_names
from .neardup import near_duplicates
from .report import ReportData, write_exports, write_report
from .report._io import atomic_write_text
from .report.layout import fit_layout
from .scan import Rejection, scan
from .state import SavedClustering, centroids_by_label, save_clustering, saved_inventory
from .store import FeatureStore

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
        timings: seconds per stage.
        n_new: images that were not in the previous run's clustering (the folder grew and
            was re-clustered); ``None`` on a first run.
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
    prepare_out_dir(out)
    store_dir = config.store_dir.resolve()
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
        config.embed.model,
        batch_size=config.embed.batch_size,
        device=config.embed.device,
        workers=config.embed.workers,
        decode_timeout=config.embed.decode_timeout,
        runtime=config.embed.runtime,
    )
    spec = embedder.spec
    with FeatureStore(store_dir, spec.name) as store:
        lookup = store.lookup(records)
        rejected = list(found.rejected) + lookup.rejected
        n_embedded = 0
        with _timed(timings, "embed"):
            if lookup.todo:
                prog.start("embed", len(lookup.todo))
                for block in embedder.iter_blocks(
                    lookup.todo, config.store.shard_size, on_progress=prog.advance
                ):
                    store.write(block, spec.n_classes, spec.embedding_dim)
                    n_embedded += len(block.paths)
                prog.finish()
        final = store.lookup(records)
        rejected = list(found.rejected) + final.rejected
        paths = sorted(final.found)
        if not paths:
            raise InputError(
                f"no image could be clustered: {len(records)} candidate files, "
                f"{len(rejected)} rejected (see the reasons with --verbose or rejected.csv)"
            )
        with _timed(timings, "load"):
            stored = store.load(paths, final.found, arrays=("logits", "embedding"))

    with _timed(timings, "cluster"):
        prog.start("cluster")
        feats = make_features_lowmem(  # float16, built in chunks: bounded memory at 1M
            config.cluster.features, logits=stored["logits"], embedding=stored["embedding"]
        )
        model = make_clusterer(
            config.cluster.algorithm, config.cluster.k or None, random_state=config.cluster.seed
        ).fit(feats)
        labels = relabel_by_size(model.labels_, paths)
        distances = model.distances_
        ranks = rank_members(labels, distances)
        n_clusters = int(labels.max()) + 1
        fences = outlier_thresholds(labels, distances, n_clusters)
        outliers = (labels >= 0) & (distances > fences[np.maximum(labels, 0)])  # noise: no
        prog.finish()

    with _timed(timings, "describe"):
        scores = softmax(stored["logits"])
        class_names = imagenet_class_names()
        clusters = describe(labels, distances, feats, scores, class_names, seed=config.cluster.seed)
        top_ids = top_class_ids(scores, 3)
        image_tops = top_classes(scores, class_names, ids=top_ids)

    with _timed(timings, "duplicates"):
        duplicate_of = near_duplicates(
            stored["embedding"], labels, distances, threshold=config.report.dup_threshold
        )

    with _timed(timings, "layout"):
        centroids = centroids_by_label(model.cluster_centers_, model.labels_, labels)
        layout = fit_layout(feats, centroids, labels, distances)
        coords = layout.place(feats, centroids, labels, distances)
        saved = SavedClustering(
            model=spec.name,
            features=config.cluster.features,
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
            top_class_ids=top_ids,
            top_class_scores=np.take_along_axis(scores, top_ids, axis=1),
            rejected=sorted(rejected, key=lambda r: r.path),
            report=config.report,
            coords=coords,
            layout=layout,
            duplicate_of=duplicate_of,
            assigned_inputs=assigned,
        )

    data = ReportData(
        paths=paths,
        labels=labels,
        ranks=ranks,
        distances=distances,
        image_top_classes=image_tops,
        clusters=clusters,
        rejected=sorted(rejected, key=lambda r: r.path),
        model=spec.name,
        features=config.cluster.features,
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
        save_clustering(out / MARKER_DIR, saved, feats)

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
        features=config.cluster.features,
        timings=timings,
        n_new=None if previous is None else len(set(paths) - previous[0]),
        assigned_inputs=assigned,
        assigned_missing=missing,
    )
    _write_run_info(out, config, result)
    return result


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
        "timings": result.timings,
    }
    atomic_write_text(out / MARKER_DIR / "run.json", json.dumps(info, indent=2))
