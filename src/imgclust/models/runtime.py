"""Inference runtimes: one forward pass, uint8 images in, (class logits, pooled embedding) out.

* ``torch``: the timm module itself, channels_last; on CUDA with bf16 autocast. Always there.
* ``openvino``: the same module converted in memory by ``openvino.convert_model`` and
  compiled for the CPU, 5-7x faster than torch eager on a laptop CPU with the same features
  (a test holds them within 1e-3). The converted model is cached on disk, keyed by model and
  OpenVINO version, so only the first run pays for the conversion.

``auto`` picks OpenVINO on the CPU when it is installed and torch otherwise (and on CUDA).
Normalisation (mean/std from the model's :class:`Preprocess`) is part of the graph, so every
runtime takes the same ``(n, size, size, 3)`` uint8 batch that decode produces.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from ..config import RUNTIMES
from ..exceptions import ConfigError, ModelUnavailableError
from .registry import create_model, get_spec, split_precision

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Bumped when the exported graph changes, so stale cached conversions are not reused.
_GRAPH_VERSION = 1
#: Bumped when the int8 calibration changes (images, sample count, NNCF settings).
_CALIBRATION_VERSION = 2


#: One batch's outputs: (logits, embeddings), float32.
Outputs = tuple[np.ndarray, np.ndarray]


class Runtime(Protocol):
    """A compiled model: ``(n, h, w, 3)`` uint8 → (logits, embeddings), float32 arrays."""

    name: str

    def __call__(self, batch: np.ndarray) -> Outputs:
        """Run one batch."""

    def map(
        self, jobs: Iterable[tuple[T, np.ndarray | None]]
    ) -> Iterator[tuple[T, Outputs | None]]:
        """Run a stream of ``(key, batch)`` jobs, yielding ``(key, outputs)`` in input order.

        A runtime may keep several batches in flight; a ``None`` batch passes through with
        ``None`` outputs (in order).
        """


def map_in_order(
    run: Callable[[np.ndarray], Outputs], jobs: Iterable[tuple[T, np.ndarray | None]]
) -> Iterator[tuple[T, Outputs | None]]:
    """:meth:`Runtime.map` for a runtime that runs one batch at a time."""
    for key, batch in jobs:
        yield key, None if batch is None else run(batch)


def openvino_available() -> bool:
    """Whether the ``openvino`` package can be imported here."""
    return importlib.util.find_spec("openvino") is not None


def resolve_runtime(runtime: str, device: str) -> str:
    """``auto`` → ``openvino`` on the CPU when installed, else ``torch``; checks the name.

    Raises:
        ConfigError: unknown runtime, or OpenVINO asked for a CUDA device.
        ModelUnavailableError: OpenVINO asked for but not installed.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    on_cpu = device == "cpu"
    if runtime == "auto":
        if on_cpu and openvino_available():
            return "openvino"
        if on_cpu:
            log.warning("openvino is not installed; using torch (slower): pip install openvino")
        return "torch"
    if runtime == "openvino":
        if not on_cpu:
            raise ConfigError(f"the openvino runtime runs on the CPU only, not {device!r}")
        if not openvino_available():
            raise ModelUnavailableError(
                "the openvino runtime is not installed; run: pip install openvino "
                "(or pass --runtime torch)"
            )
    return runtime


def create_runtime(model: str, *, runtime: str = "auto", device: str = "cpu") -> Runtime:
    """Build ``model`` for ``runtime`` on ``device`` (a resolved device, not ``"auto"``)."""
    name = resolve_runtime(runtime, device)
    if name == "openvino":
        return OpenVinoRuntime(model)
    return TorchRuntime(model, device)


