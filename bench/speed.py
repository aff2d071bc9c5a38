"""Speed benchmark, run by hand: decode, model and end-to-end img/s beside fastdup's.

Builds its own corpus from scikit-image's sample photos (random crops, flips and colour
jitter, resized): phone photos (4032x3024 JPEG q90) and web photos (1024x768 JPEG q90).
Then prints, per size: decode-only img/s (all cores), model-only img/s per runtime,
end-to-end ``imgclust run`` img/s and peak RSS, the end-to-end/limit ratio, and fastdup's
end-to-end rate on the same files when a Python with fastdup is given (``--fastdup-python``).

    PYTHONPATH=src python bench/speed.py --n 300 --out bench/results/speed-cpu.md
    PYTHONPATH=src python bench/speed.py --device cuda --batch-size 256 --sizes web
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

SIZES = {"phone": (4032, 3024), "web": (1024, 768)}
SOURCES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
           "hubble_deep_field.jpg", "immunohistochemistry.png", "retina.jpg", "color.png",
           "logo.png", "page.png", "camera.png")  # fmt: skip


def make_corpus(folder: Path, size: tuple[int, int], n: int, seed: int = 0) -> list[Path]:
    """``n`` JPEGs of ``size`` made from scikit-image's photos (crop, flip, jitter, resize)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = Path(str(resources.files("skimage") / "data"))
    photos = [Image.open(data / s).convert("RGB") for s in SOURCES if (data / s).exists()]
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"img{i:05d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        img = photos[i % len(photos)]
        w, h = img.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        out = img.crop((x0, y0, x0 + cw, y0 + ch))
        if rng.random() < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out = ImageEnhance.Color(out).enhance(rng.uniform(0.7, 1.3))
        out = out.resize(size, Image.Resampling.BICUBIC)
        # Sensor-like noise, so JPEG sizes are those of photos rather than of smooth upscales.
        arr = np.asarray(out, dtype=np.int16) + rng.normal(0, 4, (size[1], size[0], 1)).astype(
            np.int16
        )
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=90)
    return paths


def _decode_one(path: str) -> bool:
    from imgclust.decode import decode
    from imgclust.models import get_spec

    return decode(path, get_spec("efficientnet_lite0").preprocess).array is not None


def decode_rate(paths: list[Path], workers: int) -> float:
    """Decode + resize + crop img/s with ``workers`` processes."""
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_decode_one, [str(p) for p in paths[: 2 * workers]]))  # warm up
        start = time.perf_counter()
        ok = sum(pool.map(_decode_one, [str(p) for p in paths], chunksize=4))
        elapsed = time.perf_counter() - start
    assert ok == len(paths)
    return len(paths) / elapsed


MODEL = "efficientnet_lite0"  # in the resolved --precision: "efficientnet_lite0+int8", ...


def model_rate(runtime: str, device: str, batch_size: int, seconds: float = 15.0) -> float:
    """Model-only img/s on real decoded photos, batches of ``batch_size``."""
    from imgclust.decode import decode
    from imgclust.models import get_spec, split_precision
    from imgclust.models.runtime import create_runtime

    pre = get_spec(MODEL).preprocess
    data = Path(str(resources.files("skimage") / "data"))
    arrays = [decode(str(data / s), pre).array for s in SOURCES if (data / s).exists()]
    batch = np.stack([arrays[i % len(arrays)] for i in range(batch_size)])  # type: ignore[misc]
    name = MODEL
    if runtime == "torch" and split_precision(MODEL)[1] == "int8":  # OpenVINO only
        name = split_precision(MODEL)[0]
        print("    (torch has no int8 path: torch runs fp32)", flush=True)
    model = create_runtime(name, runtime=runtime, device=device)
    model(batch)
    model(batch)
    n, start, cpu = 0, time.perf_counter(), time.process_time()

    def batches():  # as a run feeds it: a stream of batches, several in flight where it can
        sent = 0
        while time.perf_counter() - start < seconds or sent < 3:
            sent += 1
            yield sent, batch

    for _ in model.map(batches()):
        n += batch_size
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    # On a shared, busy machine wall-clock rates understate the hardware: images per CPU
    # second times the cores estimates the rate with the cores to ourselves.
    print(
        f"    ({runtime}: {n / cpu:.1f} img per CPU-second, x{len(os.sched_getaffinity(0))} cores"
        f" = {n / cpu * len(os.sched_getaffinity(0)):.1f} img/s if uncontended)",
        flush=True,
    )
    return n / wall


