"""Decode-only throughput: torch DataLoader (the old path) vs imgclust's DecodePool.

Run by hand: ``PYTHONPATH=src python bench/decode_pool.py [FOLDER] [--workers 2]``.
Prints images/second for each and the ratio pool / DataLoader (the pool adds a per-file
deadline; it should cost next to nothing). Then the pool's transport alone (a decode that
returns a ready 224x224 RGB array): CPU per photo, all processes, with the arrays coming
back through the workers' shared-memory slots and through the pipe, and their ratio.
"""

from __future__ import annotations

import argparse
import functools
import resource
import time
from typing import Any

import numpy as np

from imgclust.decode import Decoded, decode
from imgclust.models import get_spec
from imgclust.scan import scan
from imgclust.workers import DecodePool

DEFAULT_FOLDER = "/work/shared/datasets/intel-scenes-dev"


class _Dataset:
    def __init__(self, paths: list[str], fn: Any) -> None:
        self.paths, self.fn = paths, fn

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        return i, self.fn(self.paths[i])


def _collate(items: list[Any]) -> list[Any]:
    return items


def dataloader_rate(paths: list[str], fn: Any, workers: int, batch: int) -> float:
    from torch.utils.data import DataLoader

    loader: DataLoader[Any] = DataLoader(
        _Dataset(paths, fn),  # type: ignore[arg-type]
        batch_size=batch,
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=4,
    )
    start = time.perf_counter()
    n = sum(len(items) for items in loader)
    return n / (time.perf_counter() - start)


def pool_rate(paths: list[str], fn: Any, workers: int, batch: int) -> float:
    start = time.perf_counter()
    with DecodePool(fn, workers=workers) as pool:
        n = sum(1 for _ in pool.imap(paths, prefetch=2 * batch))
    return n / (time.perf_counter() - start)


_READY = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)


def _ready(path: str) -> Decoded:
    return Decoded(_READY, None, size=1, mtime_ns=1)


def transport(n: int, workers: int, *, slots: bool) -> tuple[float, float, float]:
    """``(parent, workers)`` CPU milliseconds a photo, and photos a second, of the pool
    moving ``n`` ready arrays back through the slots or (``slots=False``) the pipe."""

    def children() -> float:
        use = resource.getrusage(resource.RUSAGE_CHILDREN)
        return use.ru_utime + use.ru_stime

    cpu, kids, wall = time.process_time(), children(), time.perf_counter()
    pool = DecodePool(_ready, workers=workers)
    pool._slots = slots  # (a bench-only switch: the pool always uses them where it can)
    with pool:
        for _ in pool.imap((str(i) for i in range(n)), prefetch=64):
            pass
    wall = time.perf_counter() - wall
    return (time.process_time() - cpu) / n * 1e3, (children() - kids) / n * 1e3, n / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", nargs="?", default=DEFAULT_FOLDER)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    paths = [r.path for r in scan([args.folder]).records]
    fn = functools.partial(decode, preprocess=get_spec("efficientnet_lite0").preprocess)
    for p in paths:  # warm the page cache so both read from memory
        with open(p, "rb") as fh:
            fh.read()
    old, new = [], []
    for _ in range(args.repeats):  # interleaved, best of N
        old.append(dataloader_rate(paths, fn, args.workers, args.batch))
        new.append(pool_rate(paths, fn, args.workers, args.batch))
    print(f"{len(paths)} images, {args.workers} workers, best of {args.repeats}")
    print(f"DataLoader  {max(old):8.1f} img/s")
    print(f"DecodePool  {max(new):8.1f} img/s")
    print(f"ratio pool/DataLoader  {max(new) / max(old):.2f}")
    n = 3000
    print(f"transport of {n} ready 224x224 arrays, {args.workers} workers, best of {args.repeats}")
    best: dict[bool, tuple[float, float, float]] = {}
    for _ in range(args.repeats):
        for slots in (True, False):
            got = transport(n, args.workers, slots=slots)
            best[slots] = min(best.get(slots, got), got)
    for slots, label in ((True, "shared-memory slots"), (False, "pickled through pipe")):
        parent, kids, rate = best[slots]
        print(f"{label:21} parent {parent:.3f} ms, workers {kids:.3f} ms a photo; {rate:,.0f}/s")
    print(f"ratio slots/pipe, parent CPU  {best[True][0] / best[False][0]:.2f}")


if __name__ == "__main__":
    main()
