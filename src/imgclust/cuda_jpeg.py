"""JPEGs decoded on the GPU (nvjpeg through torchvision), resized there, and embedded.

The same calls run on a CPU device (libjpeg-turbo through torchvision), which is how the
tests check this path on machines without CUDA.

A separate embed path for CUDA machines, where Pillow in worker processes cannot keep the
GPU fed: the CPU only reads bytes and peeks at headers (threads), nvjpeg decodes whole
batches, and the resize and centre crop run on the GPU. Files nvjpeg cannot take (not a
JPEG, CMYK, an EXIF rotation, a decoder error) go through :func:`imgclust.decode.decode` on
the CPU instead, so every file still comes back as features or as a reason.

Pixels differ slightly from the CPU path (full decode + antialiased bicubic instead of DCT
scaling + Pillow bicubic); features stay close, not identical.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .decode import DEFAULT_MAX_PIXELS, decode
from .models import get_spec
from .models.runtime import TorchRuntime
from .models.spec import Preprocess

if TYPE_CHECKING:
    import torch


@dataclass
class _Read:
    path: str
    data: bytes | None  # None: send to the CPU decoder


def _read(path: str, max_pixels: int) -> _Read:
    from PIL import Image

    try:
        with open(path, "rb") as fh:
            data = fh.read()
        with Image.open(io.BytesIO(data)) as img:  # header only
            ok = (
                img.format == "JPEG"
                and img.mode in ("RGB", "L")
                and img.size[0] * img.size[1] <= max_pixels
                and img.getexif().get(0x0112, 1) == 1  # no EXIF rotation to apply
            )
        return _Read(path, data if ok else None)
    except Exception:
        return _Read(path, None)


def resize_crop_gpu(images: list[torch.Tensor], pre: Preprocess) -> torch.Tensor:
    """Decoded CHW uint8 GPU images → ``(n, size, size, 3)`` uint8 (shorter side, centre)."""
    import torch
    import torch.nn.functional as F

    side, out = pre.input_size, []
    mode = "bicubic" if pre.interpolation == "bicubic" else "bilinear"
    for img in images:
        _, h, w = img.shape
        # Crop the source box that becomes the centre crop, then resample it once.
        box = side * min(h, w) / pre.resize_size
        bh, bw = min(h, round(box)), min(w, round(box))
        top, left = (h - bh) // 2, (w - bw) // 2
        crop = img[:, top : top + bh, left : left + bw].unsqueeze(0).float()
        crop = F.interpolate(crop, size=(side, side), mode=mode, antialias=True)
        out.append(crop.clamp_(0, 255).round_().to(torch.uint8))
    return torch.cat(out).permute(0, 2, 3, 1)


class CudaJpegEmbedder:
    """Paths → (logits, embeddings) on a CUDA device, JPEGs decoded by nvjpeg.

    Args:
        model: registered model name.
        batch_size: images per nvjpeg batch and forward pass.
        device: a CUDA device (``"cpu"`` works too, without the speed).
        read_threads: threads reading files and headers ahead of the GPU.
    """

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 256,
        device: str = "cuda",
        read_threads: int = 8,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.spec = get_spec(model)
        self.batch_size = batch_size
        self.runtime = TorchRuntime(model, device)
        self.device = self.runtime.device
        self.read_threads = read_threads
        self.max_pixels = max_pixels

    def _decode_batch(self, reads: list[_Read]) -> tuple[list[str], Any, list[tuple[str, str]]]:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        pre = self.spec.preprocess
        gpu = [r for r in reads if r.data is not None]
        cpu = [r.path for r in reads if r.data is None]
        decoded: list[torch.Tensor] = []
        if gpu:
            tensors = [torch.frombuffer(bytearray(r.data or b""), dtype=torch.uint8) for r in gpu]
            try:
                decoded = decode_jpeg(tensors, mode=ImageReadMode.RGB, device=self.device)
            except RuntimeError:  # one bad file fails the batch: retry one at a time
                keep: list[_Read] = []
                for r, t in zip(gpu, tensors, strict=True):
                    try:
                        decoded.append(decode_jpeg(t, mode=ImageReadMode.RGB, device=self.device))
                        keep.append(r)
                    except RuntimeError:
                        cpu.append(r.path)
                gpu = keep
        paths = [r.path for r in gpu]
        parts = [resize_crop_gpu(decoded, pre)] if decoded else []
        rejected: list[tuple[str, str]] = []
        host = []
        for path in cpu:
            out = decode(path, pre, max_pixels=self.max_pixels)
            if out.array is None:
                rejected.append((path, out.reason or "unknown decode failure"))
            else:
                host.append(out.array)
                paths.append(path)
        if host:
            parts.append(torch.from_numpy(np.stack(host)).to(self.device))
        return paths, (torch.cat(parts) if parts else None), rejected

    def iter_batches(
        self, paths: Sequence[str]
    ) -> Iterator[tuple[list[str], np.ndarray, np.ndarray, list[tuple[str, str]]]]:
        """Yield (embedded paths, logits, embeddings, rejected (path, reason)) per batch."""
        # Read ahead a few batches at a time: bounded memory, however many paths there are.
        step = self.batch_size * 4
        with ThreadPoolExecutor(self.read_threads) as pool:
            ahead = pool.map(lambda p: _read(p, self.max_pixels), paths[:step])
            for start in range(0, len(paths), step):
                reads = list(ahead)
                nxt = paths[start + step : start + 2 * step]
                ahead = pool.map(lambda p: _read(p, self.max_pixels), nxt)
                for i in range(0, len(reads), self.batch_size):
                    yield self._run(reads[i : i + self.batch_size])

    def _run(
        self, batch: list[_Read]
    ) -> tuple[list[str], np.ndarray, np.ndarray, list[tuple[str, str]]]:
        paths, x, rejected = self._decode_batch(batch)
        if x is None:
            empty = np.zeros((0, self.spec.n_classes), np.float32)
            return [], empty, np.zeros((0, self.spec.embedding_dim), np.float32), rejected
        logits, emb = self.runtime.run_tensor(x)
        return paths, logits, emb, rejected
