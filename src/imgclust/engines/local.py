"""The local engine: decode worker processes feed the model in this process (today's path)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..config import EmbedConfig
from . import EmbedReport

if TYPE_CHECKING:
    from pathlib import Path

    from ..cluster import Clusterer
    from ..cluster.distributed import FeatureRows
    from ..embed import Embedder
    from ..scan import FileRecord
    from ..steps import Fitted
    from ..store import FeatureStore, Rows


class LocalEngine:
    """Embeds on this machine: :meth:`Embedder.iter_blocks` shard by shard, each written by
    :meth:`FeatureStore.write` as soon as it is full."""

    name = "local"
    preparing = "model"

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def place(self, embed: EmbedConfig) -> EmbedConfig:
        """Unchanged: the model runs here (on a device this machine has: checked now,
        before any work).

        Raises:
            ConfigError: ``embed.device`` is not one this machine has.
        """
        from ..embed import check_device

        check_device(embed.device)
        return embed

    def warm_up(self) -> None:
        """Nothing: the model is built by :meth:`prepare`, once it is known to be needed."""
        return None

    def prepare(self, embedder: Embedder) -> None:
        """Build the model now (a first run converts it, and for int8 calibrates it)."""
        embedder.load()

    def embed(
        self,
        records: Sequence[FileRecord],
        embedder: Embedder,
        store: FeatureStore,
        *,
        shard_size: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> EmbedReport:
        """Embed ``records`` here; a shard is stored as soon as it is full."""
        report = EmbedReport()
        start = time.perf_counter()
        for block in embedder.iter_blocks(records, shard_size, on_progress=on_progress):
            store.write(block, embedder.spec.n_classes, embedder.spec.embedding_dim)
            report.n_embedded += len(block.paths)
        report.seconds = time.perf_counter() - start
        return report

    def release(self) -> None:
        """Nothing to let go of: the decode workers end with each :meth:`embed`."""
        return None

    def clusters_in_passes(self, clusterer: Clusterer, kind: str) -> bool:
        """Never: the local engine clusters the matrix."""
        return False

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
        """:func:`imgclust.steps.fit_clusters`, here, on the matrix."""
        import numpy as np

        from ..steps import fit_clusters

        assert isinstance(features, np.ndarray)  # (loaded: never clustered in passes here)

        return fit_clusters(
            features, paths, clusterer, algorithm=algorithm, requested_k=requested_k
        )
