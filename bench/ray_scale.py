"""The Ray engine at scale, run by hand: two measurements, printed as ratios in one run.

1. **Ray vs local on photos**: ``imgclust run`` on ``--photos`` web photos (1024x768 JPEGs
   built as bench/speed.py builds them), ``--engine local`` and ``--engine ray`` (a local Ray
   instance on this machine) in turn, each into a fresh output folder (so each embeds every
   photo), ``--algorithm kmeans`` (the Ray run clusters as passes over its shards). Wall time
   of the whole command, its embed and cluster stages (run.json), the Ray run's per-node
   photos and img/s. Target: Ray no slower than 1.3x local.
2. **Distributed clustering on ``--rows`` feature rows** read from Parquet shards on disk
   (a real feature store of synthetic float16 features: ``--k`` hidden centres plus noise,
   logits that favour one class per centre), clustered by
   :func:`imgclust.cluster.distributed.fit_kmeans` on a local Ray instance: the time of each
   pass, and every process's peak resident memory (the driver's and each Ray process's,
   sampled every 0.2 s; each task also reports its worker's own peak). Targets: <= 2 GB per
   process, and no process holding all rows (``rows x dim x 2`` bytes of embeddings).
3. **The driver after the passes**, on the same rows, as a distributed run's driver does it
   (:mod:`imgclust.pipeline`'s ``_record``): the per-image results read back, the clusters
   described (the medoids and near-duplicates from the passes, or, where the features had
   no room in their shuffle, found here a batch of clusters at a time), named and grouped
   (the modularity cut on a sample),
   and the map laid out and every row placed, the features read from the shards when
   indexed (:class:`imgclust.store.StoredRows`), never loaded whole. Each stage's time, the
   shards read, and the driver's peak RSS in that phase against all rows' embeddings.

    PYTHONPATH=src python bench/ray_scale.py --photos 3000 --rows 2000000 \\
        --out bench/results/ray-scale.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import SIZES, make_corpus

if TYPE_CHECKING:
    from imgclust.cluster.distributed import DistributedKMeans

GIB = 2**30
PER_PROCESS_TARGET = 2 * 10**9  # bytes


# -- 1. photos: Ray vs local --------------------------------------------------------------


def timed_run(photos: Path, out: Path, engine: str, k: int) -> dict[str, object]:
    """One ``imgclust run`` in a fresh process: wall s, its stage timings and notes."""
    shutil.rmtree(out, ignore_errors=True)
    began = time.time()
    cmd = [sys.executable, "-m", "imgclust.cli", "run", str(photos), "--out", str(out),
           "--k", str(k), "--algorithm", "kmeans", "--quiet", "--engine", engine]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"imgclust run --engine {engine} failed:\n{done.stderr[-3000:]}")
    info = json.loads((out / ".imgclust" / "run.json").read_text())
    # The shards' commit times (their markers'): when the first landed, and the rate after.
    markers = sorted(
        (p.stat().st_mtime, json.loads(p.read_text())["n"])
        for p in (out / ".imgclust" / "store").glob("*/*.done.json")
    )
    after = sum(n for _, n in markers[1:]) / max(markers[-1][0] - markers[0][0], 1e-9)
    return {
        "first_shard": markers[0][0] - began,
        "steady": after,
        "wall": wall,
        "embed": info["timings"]["embed"],
        "cluster": info["timings"]["cluster"],
        "n": info["n_clustered"],
        "notes": [n for n in info["notes"] if n.startswith("ray engine")],
    }


def photos_part(args: argparse.Namespace, lines: list[str]) -> dict[str, float]:
    corpus = args.work / f"web-{args.photos}"
    start = time.perf_counter()
    make_corpus(corpus, SIZES["web"], args.photos)
    say(lines, f"corpus: {args.photos:,} web photos (1024x768 JPEG) in {corpus} "
        f"({time.perf_counter() - start:.0f} s to make or find)")  # fmt: skip
    runs: dict[str, list[dict[str, object]]] = {"local": [], "ray": []}
    for i in range(args.repeats):  # in turn, so drift on a shared machine hits both
        for engine in ("local", "ray"):
            r = timed_run(corpus, args.work / f"out-{engine}", engine, args.k_photos)
            runs[engine].append(r)
            say(lines, f"  run {i + 1} --engine {engine}: {r['wall']:.1f} s wall "
                f"(embed {r['embed']:.1f} s, cluster {r['cluster']:.1f} s), {r['n']:,} photos "
                f"= {r['n'] / r['wall']:.1f} img/s end to end; load average "
                f"{os.getloadavg()[0]:.1f}")  # type: ignore[operator]  # fmt: skip
            say(lines, f"    first shard committed {r['first_shard']:.1f} s after the start; "
                f"from it to the last: {r['steady']:.0f} img/s")  # fmt: skip
            for note in r["notes"]:  # type: ignore[attr-defined]
                say(lines, f"    {note}")

    def med(engine: str, key: str) -> float:
        return statistics.median(float(r[key]) for r in runs[engine])  # type: ignore[arg-type]

    return {
        "local_wall": med("local", "wall"),
        "ray_wall": med("ray", "wall"),
        "local_embed": med("local", "embed"),
        "ray_embed": med("ray", "embed"),
        "local_cluster": med("local", "cluster"),
        "ray_cluster": med("ray", "cluster"),
    }


# -- 2. rows: the distributed clustering ----------------------------------------------------


def _shard(args: tuple[str, int, int, int, int, int, int]) -> int:
    """Write synthetic shard ``shard`` (``rows`` rows) into the store folder."""
    from imgclust.embed import FeatureBlock
    from imgclust.store import ShardWriter

    folder, shard, rows, dim, n_classes, k, seed = args
    rng = np.random.default_rng(seed + shard)
    centres = np.random.default_rng(seed).standard_normal((k, dim), dtype=np.float32)
    which = rng.integers(0, k, rows)
    emb = centres[which] + rng.standard_normal((rows, dim), dtype=np.float32) * 0.8
    logits = rng.standard_normal((rows, n_classes), dtype=np.float32)
    logits[np.arange(rows), which % n_classes] += 5.0
    first = (shard - 1) * rows
    block = FeatureBlock(
        paths=[f"/synthetic/{(first + i) // 1000:06d}/{first + i:09d}.jpg" for i in range(rows)],
        sizes=[100_000] * rows,
        mtimes=[1] * rows,
        logits=[logits.astype(np.float16)],
        embeddings=[emb.astype(np.float16)],
    )
    ShardWriter(folder, "synthetic").write(shard, block, n_classes, dim)
    return rows


def fill_store(args: argparse.Namespace, lines: list[str]) -> tuple[Path, int]:
    """The synthetic store (made once, kept in --work for later runs)."""
    from imgclust.store import FeatureStore

    root = args.work / f"store-{args.rows}-{args.dim}"
    n_shards = -(-args.rows // args.shard)
    folder = root / "synthetic"
    have = len(list(folder.glob("shard-*.done.json"))) if folder.is_dir() else 0
    start = time.perf_counter()
    if have != n_shards:
        shutil.rmtree(root, ignore_errors=True)
        folder.mkdir(parents=True)
        jobs = [(str(folder), s, args.shard, args.dim, args.classes, args.k, 0)
                for s in range(1, n_shards + 1)]  # fmt: skip
        with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
            n = sum(pool.map(_shard, jobs, chunksize=8))
        assert n == n_shards * args.shard
    with FeatureStore(root, "synthetic") as store:  # checks every shard against its marker
        n_rows = store.n_stored
        size = sum(p.stat().st_size for p in store.files())
    say(
        lines,
        f"store: {n_rows:,} rows x {args.dim} (+ {args.classes} logits) float16 in "
        f"{n_shards:,} Parquet shards, {size / GIB:.1f} GiB on disk "
        f"({time.perf_counter() - start:.0f} s to {'check' if have == n_shards else 'write'})",
    )
    return root, n_rows


class PeakSampler:
    """Peak RSS of this process and all its descendants (the local Ray instance), by pid."""

    def __init__(self, every: float = 0.2) -> None:
        import psutil

        self.psutil, self.every = psutil, every
        self.peaks: dict[int, tuple[int, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = self.psutil.Process()
        while not self._stop.is_set():
            for proc in [me, *me.children(recursive=True)]:
                try:
                    rss = proc.memory_info().rss
                    name = " ".join(proc.cmdline()[:2])[-60:] or proc.name()
                except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
                    continue
                if rss > self.peaks.get(proc.pid, (0, ""))[0]:
                    self.peaks[proc.pid] = (rss, name)
            self._stop.wait(self.every)


def rows_part(args: argparse.Namespace, lines: list[str]) -> dict[str, float]:
    from imgclust.cluster.distributed import ShardPart, ShardSource, fit_kmeans
    from imgclust.engines.ray import RayEngine
    from imgclust.neardup import DEFAULT_THRESHOLD
    from imgclust.store import FeatureStore

    root, n_rows = fill_store(args, lines)
    with FeatureStore(root, "synthetic") as store:
        parts = tuple(ShardPart(int(p.stem.split("-")[1])) for p in store.files())
    source = ShardSource(str(root), "synthetic", "embedding", parts)
    task_peaks: dict[int, int] = {}

    def on_peak(pid: int, peak: int) -> None:
        task_peaks[pid] = max(peak, task_peaks.get(pid, 0))

    with PeakSampler() as sampler, RayEngine() as engine:
        ray = engine.connect()
        n_cpus = int(ray.cluster_resources().get("CPU", 0))
        start = time.perf_counter()
        result = fit_kmeans(
            ray, source, k=args.k, seed=0, work_dir=args.work / "passes", on_peak=on_peak,
            duplicates=None if args.no_describe else DEFAULT_THRESHOLD,
        )  # fmt: skip
        seconds = time.perf_counter() - start
    driver = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    all_rows = n_rows * args.dim * 2
    peaks = {pid: rss for pid, (rss, _) in sampler.peaks.items()}
    for pid, peak in task_peaks.items():
        peaks[pid] = max(peak, peaks.get(pid, 0))
    peaks[os.getpid()] = max(driver, peaks.get(os.getpid(), 0))
    worst = max(peaks.values())
    say(lines, f"distributed k-means (k={args.k}) over {result.n_rows:,} rows on a local Ray "
        f"instance ({n_cpus} CPUs): {seconds:.1f} s; passes (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items())
        + f"; trained on a sample of {result.n_sample:,} rows"
        + ("" if result.medoids is None else "; ranking pass with the features: medoids and "
           "near-duplicates"))  # fmt: skip
    say(lines, f"  cluster sizes {int(result.sizes.min()):,}..{int(result.sizes.max()):,}; "
        f"finite fences {int(np.isfinite(result.fences).sum())}/{len(result.fences)}")  # fmt: skip
    say(lines, f"  peak RSS per process ({len(peaks)} processes; the driver "
        f"{driver / GIB:.2f} GiB; task workers {len(task_peaks)}):")  # fmt: skip
    named = {pid: name for pid, (_, name) in sampler.peaks.items()}
    for pid, rss in sorted(peaks.items(), key=lambda kv: -kv[1])[:8]:
        who = "driver (this process)" if pid == os.getpid() else named.get(pid, "ray worker")
        say(lines, f"    {rss / GIB:5.2f} GiB  pid {pid}  {who}")
    say(lines, f"  largest process {worst / GIB:.2f} GiB; all rows' embeddings are "
        f"{all_rows / GIB:.2f} GiB")  # fmt: skip
    after = driver_part(args, lines, root, n_rows, result)
    shutil.rmtree(args.work / "passes", ignore_errors=True)
    return {"seconds": seconds, "worst": worst, "all_rows": all_rows, "n_rows": result.n_rows,
            **after}  # fmt: skip


def driver_part(
    args: argparse.Namespace, lines: list[str], root: Path, n_rows: int, result: DistributedKMeans
) -> dict[str, float]:
    """3. The driver's stages after the passes, on rows read from the store (see the module)."""
    import psutil

    from imgclust.cluster import row_features
    from imgclust.cluster.distributed import read_assignments
    from imgclust.describe import describe, name_and_group
    from imgclust.models import imagenet_class_names
    from imgclust.neardup import DEFAULT_THRESHOLD, near_duplicates
    from imgclust.pipeline import map_layout
    from imgclust.store import FeatureStore, StoredRows

    me = psutil.Process()
    before = me.memory_info().rss
    times: dict[str, float] = {}
    with PeakSampler() as sampler:
        start = time.perf_counter()
        paths = [f"/synthetic/{i // 1000:06d}/{i:09d}.jpg" for i in range(n_rows)]  # (sorted)
        with FeatureStore(root, "synthetic") as store:
            found = store.locate(paths)
        got = read_assignments(result, paths)
        labels, distances = got["labels"], got["distances"]
        feats = StoredRows(
            FeatureStore(root, "synthetic"), paths, found, "embedding", args.dim,
            transform=lambda _, rows: row_features("embedding", rows), scratch=args.work,
        )  # fmt: skip
        del found
        times["read back"] = time.perf_counter() - start
        print(f"  read back {times['read back']:.1f} s", flush=True)
        names = imagenet_class_names()[: args.classes]
        scores = {int(c): result.cluster_scores[c] for c in np.unique(labels)}
        start = time.perf_counter()
        clusters = describe(labels, distances, feats, scores, names, medoids=got.get("medoids"))
        times["describe"] = time.perf_counter() - start
        print(f"  describe {times['describe']:.1f} s", flush=True)
        if "duplicate_of" not in got and args.skip_neardup:
            print("  near-duplicates skipped (--skip-neardup)", flush=True)
        elif "duplicate_of" not in got:  # (the passes had no room for the features: here)
            start = time.perf_counter()
            near_duplicates(feats, labels, distances, threshold=DEFAULT_THRESHOLD)
            times["near-duplicates"] = time.perf_counter() - start
            print(f"  near-duplicates {times['near-duplicates']:.1f} s", flush=True)
        start = time.perf_counter()
        centroids = result.centroids
        clusters, tree = name_and_group(clusters, scores, centroids, feats, labels, names)
        times["names and groups"] = time.perf_counter() - start
        print(f"  names and groups {times['names and groups']:.1f} s", flush=True)
        start = time.perf_counter()
        _, coords = map_layout(
            feats, centroids, labels, distances, groups=None if tree is None else tree.groups
        )
        times["map"] = time.perf_counter() - start
    peak = max(rss for pid, (rss, _) in sampler.peaks.items() if pid == me.pid)
    all_rows = n_rows * args.dim * 2
    n_groups = 0 if tree is None else int(tree.groups.max()) + 1
    say(lines, f"the driver after the passes, {n_rows:,} rows read from the shards when "
        "indexed: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
        + f"; {feats.shards_read:,} shard reads; {len(clusters)} clusters, "
        f"{n_groups} groups, {len(coords):,} placed")  # fmt: skip
    say(lines, f"  driver RSS {before / GIB:.2f} GiB before, peak {peak / GIB:.2f} GiB in this "
        f"phase; all rows' embeddings are {all_rows / GIB:.2f} GiB")  # fmt: skip
    return {"driver_seconds": sum(times.values()), "driver_peak": peak}