def _features_module(model: str) -> torch.nn.Module:
    """The model wrapped so one call maps uint8 NHWC to (logits, pooled embedding)."""
    import torch

    pre = get_spec(model).preprocess
    net: Any = create_model(model)  # a timm model: forward_features, forward_head, ...

    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.mean: torch.Tensor
            self.std: torch.Tensor
            self.register_buffer("mean", torch.tensor(pre.mean).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("std", torch.tensor(pre.std).view(1, 3, 1, 1) * 255.0)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # NHWC permuted to NCHW is already channels_last in memory: no copy.
            x = (x.permute(0, 3, 1, 2).float() - self.mean) / self.std
            pooled = self.net.forward_head(self.net.forward_features(x), pre_logits=True)
            return self.net.get_classifier()(pooled), pooled

    return Features().eval()


class TorchRuntime:
    """The timm module run by torch: channels_last, bf16 autocast on CUDA."""

    name = "torch"

    def __init__(self, model: str, device: str) -> None:
        import torch

        precision = get_spec(model).precision
        if precision == "int8":
            raise ConfigError(
                "--precision int8 runs on the openvino runtime (CPU) only; on "
                f"{device!r} with torch use fp32 or bf16"
            )
        self.device = torch.device(device)
        self.bf16 = precision == "bf16"
        self.module = _features_module(model).to(self.device)
        self.module = self.module.to(memory_format=torch.channels_last)

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run one uint8 NHWC batch."""
        import torch

        if not batch.flags.writeable:
            batch = batch.copy()
        x = torch.from_numpy(batch)
        return self.run_tensor(x)

    def map(
        self, jobs: Iterable[tuple[T, np.ndarray | None]]
    ) -> Iterator[tuple[T, Outputs | None]]:
        """Run ``(key, batch)`` jobs one at a time, in order."""
        return map_in_order(self, jobs)

    def run_tensor(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Run a uint8 NHWC tensor (on any device; moved to ours without blocking)."""
        import torch

        x = x.to(self.device, non_blocking=True)
        bf16 = self.device.type == "cuda" or self.bf16
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16),
        ):
            logits, pooled = self.module(x)
        return logits.float().cpu().numpy(), pooled.float().cpu().numpy()


