"""The Ray engine: the same shards, decoded and embedded across a Ray cluster (Ray Data).

The job is Ray Data's batch-inference shape over the store's shards::

    from_items(one row per shard: its number and records)
      → map_batches(DecodeShard)       CPU tasks, one shard (hundreds of photos) each: the
                                       model inputs, and each photo's gallery thumbnail
      → map_batches(EmbedShard)        long-lived actors holding the model (one per GPU with
                                       num_gpus=1, else one per node on OpenVINO/int8); each
                                       writes its shard (Parquet + marker) into the store
      → the driver                     checks and indexes each shard as it lands

Only a shard's number and records go out and a few counts come back: no pixel or feature
row passes through the driver. The inputs and the store must be on storage every node sees.
Ray retries the tasks of a node that dies and restarts its actors elsewhere; a shard that
was in flight is decoded and written again under the same number (the write is atomic), so
a lost node costs its unfinished shards, never a photo. A job killed outright leaves every
finished shard committed: the next run embeds only the rest.

Ray is imported here only, when an engine first needs it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cluster.distributed import data_settings
from ..config import EmbedConfig
from ..decode import Decoded, decode
from ..embed import STORE_DTYPE, FeatureBlock
from ..exceptions import ConfigError, ImgclustError
from ..scan import FileRecord
from ..workers import DecodePool
from . import EmbedReport, EngineError, NodeStats
from .native_log import native_lines_filtered

if TYPE_CHECKING:
    from ..cluster import Clusterer
    from ..cluster.distributed import FeatureRows
    from ..embed import Embedder
    from ..steps import Fitted
    from ..store import FeatureStore, Rows, ShardWriter

logger = logging.getLogger(__name__)

#: Photos a shard holds at most under this engine (fewer if --shard-size says so). A shard
#: is one decode task and one model call: enough photos to amortise a task's start and the
#: drained model batch each shard boundary costs (512 ran 8% faster than 256 on 3,000
#: photos, bench/results/ray-scale.md), few enough that the model starts while the first
#: shards decode and that a shard's pixels (~80 MB) move easily.
BLOCK_PHOTOS = 512
#: The variable Ray reads a cluster's authentication token from (Ray >= 2.59).
_TOKEN = "RAY_AUTH_TOKEN"
#: Memory a decode task asks for per photo: its model input and a copy on the way out.
DECODE_BYTES_PER_PHOTO = 2 * 260 * 260 * 3


def import_ray() -> Any:
    """``ray``, or a :class:`ConfigError` that says how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ConfigError(
            f"--engine ray needs Ray ({exc}); install it with: pip install 'imgclust[ray]'"
        ) from exc
    return ray


