"""Embed: image records → ImageNet class logits and pooled embeddings, batched.

Decoding runs in worker processes (:class:`~imgclust.workers.DecodePool`, which gives every
file a deadline), the model in this process.
:class:`Embedder` is picklable and builds its model lazily, in whichever process first calls
it, so a distributed runner can ship it to workers and map it over shards.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import EmbedConfig
from .decode import DEFAULT_MAX_PIXELS, Decoded, ThumbTarget, decode
from .exceptions import ConfigError
from .models import get_spec, split_precision, with_precision
from .models.runtime import Runtime, create_runtime, resolve_runtime
from .models.spec import ModelSpec
from .scan import FileRecord
from .workers import DEFAULT_DECODE_TIMEOUT, DecodePool

#: Features are stored as float16: half the disk and memory, and clusters do not change.
STORE_DTYPE = np.float16


@dataclass
class FeatureBlock:
    """Features of consecutive records: one row per decoded image, plus the rejects."""

    paths: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    mtimes: list[int] = field(default_factory=list)
    taken: list[str] = field(default_factory=list)  # EXIF capture dates ("" unknown)
    logits: list[np.ndarray] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    rejected: list[tuple[FileRecord, str]] = field(default_factory=list)

    @property
    def n_records(self) -> int:
        """Records covered, decoded or rejected."""
        return len(self.paths) + len(self.rejected)

    def logits_array(self, n_classes: int) -> np.ndarray:
        """Logits as one ``(n, n_classes)`` array."""
        return _stack(self.logits, n_classes)

    def embedding_array(self, dim: int) -> np.ndarray:
        """Embeddings as one ``(n, dim)`` array."""
        return _stack(self.embeddings, dim)


def _stack(parts: list[np.ndarray], width: int) -> np.ndarray:
    if not parts:
        return np.zeros((0, width), dtype=STORE_DTYPE)
    return np.concatenate(parts).astype(STORE_DTYPE, copy=False)


def resolve_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when a CUDA device is usable, else ``"cpu"``."""
    if device != "auto":
        return device
    if not _may_have_cuda():
        return "cpu"  # without importing torch: ~1.5 s of a CPU run's start-up
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> None:
    """Refuse, before any work, a ``--device`` this machine cannot run the model on: a CUDA
    device where there is none (or not that many), or a name torch does not know.

    Raises:
        ConfigError: what is wrong, and what to use instead.
    """
    if device in ("auto", "cpu"):
        return
    if device.split(":")[0] == "cuda" and not _may_have_cuda():
        raise ConfigError(
            f"--device {device}: this machine has no NVIDIA driver; use --device cpu "
            "(or leave --device out: auto)"
        )
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"--device {device!r} is not a device torch knows; use cpu, cuda or cuda:N"
        ) from None
    if parsed.type == "mps" and torch.backends.mps.is_available():
        return
    if parsed.type not in ("cpu", "cuda"):
        raise ConfigError(
            f"--device {device}: imgclust runs its model on cpu or cuda"
            + (" (this machine has no usable mps device)" if parsed.type == "mps" else "")
        )
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                f"--device {device}: torch finds no usable CUDA device here; use --device cpu"
            )
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(
                f"--device {device}: this machine has {count} CUDA "
                f"device{'s' if count > 1 else ''} (cuda:0"
                + (f" to cuda:{count - 1}" if count > 1 else "")
                + ")"
            )


def resolve_precision(precision: str, runtime: str, device: str) -> str:
    """``"auto"`` → ``"int8"`` where OpenVINO runs the model on the CPU and NNCF (which
    calibrates it) is installed, ``"fp32"`` otherwise; other precisions as given.

    int8 is the default there because it is ~3x the fp32 model rate with clusters as good
    (NMI within seed noise on both labelled sets, bench/results/quality.md).
    """
    if precision != "auto":
        return precision
    from .models.quantize import int8_available

    on_openvino = resolve_runtime(runtime, resolve_device(device)) == "openvino"
    return "int8" if on_openvino and int8_available() else "fp32"


def model_for(embed: EmbedConfig) -> str:
    """The model name a run embeds with: ``embed.model`` in its resolved precision.

    A model named with a precision (``efficientnet_lite0+bf16``) keeps it under ``auto``.
    """
    _, named = split_precision(embed.model)
    if embed.precision == "auto" and named != "fp32":
        return embed.model
    precision = resolve_precision(embed.precision, embed.runtime, embed.device)
    return with_precision(embed.model, precision)


def _may_have_cuda() -> bool:
    """False when this machine certainly has no NVIDIA driver (Linux without its device
    nodes, or macOS); True where only torch can tell."""
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")
    return True


