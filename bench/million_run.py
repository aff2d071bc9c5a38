"""Million-image run, by hand: a real ``imgclust run`` over 1,000,000 files, after embedding.

Embedding a million photos on 2 cores takes hours, so this benchmark stands in for that one
stage and runs the real command for everything after it:

* ``--n`` image files: hard links to a few dozen real 1024x768 JPEGs (made from
  scikit-image's photos), 1,000 to a folder, so the scan stats a million real files;
* the feature store filled with synthetic float16 rows for exactly those files (1280-d
  embeddings drawn around hidden centres, logits whose top class follows the centre), in
  the shards and keys a real embed would have written, so the run embeds nothing;
* each file's gallery thumbnail in the output folder, as the decode workers leave it while
  embedding (a hard link to its source's thumbnail).

Then ``imgclust run PHOTOS --out OUT --cache STORE --k K`` runs in a child process: scan,
store lookup, features streamed into the similarity index, k-means, describe (one streamed
pass over the logits), layout, exports, the HTML report (every member page, the map) and
the saved clustering. Prints wall time per stage and the child's peak RSS against the
target (<= 4 GB beyond the model; no model is loaded when nothing is embedded), then times
``imgclust similar`` on the million-image index.

    PYTHONPATH=src python bench/million_run.py --n 1000000 --k 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import SIZES, machine, make_corpus

from imgclust.decode import make_thumbnail, thumb_relpath
from imgclust.embed import FeatureBlock
from imgclust.models import get_spec
from imgclust.store import FeatureStore

MODEL = "efficientnet_lite0"
PER_FOLDER = 1000


def make_files(root: Path, n: int, sources: list[Path]) -> list[tuple[str, int]]:
    """``n`` hard links under ``root`` → (path, index of its source)."""
    out = []
    for i in range(n):
        folder = root / f"f{i // PER_FOLDER:04d}"
        if i % PER_FOLDER == 0:
            folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img{i:07d}.jpg"
        src = i % len(sources)
        if not path.exists():
            os.link(sources[src], path)
        out.append((str(path), src))
    return out


def fill_store(store_dir: Path, files: list[tuple[str, int]], k: int, shard: int) -> None:
    """Synthetic features for ``files`` in the store, keyed as a real embed keys them."""
    spec = get_spec(MODEL)
    dim, n_classes = spec.embedding_dim, spec.n_classes
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (k, dim)).astype(np.float32)
    centre_class = rng.integers(0, n_classes, k)
    stats = {src: os.stat(p) for p, src in files[: max(s for _, s in files) + 1]}
    with FeatureStore(store_dir, spec.name) as store:
        if store.n_stored >= len(files):
            return
        for start in range(0, len(files), shard):
            part = files[start : start + shard]
            m = len(part)
            which = rng.integers(0, k, m)
            block = FeatureBlock()
            block.paths = [p for p, _ in part]
            block.sizes = [stats[s].st_size for _, s in part]
            block.mtimes = [stats[s].st_mtime_ns for _, s in part]
            emb = centres[which] + rng.normal(0, 0.6, (m, dim)).astype(np.float32)
            logits = rng.normal(0, 2, (m, n_classes)).astype(np.float32)
            logits[np.arange(m), centre_class[which]] += 8.0
            block.embeddings = [emb.astype(np.float16)]
            block.logits = [logits.astype(np.float16)]
            store.write(block, n_classes, dim)


def place_thumbnails(out: Path, files: list[tuple[str, int]], sources: list[Path]) -> None:
    """Each file's thumbnail where the decode workers would have left it."""
    size = 160  # ReportConfig.thumb_size's default
    made = out / "thumb-sources"
    made.mkdir(parents=True, exist_ok=True)
    thumbs = []
    for i, src in enumerate(sources):
        dest = made / f"{i}.jpg"
        if not dest.exists():
            make_thumbnail(str(src), str(dest), max_side=size)
        thumbs.append(dest)
    for path, src in files:
        dest = out / thumb_relpath(path, size)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(thumbs[src], dest)
    shutil.rmtree(made)