class RayEngine:
    """Embeds on a Ray cluster (``address`` ``HOST:PORT``) or, without one, on a local Ray
    instance started for the command (no dashboard; workers' logs stay in Ray's session
    folder under the temp folder; nothing is written to the home folder).

    A process already connected to Ray (a notebook, a test) is used as it is, and left so.
    """

    name = "ray"
    preparing = "ray"  # (joining or starting Ray: the model loads in the actors)

    def __init__(self, address: str | None = None) -> None:
        self.address = address
        self._ray: Any = None
        self._started = False  # this engine joined a cluster and leaves it at close()
        self._token: str | None = None
        self._local: _LocalRay | None = None  # the local instance this engine runs
        self._released = False

    def __enter__(self) -> RayEngine:
        """Nothing starts yet: Ray is started (or joined) by :meth:`warm_up` or when first
        needed, so a command that finds every photo stored never starts it."""
        return self

    def warm_up(self) -> None:
        """Start the local instance now, in the background, when one will be used: Ray's
        start (~3-6 s) then overlaps what the command does before it embeds. A cluster is
        joined when first needed (:meth:`connect`)."""
        if self._local is None and self._ray is None and self._local_only():
            self._start_local()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        # Ray's logs are kept where Ray may be why the command failed: not for a user's
        # error that imgclust said in words (other than Ray's own).
        # (nor for a stop the user asked for: Ctrl-C, or a SIGTERM that cli.py raises as one)
        keep = isinstance(exc_type, type) and (
            issubclass(exc_type, EngineError)
            or not issubclass(exc_type, (ImgclustError, KeyboardInterrupt, SystemExit))
        )
        self.close(keep_logs=keep)

    def close(self, *, keep_logs: bool = False) -> None:
        """Leave Ray if this engine joined or started it (and wait for a local instance to
        stop). A local instance's folder (its sockets and logs) is removed, unless
        ``keep_logs`` (the command failed: :attr:`log_folder` says where they are)."""
        if self._local is not None:
            self._local.stop(wait=True, keep=keep_logs)
        elif self._started and self._ray is not None:
            self._ray.shutdown()
        if self._token is not None and os.environ.get(_TOKEN) == self._token:
            del os.environ[_TOKEN]
        self._started, self._ray, self._token, self._local = False, None, None, None

    def _own_token(self) -> None:
        """A local instance's token in this process's environment (its raylets and workers
        inherit it), where Ray would otherwise write one to ``~/.ray/auth_token``."""
        if not ({_TOKEN, f"{_TOKEN}_PATH"} & set(os.environ)):
            import secrets

            self._token = os.environ[_TOKEN] = secrets.token_hex(32)

    @property
    def log_folder(self) -> Path | None:
        """Where the local instance this engine runs keeps its logs (None: none runs, or
        the user's ``RAY_TMPDIR`` holds them, in Ray's own layout)."""
        root = None if self._local is None else self._local.temp_root
        return None if root is None else root / "session_latest" / "logs"

    def _start_local(self) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: never phone home
        self._own_token()
        self._local = _LocalRay()

    def connect(self) -> Any:
        """Join (or start) Ray once; returns the ``ray`` module.

        Raises:
            ConfigError: Ray is not installed.
            EngineError: the cluster cannot be reached, or a local instance not started.
        """
        if self._ray is not None:
            return self._ray
        if self._released and self._local is not None:  # needed again after release()
            self._local.stop(wait=True)
            self._local = None
        self._released = False
        if self._local is None and self._local_only():
            self._start_local()
        with _sigterm_kept():
            ray = self._join()
        _quiet_ray_data()
        self._ray = ray
        return ray

    def _join(self) -> Any:
        if self._local is not None:
            ray = self._local.wait()
        else:
            ray = import_ray()
            if not ray.is_initialized():
                if self.address is not None:
                    _check_reachable(self.address)
                # A cluster's workers were started without this process's environment:
                # where URI inputs live goes with the job (never a secret: the nodes' own
                # credentials or roles read the storage).
                _init(ray, self.address or "local", runtime_env=_storage_env())
                self._started = True
        return ray

    def place(self, embed: EmbedConfig) -> EmbedConfig:
        """``device="auto"``: ``cuda`` when the cluster has GPUs, else ``cpu``. A local
        instance's are this machine's: Ray is not started for that (nor at all by a run
        that finds every photo stored)."""
        if embed.device != "auto":
            if self._local_only():  # (this machine's devices: refused now, as locally)
                from ..embed import check_device

                check_device(embed.device)
            return embed
        if self._local_only():
            from ..embed import resolve_device

            return replace(embed, device=resolve_device("auto"))
        ray = self.connect()
        return replace(embed, device="cuda" if ray.cluster_resources().get("GPU", 0) else "cpu")

    def _local_only(self) -> bool:
        """Whether Ray, when needed, is a local instance on this machine alone: no address,
        and nothing else in this process had joined Ray."""
        if self.address is not None:
            return False
        if self._local is not None or self._released:
            return True
        if self._ray is not None:
            return False  # (a Ray this process had joined before: a notebook's cluster)
        ray = sys.modules.get("ray")
        return ray is None or not ray.is_initialized()

    def prepare(self, embedder: Embedder) -> None:
        """Reach (or start) Ray; the model is built in the actors, not here."""
        self.connect()

    def embed(
        self,
        records: Sequence[FileRecord],
        embedder: Embedder,
        store: FeatureStore,
        *,
        shard_size: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> EmbedReport:
        """Embed ``records`` on the cluster, ``min(shard_size, BLOCK_PHOTOS)`` a shard.

        Raises:
            EngineError: the job failed beyond Ray's retries (the shards it finished stay
                stored) or Ray cannot be reached.
            StoreError: a worker could not write the store.
        """
        report = EmbedReport()
        if not records:
            return report
        ray = self.connect()
        start = time.perf_counter()
        groups = _split(records, max(1, min(shard_size, BLOCK_PHOTOS)))
        numbers = store.reserve(len(groups))
        rows = [
            {"shard": n, "records": _records_json(g)} for n, g in zip(numbers, groups, strict=True)
        ]
        pending = set(numbers)
        # Ray Data's own progress bars would draw over ours (which counts the shards). Its
        # downstream-capacity backpressure counts bytes: one decoded shard (~80 MB) waiting
        # for the model reads as a queue, and it held decoding to one task while the model
        # went idle between shards (bench/results/ray-scale.md); the memory each decode task
        # asks for already bounds what waits.
        settings = data_settings(
            ray,
            enable_progress_bars=False,
            verbose_stats_logs=False,
            downstream_capacity_backpressure_ratio=None,
        )
        try:
            with settings, _cluster_autoscaler(), native_lines_filtered():
                results = self._job(ray, rows, embedder, store.writer()).iter_rows()
                for result in results:
                    self._adopt(result, store, pending, report, on_progress)
        except ImgclustError:
            raise
        except Exception as exc:
            cause = _imgclust_cause(exc)
            if cause is not None:
                raise cause from exc
            done = len(numbers) - len(pending)
            logs = "" if self.log_folder is None else f" (Ray's logs: {self.log_folder})"
            raise EngineError(
                f"the Ray job failed ({type(exc).__name__}: {_first_line(exc)}); the "
                f"{done} of {len(numbers)} shards it finished are stored: run again to "
                f"embed the rest{logs}"
            ) from exc
        report.seconds = time.perf_counter() - start
        return report

    @staticmethod
    def _adopt(
        result: dict[str, Any],
        store: FeatureStore,
        pending: set[int],
        report: EmbedReport,
        on_progress: Callable[[int], None] | None,
    ) -> None:
        """Check and index one shard an actor reported written."""
        shard = int(result["shard"])
        if shard not in pending:
            return  # (a retried shard reported twice)
        pending.discard(shard)
        if not store.adopt(shard):
            return  # damaged on the way: set aside, its photos stay todo
        node = report.nodes.setdefault(result["node"], NodeStats(result["node"]))
        node.n_embedded += int(result["n_embedded"])
        node.n_shards += 1
        report.n_embedded += int(result["n_embedded"])
        if on_progress is not None:
            on_progress(int(result["n_records"]))

    def release(self) -> None:
        """Embedding is over: the local instance this engine runs stops now, in the
        background, while this process clusters and writes the report (its ~1.3 s stop,
        and its idle processes, then cost the run nothing). A cluster it joined stays
        joined (its k-means passes may still use it) until :meth:`close`.

        A local instance still starting (a run with nothing to embed) is waited for first:
        ``ray.init`` beside the clustering's threaded linear algebra hung the process for
        good in most such runs (spinning, deaf to Ctrl-C)."""
        if self._local is None:
            return
        self._local.settle()
        self._local.stop(wait=False)
        self._ray, self._released = None, True

    def clusters_in_passes(self, clusterer: Clusterer, kind: str) -> bool:
        """Plain k-means with a given k on a cluster of several nodes (see
        :meth:`fit_clusters`); it joins (or starts) Ray to count the nodes."""
        from ..cluster import KMeans
        from ..cluster.distributed import DISTRIBUTED_KINDS

        if type(clusterer) is not KMeans or kind not in DISTRIBUTED_KINDS:
            return False
        return not self._local_only() and _n_nodes(self.connect()) >= 2

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
        """On a cluster of several nodes, k-means with a given k runs as passes over the
        stored shards (:mod:`imgclust.cluster.distributed`: the same labels, ranks,
        distances, fences, medoids and near-duplicates as the local path). Every other
        clusterer, and k-means on a single machine (where faiss here already uses every
        core, and the passes would only add Ray's job start-ups, ~5 s), runs here on the
        matrix."""
        from ..cluster import KMeans
        from ..cluster.distributed import fit_kmeans, read_assignments
        from ..describe import ClassStats
        from ..steps import Fitted, fit_clusters, k_notes
        from ..store import STRING_COLUMNS

        # Rows left in the store (clusters_in_passes said so when they were loaded) are
        # clustered in passes even if nodes have left since: only a matrix can be fitted here.
        if isinstance(features, np.ndarray) and not self.clusters_in_passes(clusterer, rows.kind):
            return fit_clusters(
                features, paths, clusterer, algorithm=algorithm, requested_k=requested_k
            )
        k, seed = int(clusterer.n_clusters or 1), clusterer.random_state
        try:
            result = fit_kmeans(
                self.connect(), rows.source(paths), k=k, seed=seed, work_dir=work_dir,
                duplicates=dup_threshold,
            )  # fmt: skip
            got = read_assignments(result, paths)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        model = KMeans(len(result.raw_centroids), random_state=seed)
        model.n_clusters_ = len(result.raw_centroids)
        model.cluster_centers_ = result.raw_centroids
        model.labels_ = got["raw_labels"]
        model.distances_ = got["distances"]
        model.inertia_ = float((got["distances"].astype(np.float64) ** 2).sum())
        labels = got["labels"]
        if (labels < 0).any():  # (every clustered path is in the passes' files)
            raise EngineError(
                f"the clustering passes left {int((labels < 0).sum())} photos without a "
                "cluster; run again"
            )
        notes = k_notes(features, labels, algorithm="kmeans", requested_k=requested_k)
        # The names' statistics, as the passes summed them where the shards are (row c:
        # cluster c), and each image's top classes and date, from the passes' files.
        scores = {int(c): result.cluster_scores[c] for c in np.unique(labels)}
        return Fitted(
            model, labels, got["distances"], got["ranks"], result.fences, got["outliers"],
            "kmeans", notes, stats=ClassStats(scores, got["top_ids"], got["top_scores"]),
            strings={name: got[name] for name in STRING_COLUMNS},
            medoids=got.get("medoids"), duplicate_of=got.get("duplicate_of"),
        )  # fmt: skip

    def _job(
        self, ray: Any, rows: list[dict[str, Any]], embedder: Embedder, writer: ShardWriter
    ) -> Any:
        """The Ray Data pipeline over ``rows`` (one per shard); lazy until iterated."""
        resources = ray.cluster_resources()
        n_gpus = int(resources.get("GPU", 0))
        on_gpu = n_gpus > 0 and str(embedder.device).startswith(("cuda", "auto"))
        n_actors = max(1, min(len(rows), n_gpus if on_gpu else _n_nodes(ray)))
        cpus = cpu_share(_node_cpus(ray))
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map_batches(
            # Beside a model on the CPU (which takes every core it is given, as locally),
            # two decode processes a core, as the local engine's decode workers share them:
            # one task a core with two, not two tasks with one each. Each task's Ray worker
            # costs its imports (Ray Data, pyarrow, pandas) and per-task threads: 3,000
            # photos on 2 cores, 0.94x the wall time (bench/results/ray-scale.md).
            DecodeShard(embedder, processes=1 if on_gpu else 2),
            batch_size=1,  # a shard per call: its records are one task
            batch_format="numpy",
            num_cpus=cpus,
            # Its pixels, asked for as a resource: what also keeps Ray Data from fusing the
            # decoding into the model actors (where it would run between the batches).
            memory=DECODE_BYTES_PER_PHOTO * BLOCK_PHOTOS,
        )
        return ds.map_batches(
            EmbedShard,
            fn_constructor_args=(embedder, writer),
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n_actors),
            num_cpus=cpus,
            num_gpus=1 if on_gpu else 0,
        )