# -- main ------------------------------------------------------------------------------------


def say(lines: list[str], text: str) -> None:
    print(text, flush=True)
    lines.append(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=3000, help="photos for Ray vs local (0: skip)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each engine, in turn")
    ap.add_argument("--k-photos", type=int, default=20, help="k of the photo runs")
    ap.add_argument("--rows", type=int, default=2_000_000, help="feature rows (0: skip)")
    ap.add_argument("--k", type=int, default=100, help="k of the distributed clustering")
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--shard", type=int, default=1024, help="rows per store shard")
    ap.add_argument("--no-describe", action="store_true",
                    help="the passes without the medoids and near-duplicates (the features "
                         "stay out of the ranking pass's shuffle)")  # fmt: skip
    ap.add_argument("--skip-neardup", action="store_true",
                    help="leave out the driver's near-duplicates where the passes had no "
                         "room for them (CPU-bound: over 35 min for 2M rows in clusters of "
                         "~20k here)")  # fmt: skip
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgclust-ray-scale"))
    ap.add_argument("--out", type=Path, help="also write the results here (markdown)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    cores = len(os.sched_getaffinity(0))
    say(lines, f"Machine: {platform.processor() or platform.machine()}, {cores} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GIB:.0f} GiB RAM, "
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    say(lines, "Command: PYTHONPATH=src python bench/ray_scale.py " + " ".join(sys.argv[1:]))
    table = ["| measured | value | target | ratio |", "|---|---|---|---|"]
    if args.photos:
        p = photos_part(args, lines)
        table.append(f"| Ray / local, `imgclust run` wall, {args.photos:,} photos (median of "
                     f"{args.repeats}) | {p['ray_wall']:.1f} s / {p['local_wall']:.1f} s | "
                     f"<= 1.3 | {p['ray_wall'] / p['local_wall']:.2f} |")  # fmt: skip
        embed = p["ray_embed"] / p["local_embed"]
        table.append(
            f"| Ray / local, embed stage | {p['ray_embed']:.1f} s / "
            f"{p['local_embed']:.1f} s | | {embed:.2f} |"
        )
        table.append(f"| Ray / local, cluster stage (k-means, k={args.k_photos}) | "
                     f"{p['ray_cluster']:.1f} s / {p['local_cluster']:.1f} s | | "
                     f"{p['ray_cluster'] / max(p['local_cluster'], 1e-3):.2f} |")  # fmt: skip
    if args.rows:
        r = rows_part(args, lines)
        table.append(f"| distributed k-means, {r['n_rows']:,} rows from Parquet, k={args.k} | "
                     f"{r['seconds']:.0f} s | | |")  # fmt: skip
        table.append(f"| largest process peak RSS / 2 GB | {r['worst'] / GIB:.2f} GiB | "
                     f"<= 2 GB | {r['worst'] / PER_PROCESS_TARGET:.2f} |")  # fmt: skip
        share = r["worst"] / r["all_rows"]
        table.append(
            f"| largest process peak / all rows' embeddings | {r['worst'] / GIB:.2f} / "
            f"{r['all_rows'] / GIB:.2f} GiB | < 1 | {share:.2f} |"
        )
        table.append(f"| the driver after the passes (describe, names, groups, map), "
                     f"{r['n_rows']:,} rows | {r['driver_seconds']:.0f} s | | |")  # fmt: skip
        table.append(f"| the driver's peak RSS then / all rows' embeddings | "
                     f"{r['driver_peak'] / GIB:.2f} / {r['all_rows'] / GIB:.2f} GiB | < 1 | "
                     f"{r['driver_peak'] / r['all_rows']:.2f} |")  # fmt: skip
    say(lines, "")
    for row in table:
        say(lines, row)
    if args.out:
        args.out.write_text("```\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
