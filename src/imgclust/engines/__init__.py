"""Engines: where the shard callables run; what they compute is the same everywhere.

An engine embeds the records the store lacks, a shard at a time, and leaves each shard
committed in the feature store (Parquet file + done marker), so a killed job resumes and
:func:`imgclust.steps.embed_missing`'s re-check of changed files works the same on both:

* ``local`` (:class:`~.local.LocalEngine`, the default): this machine. Decode worker
  processes feed the model in this process (:meth:`Embedder.iter_blocks`); this process
  writes each shard. It imports nothing new: a local run is what it always was.
* ``ray`` (:class:`~.ray.RayEngine`, ``pip install 'imgclust[ray]'``): a Ray cluster, or a
  local Ray instance. Ray Data maps decode tasks over whole shards (hundreds of photos a
  task; the thumbnails are written there too) into long-lived model actors (one per GPU,
  else one per node), which write their shard into the store themselves; the driver only
  checks and indexes what they wrote, so no feature row passes through it.

Use :func:`create_engine` with an :class:`~imgclust.config.EmbedConfig`; an engine is a
context manager (the Ray engine starts or joins Ray when first needed, and leaves it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..config import ENGINES, EmbedConfig
from ..exceptions import ImgclustError

if TYPE_CHECKING:
    from pathlib import Path

    from ..cluster import Clusterer
    from ..cluster.distributed import FeatureRows
    from ..embed import Embedder
    from ..scan import FileRecord
    from ..steps import Fitted
    from ..store import FeatureStore, Rows

__all__ = [
    "ENGINES",
    "EmbedReport",
    "Engine",
    "EngineError",
    "NodeStats",
    "create_engine",
]


class EngineError(ImgclustError):
    """A distributed job failed or its cluster cannot be reached; what it finished is kept."""


@dataclass
class NodeStats:
    """What one machine of a job did: photos embedded by its model actor(s)."""

    node: str
    n_embedded: int = 0
    n_shards: int = 0


@dataclass
class EmbedReport:
    """What :meth:`Engine.embed` did.

    Attributes:
        n_embedded: images embedded (rows written to the store).
        seconds: wall time of the embedding, start-up included.
        nodes: per machine (Ray engine only; empty for the local engine).
    """

    n_embedded: int = 0
    seconds: float = 0.0
    nodes: dict[str, NodeStats] = field(default_factory=dict)

    def merge(self, other: EmbedReport) -> None:
        """Add ``other`` (a later pass of the same command) to this report."""
        self.n_embedded += other.n_embedded
        self.seconds += other.seconds
        for name, stats in other.nodes.items():
            mine = self.nodes.setdefault(name, NodeStats(name))
            mine.n_embedded += stats.n_embedded
            mine.n_shards += stats.n_shards

    def node_summary(self) -> str:
        """``"2 nodes: node a1b2c3 (10.0.0.5): 70 photos, 12.1 img/s; ..."``, or ``""``."""
        if not self.nodes:
            return ""
        from ..steps import plural

        wall = max(self.seconds, 1e-9)
        parts = [
            f"node {s.node}: {plural(s.n_embedded, 'photo')}, {s.n_embedded / wall:.1f} img/s"
            for s in sorted(self.nodes.values(), key=lambda s: -s.n_embedded)
        ]
        total = sum(s.n_embedded for s in self.nodes.values())
        return (
            f"ray engine: {plural(total, 'photo')} in {self.seconds:.1f} s "
            f"({total / wall:.1f} img/s) "
            f"on {len(self.nodes)} node{'s' if len(self.nodes) != 1 else ''}; " + "; ".join(parts)
        )


class Engine(Protocol):
    """Where shards are embedded. A context manager; :meth:`embed` may be called often."""

    name: str
    #: What :meth:`prepare` is shown as by a progress display ("model": it builds the model).
    preparing: str

    def __enter__(self) -> Engine: ...

    def __exit__(self, exc_type: object, *exc: object) -> None: ...

    def place(self, embed: EmbedConfig) -> EmbedConfig:
        """``embed`` as this engine's model workers will run it (``device="auto"`` becomes
        the device they have), so the model's precision, and with it the store folder, is
        chosen for where the model runs rather than for this process."""
        ...

    def warm_up(self) -> None:
        """Begin, in the background, the start :meth:`prepare` would wait for (the Ray
        engine's local instance), for a caller that expects to embed: it then overlaps what
        the caller does first (the scan). Never needed: :meth:`prepare` starts what is not."""
        ...

    def prepare(self, embedder: Embedder) -> None:
        """Get ready to embed (build the model here, or reach the cluster): the slow start
        a progress display shows as its own stage."""
        ...

    def embed(
        self,
        records: Sequence[FileRecord],
        embedder: Embedder,
        store: FeatureStore,
        *,
        shard_size: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> EmbedReport:
        """Embed ``records`` (none of them stored) into new shards of ``store`` of at most
        ``shard_size`` records each, and index them in ``store``."""
        ...

    def release(self) -> None:
        """Embedding is over for this command: let go of what only embedding needed (the
        Ray engine stops a local instance it started, in the background)."""
        ...

    def clusters_in_passes(self, clusterer: Clusterer, kind: str) -> bool:
        """Whether :meth:`fit_clusters` would cluster ``kind`` features with ``clusterer`` as
        passes over the stored shards: the caller then need not load the matrix (rows are
        read from the store where a later stage needs some, :class:`~imgclust.store.StoredRows`)."""
        ...

    def fit_clusters(
        self,
        features: Rows,
        paths: Sequence[str],
        clusterer: Clusterer,
        *,
        algorithm: str,
        requested_k: int | None,
        rows: FeatureRows,
        work_dir: Path,
        dup_threshold: float,
    ) -> Fitted:
        """:func:`imgclust.steps.fit_clusters` on ``features`` (a row per path, as stored
        in ``rows``; :class:`~imgclust.store.StoredRows` where :meth:`clusters_in_passes`),
        or the same clustering as passes over the stored shards where this engine has them
        (scratch files in ``work_dir``, removed after); the passes then also find the
        medoids and the near-duplicates (``dup_threshold``:
        :func:`~imgclust.neardup.near_duplicates`), in :attr:`Fitted.medoids` and
        :attr:`Fitted.duplicate_of`."""
        ...


def create_engine(embed: EmbedConfig) -> Engine:
    """The engine ``embed.engine`` names (``ray`` is imported only here, only when asked)."""
    if embed.engine == "ray":
        from .ray import RayEngine

        return RayEngine(embed.ray_address)
    from .local import LocalEngine

    return LocalEngine()