def timed_child(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd``; (seconds, peak RSS GiB of the child, its stdout+stderr)."""
    code = (
        "import resource,subprocess,sys,json,time;t=time.perf_counter();"
        "r=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
        "print(json.dumps([time.perf_counter()-t,"
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,r.returncode,"
        "r.stdout+r.stderr]))"
    )
    res = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True)
    seconds, rss_kib, rc, output = json.loads(res.stdout.strip().splitlines()[-1])
    if rc:
        raise SystemExit(f"{' '.join(cmd)} failed ({rc}):\n{output[-3000:]}")
    return seconds, rss_kib / 2**20, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--sources", type=int, default=64)
    parser.add_argument("--shard", type=int, default=8192)
    parser.add_argument("--root", type=Path, default=Path("/tmp/imgclust-million"))
    parser.add_argument("--keep", action="store_true", help="keep the files for another run")
    args = parser.parse_args()
    global MODEL
    from imgclust.config import EmbedConfig
    from imgclust.embed import model_for

    # The store is keyed by the model in the precision the run resolves to (int8 by default
    # on OpenVINO): filled under any other name, the run would embed a million photos.
    MODEL = model_for(EmbedConfig())

    root = args.root
    photos, store, out = root / "photos", root / "store", root / "out"
    t0 = time.perf_counter()
    sources = make_corpus(root / "sources", SIZES["web"], args.sources)
    files = make_files(photos, args.n, sources)
    fill_store(store, files, args.k, args.shard)
    shutil.rmtree(out, ignore_errors=True)
    place_thumbnails(out, files, sources)
    (out / ".imgclust").mkdir(parents=True, exist_ok=True)  # an imgclust output folder
    print(f"set-up: {args.n:,} files, store and thumbnails in {time.perf_counter() - t0:.0f} s",
          flush=True)  # fmt: skip

    run = [sys.executable, "-m", "imgclust.cli", "run", str(photos), "--out", str(out),
           "--cache", str(store), "--k", str(args.k), "--quiet"]  # fmt: skip
    seconds, rss, _ = timed_child(run)
    info = json.loads((out / ".imgclust" / "run.json").read_text())
    if info["n_embedded"]:
        raise SystemExit(f"the run embedded {info['n_embedded']:,} photos: store not matched")
    query = files[12345 % len(files)][0]
    sim = [sys.executable, "-m", "imgclust.cli", "similar", query, "--in", str(out), "-n", "20"]
    sim_s, sim_rss, sim_out = timed_child(sim)
    index_gib = (out / ".imgclust" / "index.faiss").stat().st_size / 2**30

    target = 4e9 / 2**30
    print(f"\nMachine: {machine()}; {platform.platform()}")
    print(f"Command: PYTHONPATH=src python bench/million_run.py --n {args.n} --k {args.k}\n")
    print(f"imgclust run: {info['n_clustered']:,} images, {info['n_embedded']} embedded, "
          f"k={info['k']}: {seconds:.0f} s wall; stages (s): {info['timings']}")  # fmt: skip
    print(f"imgclust similar (one query, {args.n:,}-image index of {index_gib:.2f} GiB): "
          f"{sim_s:.1f} s wall, peak RSS {sim_rss:.2f} GiB")  # fmt: skip
    print(sim_out.strip().splitlines()[0] if sim_out.strip() else "")
    print("\n| target | measured | target value | ratio |\n|---|---|---|---|")
    print(f"| peak RSS of `imgclust run`, {args.n:,} images (no model loaded) | {rss:.2f} GiB "
          f"| <= 4 GB ({target:.2f} GiB) | {rss / target:.2f} |")  # fmt: skip
    cluster_s = info["timings"].get("load", 0) + info["timings"].get("cluster", 0)
    print(f"| store -> clusters (load + k-means, k={args.k}) | {cluster_s:.0f} s | <= 300 s "
          f"| {cluster_s / 300:.2f} |")  # fmt: skip
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
