"""Scale benchmark, run by hand: a million synthetic images through the store into k-means.

Writes ``--n`` synthetic feature rows (float16 logits and 1280-d embeddings drawn around
``--k`` hidden centres) as shards through :class:`imgclust.store.FeatureStore`, then does
what a run does after embedding: look every image up, stream the clustered features out of
the store one shard at a time (L2-normalised, float16), and cluster them with
:class:`imgclust.cluster.KMeans` (train on a capped sample, assign all in chunks). Prints
each stage's time and the peak RSS against the targets (<= 5 minutes, <= 4 GB).

    PYTHONPATH=src python bench/cluster_scale.py --n 1000000 --k 1000
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from imgclust.cluster import KMeans, make_features
from imgclust.embed import FeatureBlock
from imgclust.scan import FileRecord
from imgclust.store import FeatureStore

N_CLASSES = 1000


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def write_store(root: Path, n: int, k: int, dim: int, shard: int, seed: int) -> list[FileRecord]:
    """``n`` synthetic rows in shards of ``shard``; returns the matching scan records."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (k, dim)).astype(np.float32)
    records = []
    with FeatureStore(root, "synthetic") as store:
        for start in range(0, n, shard):
            m = min(shard, n - start)
            which = rng.integers(0, k, m)
            emb = centres[which] + rng.normal(0, 0.6, (m, dim)).astype(np.float32)
            block = FeatureBlock()
            block.paths = [
                f"/synthetic/{i // 1000:04d}/img{i:07d}.jpg" for i in range(start, start + m)
            ]
            block.sizes = [100_000] * m
            block.mtimes = [1] * m
            block.embeddings = [emb.astype(np.float16)]
            block.logits = [rng.normal(0, 2, (m, N_CLASSES)).astype(np.float16)]
            store.write(block, N_CLASSES, dim)
            records += [FileRecord(p, 100_000, 1) for p in block.paths]
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--shard", type=int, default=10_000)
    parser.add_argument("--points-per-centroid", type=int, default=128)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--store", type=Path, default=Path("/tmp/imgclust-scale-store"))
    parser.add_argument("--keep", action="store_true", help="reuse/keep the synthetic store")
    args = parser.parse_args()

    t0 = time.perf_counter()
    if not (args.keep and (args.store / "synthetic").is_dir()):
        shutil.rmtree(args.store, ignore_errors=True)
        records = write_store(args.store, args.n, args.k, args.dim, args.shard, seed=0)
    else:
        records = [FileRecord(f"/synthetic/{i // 1000:04d}/img{i:07d}.jpg", 100_000, 1)
                   for i in range(args.n)]  # fmt: skip
    t_write = time.perf_counter() - t0
    rss_write = peak_rss_gib()
    print(
        f"wrote {args.n:,} x {args.dim} float16 rows: {t_write:.1f} s, peak RSS {rss_write:.2f} GiB"
    )

    t1 = time.perf_counter()
    with FeatureStore(args.store, "synthetic") as store:
        found = store.lookup(records).found
        paths = sorted(found)
        t_open = time.perf_counter() - t1
        t2 = time.perf_counter()
        feats = store.load(
            paths,
            found,
            arrays=("embedding",),
            transform=lambda _, rows: make_features("embedding", logits=rows, embedding=rows),
        )["embedding"]
        t_load = time.perf_counter() - t2
    print(f"open+lookup {t_open:.1f} s; streamed features {feats.shape} {feats.dtype}: "
          f"{t_load:.1f} s, peak RSS {peak_rss_gib():.2f} GiB", flush=True)  # fmt: skip

    t3 = time.perf_counter()
    model = KMeans(
        args.k,
        n_init=1,
        max_iter=args.iters,
        spherical=True,
        max_points_per_centroid=args.points_per_centroid,
    ).fit(feats)
    t_cluster = time.perf_counter() - t3
    sizes = np.bincount(model.labels_, minlength=args.k)
    n_train = args.k * args.points_per_centroid
    print(f"k-means k={args.k}: {t_cluster:.1f} s (train on <= {n_train:,}"
          f" points, {args.iters} iterations, assign {len(feats):,}); cluster sizes "
          f"{sizes.min()}..{sizes.max()}, inertia {model.inertia_:.4g}", flush=True)  # fmt: skip
    total = t_open + t_load + t_cluster
    peak = peak_rss_gib()
    print()
    print("| target | measured | target value | ratio |")
    print("|---|---|---|---|")
    print(f"| store -> features -> k-means, {args.n:,} x {args.dim}, k={args.k} | {total:.0f} s "
          f"| <= 300 s | {total / 300:.2f} |")  # fmt: skip
    print(f"| clustering alone (train + assign) | {t_cluster:.0f} s | <= 300 s | "
          f"{t_cluster / 300:.2f} |")  # fmt: skip
    print(f"| peak RSS (whole process, no model loaded) | {peak:.2f} GiB | <= 4 GB (3.73 GiB) | "
          f"{peak / (4e9 / 2**30):.2f} |")  # fmt: skip
    if not args.keep:
        shutil.rmtree(args.store, ignore_errors=True)


if __name__ == "__main__":
    main()
