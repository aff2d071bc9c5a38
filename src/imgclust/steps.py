"""The steps every command is made of, so no command wires a stage its own way.

* :func:`output_folder`: check an output folder is ours, make its marker, hold its lock for
  the whole command (and remove what it made when the command fails before doing any work);
* :func:`embed_missing`: features for records the store lacks, re-checking files that changed
  while they were read, so every scanned file ends up clustered or rejected;
* :func:`fit_clusters`: a registered clusterer over a feature matrix → labels numbered by
  size, ranks, distances, outlier fences, and notes that say where the result differs from
  what was asked (k lowered, fewer clusters, unclustered images).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from . import uri
from ._fs import LOCK_FILE, OutputLock
from .cluster import Clusterer
from .cluster.others import MIN_CLUSTER_SIZE
from .config import EmbedConfig
from .decode import ThumbTarget
from .describe import ClassStats, outlier_thresholds, rank_members, relabel_by_size
from .embed import Embedder, model_for
from .engines import EmbedReport, Engine
from .exceptions import InputError, OutputError
from .scan import FileRecord, Rejection, stat_record
from .store import FeatureStore, Location, Rows

#: The marker folder that makes a folder an imgclust output folder (safe to write into).
MARKER_DIR = ".imgclust"


class Progress(Protocol):
    """What the steps tell a progress display. The CLI implements it with rich."""

    def start(self, stage: str, total: int | None = None) -> None:
        """A stage begins; ``total`` units of work if known."""

    def advance(self, n: int = 1) -> None:
        """``n`` more units of the current stage are done."""

    def finish(self) -> None:
        """The current stage is over."""


class SilentProgress:
    """A :class:`Progress` that shows nothing (the library default)."""

    def start(self, stage: str, total: int | None = None) -> None:
        """Ignored."""

    def advance(self, n: int = 1) -> None:
        """Ignored."""

    def finish(self) -> None:
        """Ignored."""


def plural(n: int, noun: str) -> str:
    """``"1 photo"``, ``"2 photos"``, ``"1,000 photos"``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


# -- the output folder ----------------------------------------------------------------------


def prepare_out_dir(out: Path) -> bool:
    """Create ``out`` (and its marker) or check it is safe to write into.

    Returns:
        Whether the marker folder was created now (so a failed first run can remove it).

    Raises:
        OutputError: ``out`` is a non-empty folder that imgclust did not make, or unwritable.
    """
    marker = out / MARKER_DIR
    if out.exists():
        if not out.is_dir():
            raise OutputError(f"{out} exists and is not a folder; choose another --out")
        if not marker.is_dir() and any(out.iterdir()):
            raise OutputError(
                f"{out} is not empty and was not made by imgclust; choose an empty or new "
                "--out so nothing there is overwritten"
            )
    created = not marker.is_dir()
    try:
        marker.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {out}: {exc}") from exc
    if not os.access(out, os.W_OK):
        raise OutputError(f"the output folder {out} is not writable")
    return created


@contextmanager
def output_folder(out: Path, command: str, *, create: bool = True) -> Iterator[Path]:
    """Hold ``out``'s lock for the block; yields its marker folder.

    With ``create`` the folder is made if needed (:func:`prepare_out_dir`); without, it must
    hold an earlier run's results. When the block fails and this call made the marker, what
    it made is removed again unless a feature shard was stored (work worth keeping).

    Raises:
        OutputError: the folder is not ours, not writable, or in use by another command.
        InputError: ``create`` is false and ``out`` holds no imgclust results.
    """
    marker = out / MARKER_DIR
    existed = out.exists()
    if create:
        created = prepare_out_dir(out)
    elif not marker.is_dir():
        raise InputError(
            f"{out} holds no imgclust results; run `imgclust run PHOTOS --out {out}` first"
        )
    else:
        created = False
    try:
        with OutputLock(marker, command):
            yield marker
    except BaseException:
        if created:
            _remove_if_unused(out, marker, existed)
        raise


def _remove_if_unused(out: Path, marker: Path, out_existed: bool) -> None:
    """Remove a marker (and ``out``, if made now) that holds nothing but empty folders and the
    lock: a run that failed before any work must not leave an output folder behind."""
    leftovers = [
        p for p in marker.rglob("*") if p.is_file() and p.name not in (LOCK_FILE, "lock.json")
    ]
    if leftovers:
        return
    with contextlib.suppress(OSError):
        shutil.rmtree(marker)
        if not out_existed and not any(out.iterdir()):
            out.rmdir()


