"""The built-in demo: a sample folder made from the photos scikit-image ships.

Each source photo becomes several variants (crops, flips, small rotations, exposure and
JPEG-quality changes), so the right answer is visible: one cluster per source photo. A
corrupt file and a non-image file are planted to show that they are reported, not fatal.
"""

from __future__ import annotations

import os
import random
from importlib import resources
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

from .exceptions import InputError

#: scikit-image sample photos used by the demo (files in ``skimage/data``).
DEMO_SOURCES = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
    "hubble_deep_field.jpg", "camera.png", "coins.png", "moon.png", "page.png", "brick.png",
    "retina.jpg",
)  # fmt: skip
VARIANTS_PER_SOURCE = 8


def _skimage_data_dir() -> Path:
    try:
        return Path(str(resources.files("skimage") / "data"))
    except ModuleNotFoundError:
        raise InputError(
            "the demo photos come from scikit-image; run: pip install 'imgclust[demo]'"
        ) from None


def _variants(img: Image.Image, rng: random.Random) -> list[Image.Image]:
    w, h = img.size
    out = [img, ImageOps.mirror(img)]
    for _ in range(3):
        frac = rng.uniform(0.55, 0.85)
        cw, ch = int(w * frac), int(h * frac)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        out.append(img.crop((x, y, x + cw, y + ch)))
    out.append(img.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BICUBIC, expand=False))
    out.append(ImageEnhance.Brightness(img).enhance(rng.uniform(0.6, 1.4)))
    out.append(ImageEnhance.Contrast(ImageOps.mirror(img)).enhance(rng.uniform(0.6, 1.4)))
    return out[:VARIANTS_PER_SOURCE]


#: Written first into a demo folder: a folder holding it is the demo's (whole or cut
#: short), and the demo may write there; ``.demo-complete`` says it is whole.
MARKER = ".imgclust-demo"


def make_demo_photos(dest: Path, *, seed: int = 0) -> Path:
    """Write the demo folder to ``dest`` (kept if it already holds the demo) and return it.

    Raises:
        InputError: ``dest`` holds files the demo did not write (they are never touched),
            or is not a folder.
    """
    dest = Path(dest)
    done = dest / ".demo-complete"
    if done.exists():
        return dest
    if os.path.lexists(dest) and not dest.is_dir():
        raise InputError(f"--photos {dest} is not a folder; choose a new or empty folder")
    if dest.is_dir() and not (dest / MARKER).exists() and any(dest.iterdir()):
        raise InputError(
            f"--photos {dest} already holds files that `imgclust demo` did not make, and the "
            "demo would write over them; choose a new or empty folder"
        )
    src_dir = _skimage_data_dir()
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MARKER).write_text("imgclust demo photos\n")
    rng = random.Random(seed)
    for name in DEMO_SOURCES:
        stem = Path(name).stem
        folder = dest / stem
        folder.mkdir(parents=True, exist_ok=True)
        with Image.open(src_dir / name) as source:
            img = source.convert("RGB")
        for i, variant in enumerate(_variants(img, rng)):
            quality = rng.choice([70, 85, 95])
            variant.save(folder / f"{stem}-{i}.jpg", "JPEG", quality=quality)
    (dest / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (dest / "README.txt").write_text("imgclust demo photos, made from scikit-image samples\n")
    done.write_text("ok\n")
    return dest


__all__ = ["DEMO_SOURCES", "make_demo_photos"]
