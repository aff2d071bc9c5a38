"""Calibrate the near-duplicate threshold: cosine distances of the default model's embedding
between a photo and its re-saves/resizes/crops/exposure tweaks, versus distinct photos of
the same class. Nothing is copied into the repository; variants go to a temporary folder.

Sources: scikit-image sample photos, one photo per class of intel-scenes-dev and a few
COIL-100 objects (whose views 5 degrees apart stand in for burst shots).

    PYTHONPATH=src python bench/dup_threshold.py [DATASETS]   # default /work/shared/datasets
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from importlib import resources
from itertools import combinations, pairwise
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from imgclust.embed import Embedder
from imgclust.scan import scan

SKIMAGE = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
           "camera.png", "coins.png")  # fmt: skip


def _crop(frac: float) -> Callable[[Image.Image], Image.Image]:
    def f(img: Image.Image) -> Image.Image:
        w, h = img.size
        dx, dy = int(w * frac / 2), int(h * frac / 2)
        return img.crop((dx, dy, w - dx, h - dy))

    return f


def _resize(frac: float) -> Callable[[Image.Image], Image.Image]:
    return lambda img: img.resize((max(1, int(img.width * frac)), max(1, int(img.height * frac))))


EDITS: dict[str, tuple[Callable[[Image.Image], Image.Image], int]] = {
    "jpeg q90": (lambda i: i, 90),
    "jpeg q50": (lambda i: i, 50),
    "jpeg q20": (lambda i: i, 20),
    "resize 50%": (_resize(0.5), 90),
    "resize 25%": (_resize(0.25), 90),
    "crop 5%": (_crop(0.05), 90),
    "crop 10%": (_crop(0.10), 90),
    "crop 20%": (_crop(0.20), 90),
    "brightness +15%": (lambda i: ImageEnhance.Brightness(i).enhance(1.15), 90),
    "brightness -15%": (lambda i: ImageEnhance.Brightness(i).enhance(0.85), 90),
    "rotate 2deg": (lambda i: i.rotate(2, resample=Image.Resampling.BICUBIC), 90),
}


def _embed(paths: list[Path], embedder: Embedder) -> dict[str, np.ndarray]:
    records = scan(paths).records
    block = embedder(records)
    emb = block.embedding_array(embedder.spec.embedding_dim).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return dict(zip(block.paths, emb, strict=True))


def _q(values: list[float]) -> str:
    a = np.asarray(values)
    p5, p50, p95 = np.percentile(a, [5, 50, 95])
    return (
        f"n={len(a):4d} min {a.min():.4f}  p5 {p5:.4f}  median {p50:.4f}  "
        f"p95 {p95:.4f}  max {a.max():.4f}"
    )


def main() -> None:
    datasets = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/datasets")
    scenes = sorted((datasets / "intel-scenes-dev").iterdir())
    coil = sorted((datasets / "coil100-dev").iterdir())[:6]
    embedder = Embedder("efficientnet_lite0", workers=0, device="cpu")
    tmp = Path(tempfile.mkdtemp(prefix="imgclust-dup-"))
    sources = [Path(str(resources.files("skimage") / "data" / n)) for n in SKIMAGE]
    sources += [sorted(c.iterdir())[0] for c in scenes]
    sources += [c / f"{c.name}__0.png" for c in coil]
    originals, variants = [], {name: [] for name in EDITS}  # type: ignore[var-annotated]
    for s, src in enumerate(sources):
        img = Image.open(src).convert("RGB")
        orig = tmp / f"{s:02d}-orig.png"
        img.save(orig)
        originals.append(orig)
        for e, (name, (edit, quality)) in enumerate(EDITS.items()):
            dest = tmp / f"{s:02d}-edit{e:02d}.jpg"
            edit(img).save(dest, quality=quality)
            variants[name].append((orig, dest))
    burst, views = [], []
    for c in coil:  # views of one object: 5-10 degrees apart ~ a burst; 40+ degrees: not
        angles = sorted(int(p.stem.rsplit("_", 1)[1]) for p in c.glob("*.png"))
        view = {a: c / f"{c.name}__{a}.png" for a in angles}
        burst += [(view[a], view[b]) for a, b in pairwise(angles) if b - a <= 10]
        views += [
            (view[a], view[b]) for a, b in zip(angles, angles[4:], strict=False) if b - a >= 40
        ]
    same_class = [sorted(c.iterdir())[:25] for c in scenes]
    wanted = {p for pairs in (*variants.values(), burst, views) for pair in pairs for p in pair}
    wanted |= {p for photos in same_class for p in photos}
    emb = _embed(sorted(wanted), embedder)

    def dist(a: Path, b: Path) -> float:
        return float(1.0 - emb[str(a)] @ emb[str(b)])

    print("cosine distance (1 - cos) of efficientnet_lite0 embeddings, L2-normalised\n")
    print("same photo, edited (should be grouped):")
    for name, pairs in variants.items():
        print(f"  {name:16s} {_q([dist(a, b) for a, b in pairs])}")
    print(f"  {'COIL 5-10deg':16s} {_q([dist(a, b) for a, b in burst])}")
    print("different shots (should stay apart):")
    print(f"  {'COIL 40+deg':16s} {_q([dist(a, b) for a, b in views])}")
    pairs = [dist(a, b) for photos in same_class for a, b in combinations(photos, 2)]
    print(f"  {'scenes same class':16s} {_q(pairs)}")
    kinds = {"skimage (~512 px)": range(len(SKIMAGE)),
             "scenes (150 px)": range(len(SKIMAGE), len(SKIMAGE) + len(scenes)),
             "COIL (128 px)": range(len(SKIMAGE) + len(scenes), len(sources))}  # fmt: skip
    print("\nedits grouped, by source, at thresholds:")
    cuts = (0.06, 0.08, 0.1, 0.12, 0.15)
    print(f"  {'':18s}" + "".join(f"{c:>8}" for c in cuts))
    for kind, rows in kinds.items():
        d = np.array([dist(*variants[name][r]) for name in EDITS if "25%" not in name
                      for r in rows])  # fmt: skip
        print(f"  {kind:18s}" + "".join(f"{(d < c).mean():8.0%}" for c in cuts))
    for name, values in (("COIL 5-10deg", [dist(a, b) for a, b in burst]),
                         ("COIL 40+deg", [dist(a, b) for a, b in views]),
                         ("scenes same class", pairs)):  # fmt: skip
        d = np.array(values)
        print(f"  {name:18s}" + "".join(f"{(d < c).mean():8.1%}" for c in cuts))


if __name__ == "__main__":
    main()