def inside(path: str, folders: Sequence[str]) -> bool:
    """Whether ``path`` is one of ``folders`` or lies below one (both absolute)."""
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def input_key(path: str | os.PathLike[str]) -> str:
    """How an input is remembered: a local path absolute, a ``file://`` URI as the path it
    names, other URIs (``s3://...``) as the scan keys them (``gcs://b/p/`` is ``gs://b/p``;
    ``Path`` would fold ``s3://b`` into ``s3:/b``).

    Raises:
        InputError: a URI imgclust cannot read (its scheme, options in it).
    """
    text = os.fspath(path)
    if uri.is_uri(text):
        text = uri.local_path(text) or text
        if uri.is_uri(text):
            return uri.locate(text).uri()
    return str(Path(text).resolve())


def input_exists(key: str) -> bool:
    """Whether a remembered input (:func:`input_key`) is still there: a file or folder, or
    an object or a prefix with objects.

    Raises:
        InputError: its storage cannot be reached or read (which says nothing of whether
            it is there: it must not be forgotten as gone).
    """
    if not uri.is_uri(key):
        return os.path.exists(key)
    try:
        uri.check(key)
    except uri.NotThere:
        return False
    return True


# -- embedding ------------------------------------------------------------------------------


def embedder_for(
    embed: EmbedConfig, *, model: str | None = None, thumbnails: ThumbTarget | None = None
) -> Embedder:
    """The :class:`Embedder` an :class:`EmbedConfig` describes (every command builds it here,
    so no option is dropped on the way). ``model`` overrides the config's (a saved
    clustering's model, precision included)."""
    return Embedder(
        model or model_for(embed),
        batch_size=embed.batch_size,
        device=embed.device,
        workers=embed.workers,
        decode_timeout=embed.decode_timeout,
        runtime=embed.runtime,
        thumbnails=thumbnails,
    )


@dataclass
class Embedded:
    """What :func:`embed_missing` left in the store for a list of records.

    Attributes:
        found: path → where its features are, for every record with features.
        rejected: records that could not be embedded, with reasons.
        n_embedded: images embedded now (the rest were in the store).
        n_changed: files that changed while they were read and were embedded again.
    """

    found: dict[str, Location]
    rejected: list[Rejection]
    n_embedded: int = 0
    n_changed: int = 0
    notes: list[str] = field(default_factory=list)


def embed_missing(
    records: Sequence[FileRecord],
    embedder: Embedder,
    store: FeatureStore,
    *,
    shard_size: int,
    progress: Progress | None = None,
    attempts: int = 2,
    engine: Engine | None = None,
) -> Embedded:
    """Embed the ``records`` the store has no features for, and account for every one.

    A file written to while it was read is stored under the size and mtime it had when it
    was opened, which no longer match: it is stat'ed again and embedded again, up to
    ``attempts`` times; one still changing is rejected with that reason, one that vanished
    likewise. So every record ends up in ``found`` or ``rejected``. ``engine`` says where the
    shards are embedded (default: here, :class:`~imgclust.engines.local.LocalEngine`).
    """
    from .engines.local import LocalEngine

    runner: Engine = engine or LocalEngine()
    prog: Progress = progress or SilentProgress()
    current = list(records)
    result = Embedded(found={}, rejected=[])
    nodes = EmbedReport()
    for attempt in range(attempts + 1):
        lookup = store.lookup(current)
        if attempt == attempts or not lookup.todo:
            break
        if attempt == 0:
            # Its own stage: the first run converts (and for int8 calibrates) the model,
            # which would otherwise look like an embed bar stuck at 0.
            prog.start(runner.preparing)
            runner.prepare(embedder)
            prog.finish()
        prog.start("embed" if attempt == 0 else "re-embed", len(lookup.todo))
        done = runner.embed(
            lookup.todo, embedder, store, shard_size=shard_size, on_progress=prog.advance
        )
        result.n_embedded += done.n_embedded
        nodes.merge(done)
        prog.finish()
        after = store.lookup(current)
        stale = {r.path for r in after.todo}
        if not stale:
            lookup = after
            break
        result.n_changed += len(stale)
        current, vanished = _restat(current, stale)
        result.rejected += vanished
    runner.release()  # (the Ray engine's local instance stops while the run goes on)
    result.found = lookup.found
    result.rejected += lookup.rejected
    result.rejected += [
        Rejection(r.path, "the file kept changing while it was read; run again once it is whole")
        for r in lookup.todo
    ]
    if nodes.nodes:
        result.notes.append(nodes.node_summary())
    return result