def cpu_share(node_cpus: Sequence[float]) -> float:
    """The CPUs each model actor and each decode task asks for: one, where every node with
    CPUs (``node_cpus``) has room for an actor and a decode task beside it; else half the
    smallest node's (a node of one CPU would otherwise hang the job: its actor holding the
    only CPU, no decode task could start there, nor anywhere on a cluster of such nodes).
    No CPU yet (an autoscaler to add nodes): one."""
    smallest = min((c for c in node_cpus if c > 0), default=2.0)
    if smallest >= 2:
        return 1.0
    return max(math.floor(smallest / 2 * 10_000) / 10_000, 0.0001)


class DecodeShard:
    """One shard's records → their model inputs (a Ray task; picklable, no model).

    Each file has the run's deadline (``--decode-timeout``): decoding runs in
    :class:`~imgclust.workers.DecodePool` workers beside the task (``processes`` of them),
    so a file that hangs or crashes its decoder costs that file, never the task.
    """

    def __init__(self, embedder: Embedder, *, processes: int = 1) -> None:
        self.processes = processes  # decode processes beside the task
        self.decode_fn = functools.partial(
            decode,
            preprocess=embedder.spec.preprocess,
            max_pixels=embedder.max_pixels,
            thumb=embedder.thumbnails,
        )
        self.timeout = embedder.decode_timeout
        self.pooled = embedder.workers > 0
        self.size = embedder.spec.preprocess.input_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{"shard", "records"}`` (one row) → the row with ``pixels`` and ``decoded``."""
        records = json.loads(str(batch["records"][0]))
        paths = [r[0] for r in records]
        outs = list(self._decode(paths))
        good = [out.array for out in outs if out.array is not None]
        size = self.size
        pixels = np.stack(good) if good else np.zeros((0, size, size, 3), dtype=np.uint8)
        decoded = [
            [out.size, out.mtime_ns, out.reason if out.array is None else None, out.taken]
            for out in outs
        ]
        return {
            "shard": batch["shard"],
            "records": batch["records"],
            "decoded": np.array([json.dumps(decoded)]),
            "pixels": pixels[None],
        }

    def _decode(self, paths: list[str]) -> Iterator[Decoded]:
        if not self.pooled:
            yield from map(self.decode_fn, paths)
            return
        with DecodePool(self.decode_fn, workers=self.processes, timeout=self.timeout) as pool:
            for _, out in pool.imap(paths, prefetch=16):
                yield out


class EmbedShard:
    """The model, in a long-lived Ray actor: a decoded shard → its features, written into
    the store as that shard, and a few counts for the driver."""

    def __init__(self, embedder: Embedder, writer: ShardWriter) -> None:
        import ray

        self.embedder = embedder
        self.model = embedder.load()  # once per actor: convert/compile (cached), warm
        self.writer = writer
        self.node = _node_name(ray)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Embed one decoded shard and commit it."""
        shard = int(batch["shard"][0])
        records = json.loads(str(batch["records"][0]))
        decoded = json.loads(str(batch["decoded"][0]))
        pixels = np.asarray(batch["pixels"][0], dtype=np.uint8)
        block = FeatureBlock()
        bs = self.embedder.batch_size
        jobs = ((i, pixels[i : i + bs]) for i in range(0, len(pixels), bs))
        for _, outputs in self.model.map(jobs):
            assert outputs is not None
            logits, emb = outputs
            block.logits.append(logits.astype(STORE_DTYPE))
            block.embeddings.append(emb.astype(STORE_DTYPE))
        for (path, size, mtime), (got_size, got_mtime, reason, taken) in zip(
            records, decoded, strict=True
        ):
            if reason is None:
                block.paths.append(path)
                block.sizes.append(int(got_size))
                block.mtimes.append(int(got_mtime))
                block.taken.append(str(taken))
            else:
                block.rejected.append((FileRecord(path, int(size), int(mtime)), str(reason)))
        spec = self.embedder.spec
        self.writer.write(shard, block, spec.n_classes, spec.embedding_dim)
        return {
            "shard": np.array([shard]),
            "n_records": np.array([len(records)]),
            "n_embedded": np.array([len(block.paths)]),
            "node": np.array([self.node]),
        }


