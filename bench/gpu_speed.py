"""GPU speed benchmark, run by hand on a CUDA machine (web photos, 1024x768 JPEG).

Prints model-only img/s (bf16, channels_last, several batch sizes, eager and compiled),
CPU decode-only img/s (all cores), nvjpeg decode+resize img/s, end-to-end img/s of the
nvjpeg embed path (:mod:`imgclust.cuda_jpeg`) and of ``imgclust run --device cuda``.

    PYTHONPATH=src python bench/gpu_speed.py --n 4000 --unique 800
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from speed import decode_rate, end_to_end, machine, make_corpus


def _make(args: tuple[Path, int, int]) -> None:
    folder, n, seed = args
    make_corpus(folder, (1024, 768), n, seed=seed)


def build(folder: Path, n: int, unique: int, procs: int) -> list[Path]:
    """``unique`` distinct photos made in parallel, copied up to ``n`` files."""
    parts = [(folder / f"part{i}", unique // procs, i) for i in range(procs)]
    with ProcessPoolExecutor(procs) as pool:
        list(pool.map(_make, parts))
    made = sorted(folder.glob("part*/*.jpg"))
    for i in range(n - len(made)):
        dst = folder / f"copy{i // 1000}" / f"c{i:06d}.jpg"
        dst.parent.mkdir(exist_ok=True)
        if not dst.exists():
            shutil.copyfile(made[i % len(made)], dst)
    return sorted(folder.rglob("*.jpg"))


def model_only(batch_size: int, compiled: bool, seconds: float = 8.0) -> float:
    import torch

    from imgclust.models.runtime import TorchRuntime

    rt = TorchRuntime("efficientnet_lite0", "cuda")
    if compiled:
        rt.module = torch.compile(rt.module)
    x = torch.randint(0, 255, (batch_size, 224, 224, 3), dtype=torch.uint8, device="cuda")
    for _ in range(3):
        rt.run_tensor(x)
    torch.cuda.synchronize()
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        rt.run_tensor(x)
        n += batch_size
    return n / (time.perf_counter() - t)


def nvjpeg_paths(paths: list[str], batch_size: int) -> tuple[float, float]:
    """(decode+resize img/s, end-to-end img/s) of the nvjpeg path."""
    import torch

    from imgclust.cuda_jpeg import CudaJpegEmbedder, _read

    emb = CudaJpegEmbedder("efficientnet_lite0", batch_size=batch_size, read_threads=16)
    warm = [_read(p, 10**9) for p in paths[:batch_size]]
    emb._decode_batch(warm)
    t = time.perf_counter()
    for i in range(0, len(paths), batch_size):
        reads = [_read(p, 10**9) for p in paths[i : i + batch_size]]
        emb._decode_batch(reads)
    torch.cuda.synchronize()
    dec_read = len(paths) / (time.perf_counter() - t)
    # Decode only, bytes already in memory.
    reads = [_read(p, 10**9) for p in paths[: batch_size * 8]]
    t = time.perf_counter()
    for i in range(0, len(reads), batch_size):
        emb._decode_batch(reads[i : i + batch_size])
    torch.cuda.synchronize()
    dec_mem = len(reads) / (time.perf_counter() - t)
    t = time.perf_counter()
    n = sum(len(p) for p, _, _, _ in emb.iter_batches(paths))
    e2e = n / (time.perf_counter() - t)
    print(f"nvjpeg decode+resize (bytes in memory): {dec_mem:.0f} img/s; "
          f"with file reads in this thread: {dec_read:.0f} img/s", flush=True)  # fmt: skip
    return dec_mem, e2e


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--unique", type=int, default=800)
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/gpu-corpus"))
    parser.add_argument("--skip-compile", action="store_true")
    args = parser.parse_args()
    procs = len(os.sched_getaffinity(0))
    print(machine(), flush=True)
    t = time.perf_counter()
    paths = build(args.corpus, args.n, args.unique, procs)
    print(f"corpus: {len(paths)} JPEGs 1024x768 ({time.perf_counter() - t:.0f} s)", flush=True)

    for bs in (128, 256, 512):
        print(f"model-only bf16 eager batch {bs}: {model_only(bs, False):.0f} img/s", flush=True)
    if not args.skip_compile:
        t = time.perf_counter()
        try:
            rate = model_only(256, True)
            print(f"model-only bf16 torch.compile batch 256: {rate:.0f} img/s "
                  f"(compile+run {time.perf_counter() - t:.0f} s)", flush=True)  # fmt: skip
        except Exception as exc:
            print(f"torch.compile failed: {type(exc).__name__}: {exc}", flush=True)

    dec = decode_rate(paths[:2000], procs)
    print(f"CPU decode-only (Pillow draft, {procs} procs): {dec:.0f} img/s", flush=True)
    _, e2e_nv = nvjpeg_paths([str(p) for p in paths], 256)
    print(f"end-to-end nvjpeg embed path (read+decode+resize+model): {e2e_nv:.0f} img/s; "
          f"target 4000 -> ratio {e2e_nv / 4000:.2f}", flush=True)  # fmt: skip

    ns = argparse.Namespace(device="cuda", batch_size=256, workers=procs)
    e2e, embed_rate, rss = end_to_end(args.corpus, ns, "torch")
    print(f"end-to-end imgclust run --device cuda (Pillow in {procs} workers): {e2e:.0f} img/s,"
          f" embed stage {embed_rate:.0f} img/s, peak RSS {rss:.2f} GiB", flush=True)  # fmt: skip
    _ = np


if __name__ == "__main__":
    main()