def _restat(records: list[FileRecord], stale: set[str]) -> tuple[list[FileRecord], list[Rejection]]:
    """``records`` with fresh size and mtime for the ``stale`` paths; vanished ones rejected."""
    fresh: list[FileRecord] = []
    gone: list[Rejection] = []
    for rec in records:
        if rec.path not in stale:
            fresh.append(rec)
            continue
        try:
            fresh.append(stat_record(rec.path))  # (a URI's object too)
        except OSError as exc:
            gone.append(Rejection(rec.path, f"vanished during the run: {exc.strerror or exc}"))
    return fresh, gone


# -- clustering -----------------------------------------------------------------------------


@dataclass
class Fitted:
    """A fitted clustering, numbered by size (0 = the largest; ``-1``: unclustered)."""

    model: Clusterer
    labels: np.ndarray
    distances: np.ndarray
    ranks: np.ndarray
    fences: np.ndarray
    outliers: np.ndarray
    algorithm: str
    notes: list[str]
    #: The class statistics the names come from and each image's string columns (``taken``),
    #: where the clustering passes computed them over the shards (the Ray engine's k-means):
    #: the driver then reads no logits. ``None``: describing reads them from the store.
    stats: ClassStats | None = None
    strings: dict[str, np.ndarray] | None = None
    #: Each cluster's medoid (row index, by cluster id) and each image's near-duplicate
    #: group leader (``-1``: none), where the clustering passes found them a cluster at a
    #: time; ``None``: describing finds them in the matrix.
    medoids: np.ndarray | None = None
    duplicate_of: np.ndarray | None = None

    @property
    def n_clusters(self) -> int:
        """Clusters, not counting the unclustered images."""
        return len(self.fences)


def fit_clusters(
    features: np.ndarray,
    paths: Sequence[str],
    clusterer: Clusterer,
    *,
    algorithm: str,
    requested_k: int | None,
) -> Fitted:
    """Fit ``clusterer`` on ``features`` (a row per path) and derive what the report needs."""
    model = clusterer.fit(features)
    algorithm = getattr(model, "algorithm_", algorithm)  # what auto chose
    labels = relabel_by_size(model.labels_, paths)
    distances = np.asarray(model.distances_, dtype=np.float32)
    n_clusters = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
    fences = outlier_thresholds(labels, distances, n_clusters)
    outliers = np.zeros(len(labels), dtype=bool)
    if n_clusters:
        outliers = (labels >= 0) & (distances > fences[np.maximum(labels, 0)])  # noise: no
    notes = [
        *model.notes_,
        *k_notes(features, labels, algorithm=algorithm, requested_k=requested_k),
    ]
    return Fitted(
        model, labels, distances, rank_members(labels, distances), fences, outliers,
        algorithm, notes,
    )  # fmt: skip


def count_distinct_rows(x: Rows, chunk: int = 65536) -> int:
    """How many different rows ``x`` has, without sorting (or copying) the rows themselves:
    each row is projected on a random direction, in float64, a chunk at a time; equal rows
    give equal numbers and different rows, almost surely, different ones. (``np.unique(x,
    axis=0)`` would sort a copy of a million 1280-d rows.)"""
    x = x if hasattr(x, "shape") else np.asarray(x)  # (StoredRows: read a chunk at a time)
    if len(x) == 0:
        return 0
    direction = np.random.default_rng(0).standard_normal(x.shape[1])
    keys = np.concatenate(
        [x[i : i + chunk].astype(np.float64) @ direction for i in range(0, len(x), chunk)]
    )
    return len(np.unique(keys))


def k_notes(
    features: Rows, labels: np.ndarray, *, algorithm: str, requested_k: int | None
) -> list[str]:
    """Where the clusters differ from what was asked, in words for the summary."""
    n = len(labels)
    n_clusters = len(np.unique(labels[labels >= 0]))
    n_noise = int((labels < 0).sum())
    notes = []
    if algorithm == "hdbscan" and requested_k is not None:
        notes.append("k is not used by hdbscan: the data decides how many clusters there are")
    elif requested_k is not None and requested_k > n:
        notes.append(f"k lowered from {requested_k} to {n}: {plural(n, 'photo')}")
    elif requested_k is not None and n_clusters < requested_k:
        n_distinct = count_distinct_rows(features)
        why = (
            f"only {n_distinct} of the {n} photos differ in their features"
            if n_distinct < requested_k
            else f"{algorithm} found no more groups"
        )
        notes.append(f"{plural(n_clusters, 'cluster')}, not the {requested_k} asked for: {why}")
    if n_noise:
        notes.append(
            f"{plural(n_noise, 'photo')} in no dense group: listed as unclustered"
            + (
                ""
                if n_clusters
                else f" (hdbscan needs groups of {MIN_CLUSTER_SIZE} similar photos)"
            )
        )
    return notes
