"""int8 post-training quantisation of a converted model (NNCF), behind ``--precision int8``.

OpenVINO runs int8 convolutions with VNNI / AMX where the CPU has them, about 3x the fp32
rate on an AVX-512 VNNI laptop CPU (``bench/results/speed-cpu.md``). The int8 model is
calibrated once and cached beside the converted fp32 model, so only the first run pays
(~25 s). Calibration images are the colour photos scikit-image ships (public domain), each
seen as several random square crops and flips through the model's own resize and centre
crop, so the activation ranges come from real photos and no download is needed.

The int8 features are their own feature space (stored apart, like bf16); their cluster
quality against fp32 is measured in ``bench/results/quality.md``.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import io
import logging
import os
from typing import Any

import numpy as np

from ..exceptions import ModelUnavailableError

log = logging.getLogger(__name__)

#: Calibration samples (NNCF's own default subset size).
CALIBRATION_SAMPLES = 300


def int8_available() -> bool:
    """Whether the packages int8 needs (nncf, scikit-image) are importable: both are
    dependencies, nncf only where openvino is."""
    return all(importlib.util.find_spec(m) is not None for m in ("nncf", "skimage"))


def calibration_images(size: int, n: int = CALIBRATION_SAMPLES, seed: int = 0) -> list[np.ndarray]:
    """``n`` uint8 ``(1, size, size, 3)`` crops of scikit-image's colour photos."""
    import skimage
    from PIL import Image

    from ..decode import to_rgb

    folder = os.path.join(os.path.dirname(skimage.__file__), "data")
    photos: list[Image.Image] = []
    paths = glob.glob(os.path.join(folder, "*.png")) + glob.glob(os.path.join(folder, "*.jpg"))
    for path in sorted(paths):
        with Image.open(path) as src:
            if src.mode in ("RGB", "RGBA", "P") and min(src.size) >= 200:
                photos.append(to_rgb(src).copy())
    if not photos:
        raise ModelUnavailableError(f"no calibration photos found in {folder}")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        w, h = img.size
        side = int(min(w, h) * rng.uniform(0.35, 1.0))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = img.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append(np.asarray(crop, dtype=np.uint8)[None])
    return out


def quantize_int8(ir: Any, size: int) -> Any:
    """The int8 version of the OpenVINO model ``ir`` (uint8 NHWC input of ``size``).

    Raises:
        ModelUnavailableError: nncf or scikit-image is not installed.
    """
    if not int8_available():
        raise ModelUnavailableError(
            "--precision int8 needs nncf and scikit-image: pip install nncf scikit-image "
            "(or pass --precision fp32)"
        )
    log.info("calibrating the int8 model (once; cached for later runs)")
    quiet = [logging.getLogger(name) for name in ("nncf", "torch.utils.cpp_extension")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    # NNCF draws its own progress bars on stdout; the pipeline has its own.
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            import nncf

            samples = calibration_images(size)
            # Full bias correction: ~5 s more than the fast one, once, for features nearer
            # fp32 (mean embedding cosine 0.985 against 0.979 on the labelled sets).
            return nncf.quantize(
                ir, nncf.Dataset(samples), subset_size=len(samples), fast_bias_correction=False
            )
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