#: The variable Ray Data (2.60) reads the cluster autoscaler of an execution from.
_AUTOSCALER = "RAY_DATA_CLUSTER_AUTOSCALER"


@contextlib.contextmanager
def _cluster_autoscaler() -> Iterator[None]:
    """Ray Data's ``V2`` cluster autoscaler for the embed job, unless the user chose one.

    An execution may use only what its cluster autoscaler has reserved for it. The default
    ("RATE_BASED", Ray 2.60) reserves what it estimates the measured rates need: on a
    2-CPU node it asked for ``{CPU: 0.5} x 1`` for decoding beside the model's
    ``{CPU: 1}``, which left one decode task running and the model waiting for seconds at
    a time, on a fixed cluster where nothing could scale (ray-data.log: "Sending resource
    request", and the decode operator "alloc=0.5 CPU"; bench/results/ray-scale.md). ``V2``
    reserves what is there.
    """
    if _AUTOSCALER in os.environ:
        yield
        return
    os.environ[_AUTOSCALER] = "V2"
    try:
        yield
    finally:
        os.environ.pop(_AUTOSCALER, None)


#: Seconds to wait for a cluster's address to answer at all.
REACH_TIMEOUT_S = 5.0


def _check_reachable(address: str) -> None:
    """An address (``HOST:PORT``, or ``ray://HOST:PORT``) where nothing answers, said at once:
    Ray's own client retries for minutes, printing warnings. Other forms (``auto``) are
    left to Ray.

    Raises:
        EngineError: nothing accepts a connection there.
    """
    check = (
        "check --ray-address (HOST:PORT of its head's GCS, e.g. 10.0.0.5:6379) and that the "
        "cluster is up, or leave it out for a local Ray instance"
    )
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or (not port.isdigit() and not host):
        return  # ("auto", a bare name: Ray's to judge)
    if "://" in target or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EngineError(f"--ray-address {address!r} is not HOST:PORT; {check}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S) as s:
            answer = _first_bytes(s)
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise EngineError(f"cannot reach the Ray cluster at {address} ({why}); {check}") from exc
    if answer.startswith(b"HTTP/"):  # (a GCS speaks gRPC: HTTP/2 frames, never HTTP/1)
        raise EngineError(
            f"{address} answers as a web server, not as a Ray cluster's GCS (the dashboard's "
            f"port, 8265 by default, is not the cluster's address); {check}"
        )
    # Anything else that is no HTTP/2 frame (an SSH banner, silence) is another service:
    # Ray's client would retry it without end. (With TLS the GCS waits for the client.)
    tls = os.environ.get("RAY_USE_TLS", "").strip().lower() in ("1", "true", "yes")
    if not tls and not _is_http2_frame(answer):
        said = f"it said {answer[:16]!r}" if answer else "it said nothing"
        raise EngineError(
            f"{address} accepts connections but does not answer as a Ray cluster's GCS "
            f"({said}; a GCS greets with gRPC's HTTP/2 settings); {check}"
        )


def _is_http2_frame(data: bytes) -> bool:
    """Whether ``data`` starts as an HTTP/2 connection-level frame does: SETTINGS (what a
    gRPC server sends first) or GOAWAY (its answer to a plain request), on stream 0."""
    return len(data) >= 9 and data[3] in (0x4, 0x7) and data[5:9] == b"\0\0\0\0"


def _first_bytes(sock: socket.socket) -> bytes:
    """What a server says first: a gRPC server (a GCS) its HTTP/2 settings, unasked; one that
    waits for a request (HTTP/1) its answer to a plain ``GET``; ``b""`` if neither comes."""
    sock.settimeout(2.0)
    with contextlib.suppress(OSError):
        return sock.recv(16) or b""
    with contextlib.suppress(OSError):
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return sock.recv(16) or b""
    return b""


def _init(
    ray: Any,
    where: str,
    *,
    runtime_env: dict[str, Any] | None = None,
    temp_dir: Path | None = None,
) -> None:
    """``ray.init`` as imgclust starts or joins Ray.

    Raises:
        EngineError: it cannot be reached or started.
    """
    try:
        ray.init(
            address=where,
            runtime_env=runtime_env,
            include_dashboard=False,
            log_to_driver=False,  # workers' output stays in the session's log files
            logging_level=logging.ERROR,  # its start-up notes: in its log
            **({} if temp_dir is None else {"_temp_dir": str(temp_dir)}),
        )
    except Exception as exc:
        if _token_refused(exc):
            said = getattr(exc, "message", None) or str(exc).splitlines()[0]
            raise EngineError(
                f"the Ray cluster at {where} did not accept this process's authentication "
                f"token ({said}); set {_TOKEN} (or {_TOKEN}_PATH) to the cluster's own token"
            ) from exc
        if not isinstance(exc, (ConnectionError, RuntimeError, ValueError)):
            raise
        raise EngineError(
            f"cannot reach the Ray cluster at {where} ({exc}); check --ray-address "
            "(HOST:PORT of its head's GCS), or leave it out for a local Ray instance"
        ) from exc


def _token_refused(exc: BaseException) -> bool:
    """Whether ``ray.init`` failed on the cluster's token authentication (Ray >= 2.59): no
    token here, or not the cluster's."""
    if type(exc).__name__ == "AuthenticationError":
        return True
    return bool(re.search(r"unauthenticated|authentication token|invalid token", str(exc), re.I))


@contextlib.contextmanager
def _sigterm_kept() -> Iterator[None]:
    """SIGTERM's handler as it was before Ray started or was joined: Ray's C++ core (in
    whichever thread) installs one that prints a stack dump and dies, and ``ray.init`` in
    the main thread one that exits at once; the command's own (a clean stop, as Ctrl-C's)
    is what should run. (Only the main thread may set it.)"""
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and before is not None:
            signal.signal(signal.SIGTERM, before)


class _LocalRay:
    """A local Ray instance, started (import included) and stopped by one thread that lives
    as long as the instance: Ray ties the processes it starts to the thread that started
    them (``PR_SET_PDEATHSIG``), so a starter thread that ended would take them with it."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._keep = False
        # Its own folder for sockets and logs, removed after a clean stop: not Ray's shared
        # /tmp/ray, where every run would leave a session folder behind (and two runs at once
        # race for its session_latest). Under /tmp, as Ray's: a socket path has ~104 bytes.
        # A user's RAY_TMPDIR is left to Ray.
        self.temp_root: Path | None = None
        if "RAY_TMPDIR" not in os.environ:
            base = "/tmp" if os.name == "posix" and os.path.isdir("/tmp") else None
            self.temp_root = Path(tempfile.mkdtemp(prefix="imgclust-ray-", dir=base))
        self._ray: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._host, name="imgclust-ray", daemon=True)
        self._thread.start()

    def _host(self) -> None:
        try:
            ray = import_ray()
            _init(ray, "local", temp_dir=self.temp_root)
            self._ray = ray
        except BaseException as exc:  # raised in the caller, by wait()
            self._error = exc
            if self.temp_root is not None:  # (kept where Ray began and left its logs)
                with contextlib.suppress(OSError):
                    self.temp_root.rmdir()
            return
        finally:
            self._ready.set()
        self._stop.wait()
        ray.shutdown()
        if self.temp_root is not None and not self._keep:
            _remove_tree(self.temp_root)

    def settle(self) -> None:
        """Wait until it has started, or failed to (which :meth:`wait` would raise)."""
        self._ready.wait()

    def wait(self) -> Any:
        """The started ``ray`` module, or what stopped it from starting, raised."""
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self._ray

    def stop(self, *, wait: bool, keep: bool = False) -> None:
        """Shut the instance down (``wait``: until it is); ``keep``: its folder too."""
        self._keep = self._keep or keep
        self._stop.set()
        if wait:
            self._thread.join()


def _remove_tree(folder: Path, *, patience: float = 3.0) -> None:
    """Remove ``folder``, again for up to ``patience`` seconds while it is not gone: a Ray
    process still exiting after ``ray.shutdown()`` may write into it meanwhile."""
    deadline = time.monotonic() + patience
    while True:
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists() or time.monotonic() > deadline:
            return
        time.sleep(0.1)


#: Environment variables that say where S3/GCS storage is (imgclust.uri); forwarded to a
#: cluster's workers. Credentials are not among them.
STORAGE_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION",
                     "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED", "AWS_PROFILE")  # fmt: skip


def _storage_env() -> dict[str, Any] | None:
    """A runtime environment with this process's :data:`STORAGE_VARIABLES`, if any is set."""
    found = {k: os.environ[k] for k in STORAGE_VARIABLES if k in os.environ}
    return {"env_vars": found} if found else None


def shard_sizes(n: int, per_shard: int) -> list[int]:
    """How :meth:`RayEngine.embed` splits ``n`` records: shards of ``per_shard``, the first
    ones smaller (a quarter, then a half) so the model starts while the rest decode, and the
    last ones too (what is left after the whole shards, cut in two or three equal parts), so
    the model's work after the last decoding is short."""
    ramp = [max(1, per_shard // 4), max(1, per_shard // 2)]
    sizes: list[int] = []
    left = n
    while left > 0:
        size = min(ramp[len(sizes)] if len(sizes) < len(ramp) else per_shard, left)
        sizes.append(size)
        left -= size
    extra = len(sizes) - len(ramp)
    if extra > 0:  # the last (up to) two shards' photos, cut in two or three equal parts
        tail = sum(sizes[-min(2, extra) :])
        del sizes[-min(2, extra) :]
        parts = min(tail, 3 if tail > per_shard else 2)
        sizes += [tail // parts + (i < tail % parts) for i in range(parts)]
    return sizes


def _split(records: Sequence[FileRecord], per_shard: int) -> list[Sequence[FileRecord]]:
    """``records`` cut as :func:`shard_sizes` says."""
    groups: list[Sequence[FileRecord]] = []
    start = 0
    for size in shard_sizes(len(records), per_shard):
        groups.append(records[start : start + size])
        start += size
    return groups


def _n_nodes(ray: Any) -> int:
    """Live nodes with CPUs."""
    return len(_node_cpus(ray))


def _node_cpus(ray: Any) -> list[float]:
    """The CPUs of each live node that has some."""
    cpus = [float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    return [c for c in cpus if c > 0]


def _records_json(records: Sequence[FileRecord]) -> str:
    # JSON keeps undecodable file-name bytes (surrogate escapes) exactly, as \\udcXX.
    return json.dumps([[r.path, r.size, r.mtime_ns] for r in records], ensure_ascii=True)


def _node_name(ray: Any) -> str:
    """``10.0.0.5/a1b2c3``: the node's address and the start of its id (two raylets on one
    machine share the address)."""
    ctx = ray.get_runtime_context()
    return f"{ray.util.get_node_ip_address()}/{ctx.get_node_id()[:6]}"


def _imgclust_cause(exc: BaseException) -> ImgclustError | None:
    """The imgclust error a Ray task raised (Ray wraps it), if that is what failed."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ImgclustError):
            return current
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else current.__cause__
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


def _quiet_ray_data() -> None:
    """Ray Data logs every job's plan and stats to the console at INFO, into our progress
    bars: keep those in its log file (``ray-data.log`` in the session folder) only."""
    with contextlib.suppress(Exception):
        for handler in logging.getLogger("ray.data").handlers:
            if (
                not isinstance(handler, logging.FileHandler)
                and "File" not in type(handler).__name__
            ):
                handler.setLevel(logging.ERROR)