def cache_root() -> Path:
    """Where converted models are cached: ``$IMGCLUST_CACHE`` or the user's cache folder."""
    env = os.environ.get("IMGCLUST_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imgclust"


class OpenVinoRuntime:
    """The model converted to OpenVINO IR (cached) and compiled for the CPU, fp32."""

    name = "openvino"

    def __init__(self, model: str, *, cache_dir: Path | None = None) -> None:
        import openvino as ov

        self.model_name = model
        spec = get_spec(model)
        size = spec.preprocess.input_size
        base, _ = split_precision(model)  # one converted graph serves every precision
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", base)
        key = f"{safe}-ov{ov.__version__.split('-')[0]}-g{_GRAPH_VERSION}"
        folder = (cache_dir or cache_root()) / "openvino" / key
        core = ov.Core()
        ir = self._read_cached(core, folder / "model.xml")
        if ir is None:
            ir = self._convert(ov, model, size)
            self._save(ov, ir, folder)
        if spec.precision == "int8":  # calibrated once, cached beside the fp32 model
            from .quantize import quantize_int8

            folder = folder.with_name(f"{key}-int8-c{_CALIBRATION_VERSION}")
            fp32, ir = ir, self._read_cached(core, folder / "model.xml")
            if ir is None:
                quantized = quantize_int8(fp32, size)
                self._save(ov, quantized, folder)
                # Read back: the in-memory model compiles to slightly different kernels
                # (logits ~0.2 apart), so the first run and later ones match only this way.
                ir = self._read_cached(core, folder / "model.xml")
                if ir is None:  # not cacheable here: every run calibrates (same images)
                    ir = quantized
        self.ir_path = folder / "model.xml"
        # THROUGHPUT: several streams, each on its own cores, fed by several requests in
        # flight (see map). On a laptop the decode workers share the cores with the model: a
        # one-stream (LATENCY) model waits at every layer for its slowest thread, so one
        # preempted thread stalls all of them, while separate streams slow down one at a time.
        # f32: OpenVINO may otherwise pick bf16 on its own, which moves logits by ~0.3.
        # bf16 only when asked for (NAME+bf16): ~1.8x faster where the CPU has AVX-512 BF16
        # or AMX, but the features are another space (measured in bench/results/speed-cpu.md).
        # int8: the quantised layers run in int8 whatever the hint; the rest stays f32.
        precision = "bf16" if spec.precision == "bf16" else "f32"
        config = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": precision}
        if folder.is_dir():  # OpenVINO's own cache of the compiled model: ~0.3 s a run
            with contextlib.suppress(Exception):
                core.set_property({"CACHE_DIR": str(folder / "compiled")})
        self.compiled = core.compile_model(ir, "CPU", config)
        self.n_requests = max(
            1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        )
        self._queue = ov.AsyncInferQueue(self.compiled, self.n_requests)

    @staticmethod
    def _read_cached(core: Any, path: Path) -> Any:
        if not path.is_file():
            return None
        try:
            return core.read_model(path)
        except Exception as exc:  # a damaged cache entry is rebuilt, never fatal
            log.warning("ignoring unreadable cached model %s: %s", path, exc)
            return None

    @staticmethod
    def _convert(ov: Any, model: str, size: int) -> Any:
        import torch

        module = _features_module(model)
        example = torch.zeros((2, size, size, 3), dtype=torch.uint8)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # convert_model traces with torch.jit, which warns that it is deprecated.
                warnings.simplefilter("ignore", FutureWarning)
                ir = ov.convert_model(module, example_input=example)
        except Exception as exc:
            raise ModelUnavailableError(
                f"openvino cannot convert {model} ({type(exc).__name__}: {exc}); "
                "pass --runtime torch"
            ) from exc
        ir.reshape([-1, size, size, 3])  # any batch size
        return ir

    def _save(self, ov: Any, ir: Any, folder: Path) -> None:
        # Written to a temporary folder and renamed, so a killed run leaves no half entry.
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
            ov.save_model(ir, tmp / "model.xml", compress_to_fp16=False)
            os.replace(tmp, folder)
        except OSError as exc:  # no cache is slower, never wrong
            log.warning("cannot cache the converted model in %s: %s", folder, exc)
            with contextlib.suppress(NameError):
                shutil.rmtree(tmp, ignore_errors=True)

    def __call__(self, batch: np.ndarray) -> Outputs:
        """Run one uint8 NHWC batch, split across the streams."""
        parts = np.array_split(batch, min(self.n_requests, len(batch))) if len(batch) else [batch]
        outs = [out for _, out in self.map(enumerate(parts))]
        return (
            np.concatenate([o[0] for o in outs if o is not None]),
            np.concatenate([o[1] for o in outs if o is not None]),
        )

    def map(
        self, jobs: Iterable[tuple[T, np.ndarray | None]]
    ) -> Iterator[tuple[T, Outputs | None]]:
        """Keep up to ``n_requests`` batches in flight; yield ``(key, outputs)`` in order."""
        done: dict[int, Outputs] = {}
        errors: list[BaseException] = []

        def finished(request: Any, seq: int) -> None:  # runs on an OpenVINO thread
            try:
                logits, pooled = (
                    np.array(request.get_output_tensor(i).data, dtype=np.float32) for i in range(2)
                )
                done[seq] = (logits, pooled)
            except BaseException as exc:  # raised in the caller's thread below
                errors.append(exc)

        self._queue.set_callback(finished)
        pending: list[tuple[int, T, bool]] = []  # (seq, key, ran the model), in input order
        try:
            for seq, (key, batch) in enumerate(jobs):
                if batch is not None:
                    # start_async waits for a free request; the arrays are copied in.
                    self._queue.start_async([np.ascontiguousarray(batch)], seq)
                pending.append((seq, key, batch is not None))
                while pending and (not pending[0][2] or pending[0][0] in done):
                    yield self._pop(pending, done, errors)
            self._queue.wait_all()
            while pending:
                yield self._pop(pending, done, errors)
        finally:
            self._queue.wait_all()  # a caller that stops early leaves no request running

    @staticmethod
    def _pop(
        pending: list[tuple[int, T, bool]], done: dict[int, Outputs], errors: list[BaseException]
    ) -> tuple[T, Outputs | None]:
        if errors:
            raise errors[0]
        seq, key, ran = pending.pop(0)
        return key, done.pop(seq) if ran else None
