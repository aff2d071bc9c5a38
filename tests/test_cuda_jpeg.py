"""The nvjpeg embed path (run here on the CPU through the same torchvision calls)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclust.cuda_jpeg import CudaJpegEmbedder
from imgclust.decode import decode

SKIMAGE_DATA = Path(str(resources.files("skimage") / "data"))


@pytest.mark.slow
def test_jpeg_path_matches_pillow_path_and_reports_rejects(tmp_path: Path) -> None:
    rocket = str(SKIMAGE_DATA / "rocket.jpg")
    rotated = tmp_path / "rotated.jpg"  # an EXIF rotation: must take the CPU decoder
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(SKIMAGE_DATA / "coffee.png").convert("RGB").save(rotated, exif=exif)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(Path(rocket).read_bytes()[:300])
    paths = [rocket, str(SKIMAGE_DATA / "chelsea.png"), str(rotated), str(broken)]

    embedder = CudaJpegEmbedder("efficientnet_lite0", batch_size=4, device="cpu")
    batches = list(embedder.iter_batches(paths))
    done = [p for b in batches for p in b[0]]
    rejected = [r for b in batches for r in b[3]]
    assert sorted(done) == sorted(paths[:3])
    assert [p for p, _ in rejected] == [str(broken)]
    logits = np.concatenate([b[1] for b in batches])
    assert logits.shape == (3, 1000) and np.concatenate([b[2] for b in batches]).shape[0] == 3
    for path, row in zip(done, logits, strict=True):
        ref = embedder.runtime(decode(path, embedder.spec.preprocess).array[None])[0][0]  # type: ignore[index]
        assert ref.argmax() == row.argmax()
        assert np.corrcoef(ref, row)[0, 1] > 0.99