def default_workers() -> int:
    """Decode processes: one per usable core, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, cores or 1))


class Embedder:
    """Turns image records into (logits, embedding) rows; rejects come back with reasons.

    Args:
        model: a registered model name (see :func:`imgclust.models.list_models`).
        batch_size: images per forward pass.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        workers: decode processes (0 decodes in this process).
        max_pixels: images larger than this are rejected as decompression bombs.
        decode_timeout: seconds one file may take to decode before it is rejected (only
            with ``workers`` > 0: a decode in this process cannot be interrupted).
        runtime: ``"auto"``, ``"torch"`` or ``"openvino"`` (see :mod:`imgclust.models.runtime`).
        thumbnails: if given, the decode workers also leave each image's gallery thumbnail
            there, from the pixels they decoded anyway (the report then reuses them).
    """

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 64,
        device: str = "auto",
        workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        decode_timeout: float = DEFAULT_DECODE_TIMEOUT,
        runtime: str = "auto",
        thumbnails: ThumbTarget | None = None,
    ) -> None:
        self.model_name = model
        self.spec: ModelSpec = get_spec(model)
        self.batch_size = batch_size
        self.device = device
        self.workers = default_workers() if workers is None else workers
        self.max_pixels = max_pixels
        self.decode_timeout = decode_timeout
        self.runtime = runtime
        self.thumbnails = thumbnails
        self._module: Runtime | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_module"] = None  # the model is rebuilt where the embedder runs
        return state

    def load(self) -> Runtime:
        """Build the runtime now (a first run converts the model, and for int8 calibrates it:
        ~25 s, cached) rather than at the first batch."""
        return self._model()

    def _model(self) -> Runtime:
        if self._module is None:
            if self.device == "auto" and split_precision(self.model_name)[1] == "int8":
                # An int8 collection (clustered on a CPU) stays int8 on a GPU machine too:
                # `assign`/`similar` must embed in the space it was clustered in.
                self.device = "cpu"
            self.device = resolve_device(self.device)
            self._module = create_runtime(self.model_name, runtime=self.runtime, device=self.device)
            self.runtime = self._module.name
        return self._module

    def forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the model on a ``(n, h, w, 3)`` uint8 batch → (logits, embeddings), float32."""
        return self._model()(batch)

    def iter_blocks(
        self,
        records: Sequence[FileRecord],
        block_size: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> Iterator[FeatureBlock]:
        """Embed ``records`` in order, yielding a :class:`FeatureBlock` per ``block_size``."""
        model = self._model()
        block = FeatureBlock()
        # The runtime may keep several batches in flight while the workers decode the next.
        # Batches never span two blocks, so each block holds exactly ``block_size`` records.
        inputs = self._model_inputs(records, block_size)
        for (items, good), outputs in model.map(inputs):
            if outputs is not None:
                logits, emb = outputs
                block.logits.append(logits.astype(STORE_DTYPE))
                block.embeddings.append(emb.astype(STORE_DTYPE))
                for i, out in good:
                    block.paths.append(records[i].path)
                    block.sizes.append(out.size)
                    block.mtimes.append(out.mtime_ns)
                    block.taken.append(out.taken)
            for i, out in items:
                if out.array is None:
                    block.rejected.append((records[i], out.reason or "unknown decode failure"))
            if on_progress is not None:
                on_progress(len(items))
            if block.n_records >= block_size:
                yield block
                block = FeatureBlock()
        if block.n_records:
            yield block

    def _model_inputs(
        self, records: Sequence[FileRecord], block_size: int
    ) -> Iterator[tuple[tuple[list[tuple[int, Decoded]], list[tuple[int, Decoded]]], Any]]:
        """``((batch, its decoded items), stacked input or None)`` per decoded batch."""
        for items in self._decoded_batches(records, block_size):
            good = [(i, out) for i, out in items if out.array is not None]
            stacked = np.stack([out.array for _, out in good]) if good else None  # type: ignore[misc]
            yield (items, good), stacked

    def _decoded_batches(
        self, records: Sequence[FileRecord], block_size: int
    ) -> Iterator[list[tuple[int, Decoded]]]:
        """``(index, Decoded)`` pairs in input order, ``batch_size`` at a time (a batch also
        ends where a block of ``block_size`` does)."""
        decode_fn = functools.partial(
            decode,
            preprocess=self.spec.preprocess,
            max_pixels=self.max_pixels,
            thumb=self.thumbnails,
        )
        paths = (r.path for r in records)
        if self.workers:
            pool = DecodePool(decode_fn, workers=self.workers, timeout=self.decode_timeout)
            # (the results' generator closed first: its feed thread stops before the pool)
            with pool, contextlib.closing(pool.imap(paths, prefetch=2 * self.batch_size)) as got:
                yield from _batched(got, self.batch_size, block_size)
        else:
            yield from _batched(enumerate(map(decode_fn, paths)), self.batch_size, block_size)

    def __call__(self, records: Sequence[FileRecord]) -> FeatureBlock:
        """Embed one shard of records into a single block (the unit a runner maps)."""
        merged = FeatureBlock()
        for block in self.iter_blocks(records, max(1, len(records))):
            merged.paths += block.paths
            merged.sizes += block.sizes
            merged.mtimes += block.mtimes
            merged.taken += block.taken
            merged.logits += block.logits
            merged.embeddings += block.embeddings
            merged.rejected += block.rejected
        return merged


def _batched(
    items: Iterator[tuple[int, Decoded]], size: int, block_size: int
) -> Iterator[list[tuple[int, Decoded]]]:
    batch: list[tuple[int, Decoded]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size or (item[0] + 1) % block_size == 0:
            yield batch
            batch = []
    if batch:
        yield batch