def end_to_end(folder: Path, args: argparse.Namespace, runtime: str) -> tuple[float, float]:
    """``imgclust run`` on ``folder`` in a fresh process: (img/s, peak RSS GiB of the tree)."""
    out = Path(tempfile.mkdtemp(prefix="imgclust-bench-"))
    cmd = [sys.executable, "-m", "imgclust.cli", "run", str(folder), "--out", str(out / "o"),
           "--k", "12", "--quiet", "--runtime", runtime, "--device", args.device,
           "--batch-size", str(args.batch_size), "--cache", str(out / "store"),
           "--precision", args.precision]  # fmt: skip
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    code = "import resource,subprocess,sys,json,time;t=time.perf_counter();" \
        "subprocess.run(sys.argv[1:],check=True);" \
        "print(json.dumps([time.perf_counter()-t," \
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))"  # fmt: skip
    res = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"imgclust run failed:\n{res.stderr[-3000:]}")
    seconds, rss_kib = json.loads(res.stdout.strip().splitlines()[-1])
    info = json.loads((out / "o" / ".imgclust" / "run.json").read_text())
    n = info["n_clustered"]
    embed_s = info["timings"].get("embed", seconds)
    print(f"    timings: {info['timings']}", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    return n / seconds, n / embed_s, rss_kib / 2**20  # type: ignore[return-value]


FASTDUP_SCRIPT = """
import os, sys, time, resource
os.environ["SENTRY_OPT_OUT"] = "1"
import fastdup
src, work = sys.argv[1], sys.argv[2]
t = time.perf_counter()
fd = fastdup.create(work_dir=work, input_dir=src)
fd.run(overwrite=True, verbose=False)
print("FASTDUP", time.perf_counter() - t,
      max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
          resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
"""


def fastdup_rate(folder: Path, n: int, python: str) -> tuple[float, float] | None:
    """fastdup's end-to-end img/s and peak RSS (GiB) on the same files, or None."""
    work = Path(tempfile.mkdtemp(prefix="fastdup-bench-"))
    env = dict(os.environ, SENTRY_OPT_OUT="1", PYTHONPATH="")
    res = subprocess.run([python, "-c", FASTDUP_SCRIPT, str(folder), str(work)],
                         capture_output=True, text=True, env=env)  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    line = [x for x in res.stdout.splitlines() if x.startswith("FASTDUP")]
    if res.returncode or not line:
        print(f"    fastdup failed: {res.stderr[-1500:]}", flush=True)
        return None
    _, seconds, rss = line[0].split()
    return n / float(seconds), float(rss) / 2**20


def machine() -> str:
    """One line describing this machine."""
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = Path("/proc/cpuinfo").read_text()
        simd = "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "no AVX2")
    except OSError:
        simd = "?"
    cores = len(os.sched_getaffinity(0))
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return (
        f"{cpu} ({simd}), {cores} cores, {mem:.0f} GiB RAM{gpu}, Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="photos per size")
    parser.add_argument("--sizes", default="web,phone")
    parser.add_argument(
        "--corpus", type=Path, default=Path(tempfile.gettempdir()) / "imgclust-speed"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--runtimes", default=None, help="default: torch,openvino on cpu; torch on cuda"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--precision", default="auto", help="auto (the run's default), fp32, bf16 or int8"
    )
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--fastdup-python", default=None, help="a python with fastdup installed")
    parser.add_argument("--model-only", action="store_true", help="stop after model-only")
    parser.add_argument("--out", type=Path, default=None, help="write a markdown table here")
    args = parser.parse_args()
    global MODEL
    from imgclust.config import EmbedConfig
    from imgclust.embed import model_for

    MODEL = model_for(EmbedConfig(model=MODEL, precision=args.precision, device=args.device))
    print(f"model {MODEL} (--precision {args.precision})", flush=True)
    runtimes = (args.runtimes or ("torch,openvino" if args.device == "cpu" else "torch")).split(",")
    cores = len(os.sched_getaffinity(0))
    workers = args.workers or min(cores, 16)
    desc = machine()
    print(desc, flush=True)

    model = {}
    for rt in runtimes:
        model[rt] = model_rate(rt, args.device, args.batch_size)
        print(f"model-only {rt}: {model[rt]:.1f} img/s (batch {args.batch_size})", flush=True)
    best = max(model, key=model.__getitem__)
    if args.model_only:
        return

    rows = []
    for name in args.sizes.split(","):
        w, h = SIZES[name]
        folder = args.corpus / f"{name}-{w}x{h}"
        t = time.perf_counter()
        paths = make_corpus(folder, (w, h), args.n)
        print(f"[{name}] {len(paths)} JPEGs {w}x{h} in {folder} ({time.perf_counter() - t:.0f} s)")
        dec = decode_rate(paths, workers)
        print(f"  decode-only ({workers} procs): {dec:.1f} img/s", flush=True)
        # Decode and model share the cores on a CPU run; on a GPU the model has its own.
        limit = 1 / (1 / dec + 1 / model[best]) if args.device == "cpu" else min(dec, model[best])
        e2e, embed_rate, rss = end_to_end(folder, args, best)
        print(f"  end-to-end imgclust ({best}): {e2e:.1f} img/s (embed stage {embed_rate:.1f}),"
              f" peak RSS {rss:.2f} GiB; limit {limit:.1f}, ratio {e2e / limit:.2f}",
              flush=True)  # fmt: skip
        fd = fastdup_rate(folder, len(paths), args.fastdup_python) if args.fastdup_python else None
        if fd:
            print(f"  fastdup: {fd[0]:.1f} img/s, peak RSS {fd[1]:.2f} GiB; "
                  f"imgclust/fastdup {e2e / fd[0]:.2f}", flush=True)  # fmt: skip
        rows.append((name, f"{w}x{h}", len(paths), dec, limit, e2e, embed_rate, rss, fd))

    if args.out:
        lines = [f"Machine: {desc}", "",
                 f"Model-only ({MODEL}, --precision {args.precision}, batch {args.batch_size}, "
                 f"{args.device}): "
                 + ", ".join(f"{k} {v:.1f} img/s" for k, v in model.items()), "",
                 "| corpus | n | decode-only img/s | limit img/s | imgclust run img/s | embed "
                 "stage img/s | e2e/limit | peak RSS GiB | fastdup img/s | fastdup RSS GiB |"
                 " imgclust/fastdup |",
                 "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, size, n, dec, limit, e2e, er, rss, fd in rows:
            fds = (f"{fd[0]:.1f} | {fd[1]:.2f} | {e2e / fd[0]:.2f}x") if fd else "- | - | -"
            lines.append(f"| {name} {size} | {n} | {dec:.1f} | {limit:.1f} | {e2e:.1f} | "
                         f"{er:.1f} | {e2e / limit:.2f} | {rss:.2f} | {fds} |")  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
