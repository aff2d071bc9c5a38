"""decode: every hostile file is decoded right or rejected with a reason, never raised."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from corpus import CASES, encode, noise, pattern
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imgclust.decode import DecodeFailure, decode, make_thumbnail, open_rgb, to_rgb
from imgclust.models.spec import Preprocess

PRE = Preprocess(
    input_size=224, crop_pct=0.875, interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3
)
SHAPE = (PRE.input_size, PRE.input_size, 3)


def decoded(path: str | Path, **kwargs: int) -> np.ndarray:
    out = decode(str(path), PRE, **kwargs)
    assert out.reason is None, out.reason
    assert out.array is not None
    assert out.array.shape == SHAPE and out.array.dtype == np.uint8
    return out.array.astype(np.float64)


@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus_case(name: str, tmp_path: Path) -> None:
    case = CASES[name](tmp_path)
    out = decode(case.path, PRE)
    if case.reason is not None:
        assert out.array is None
        assert out.reason and case.reason in out.reason, out.reason
        return
    assert case.reference is not None
    got, want = decoded(case.path), decoded(case.reference)
    assert np.abs(got - want).mean() <= case.tolerance
    np.testing.assert_allclose(got.mean((0, 1)), want.mean((0, 1)), atol=case.tolerance)
    st_ = os.stat(case.path)
    assert (out.size, out.mtime_ns) == (st_.st_size, st_.st_mtime_ns)


def test_sixteen_bit_mid_grey_is_mid_grey(tmp_path: Path) -> None:
    path = tmp_path / "g16.png"
    Image.fromarray(np.full((20, 30), 32768, np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I;16")
    assert abs(decoded(path).mean() - 127.5) <= 1.0


@pytest.mark.parametrize("name", ["exif_orientation_6", "exif_orientation_8"])
def test_exif_rotation_is_checked_for_real(name: str, tmp_path: Path) -> None:
    # The reference comparison in test_corpus_case must be able to fail: a wrong rotation
    # of the same picture is far from the upright one.
    case = CASES[name](tmp_path)
    assert case.reference is not None
    wrong = tmp_path / "wrong.png"
    Image.open(case.reference).transpose(Image.Transpose.ROTATE_180).save(wrong)
    assert np.abs(decoded(case.path) - decoded(wrong)).mean() > 40


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("big") / "big.jpg"
    pattern(4000, 3000).save(path, quality=90)
    return str(path)


def test_jpeg_draft_mode_decodes_at_reduced_scale(big_jpeg: str) -> None:
    img, st_, _ = open_rgb(big_jpeg, min_side=256)
    assert img.mode == "RGB"
    assert 256 <= min(img.size) < 512  # 1/8 scale: 500x375, not 4000x3000
    assert st_.st_size == os.path.getsize(big_jpeg)
    full = open_rgb(big_jpeg).image
    assert full.size == (4000, 3000)


def test_mpo_gets_draft_mode_too(tmp_path: Path) -> None:
    path = tmp_path / "camera.mpo"
    pattern(2048, 1536).save(path, "MPO", save_all=True, append_images=[pattern(2048, 1536)])
    img = open_rgb(str(path), min_side=256).image
    assert min(img.size) < 512


def test_large_jpeg_decodes_to_model_input(big_jpeg: str) -> None:
    arr = decoded(big_jpeg)
    assert arr.shape == SHAPE
    # the centre crop of the pattern holds both the red and the blue half
    assert arr[112, 20, 0] > 150 and arr[112, 200, 2] > 150


def test_own_pixel_limit(tmp_path: Path) -> None:
    path = tmp_path / "ok.png"
    pattern(100, 100).save(path)
    out = decode(str(path), PRE, max_pixels=1000)
    assert out.array is None and out.reason is not None
    assert "decompression bomb: 100x100 exceeds 1,000 pixels" in out.reason


def test_file_deleted_after_scan(tmp_path: Path) -> None:
    path = tmp_path / "gone.jpg"
    pattern(40, 30).save(path)
    path.unlink()
    out = decode(str(path), PRE)
    assert out.array is None and out.reason is not None
    assert out.reason.startswith("file disappeared")


def test_file_rewritten_after_scan_reports_new_stat(tmp_path: Path) -> None:
    path = tmp_path / "changing.jpg"
    pattern(40, 30).save(path)
    before = os.stat(path)
    noise(64, 64).save(path, quality=95)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 5_000_000_000))
    out = decode(str(path), PRE)
    assert out.array is not None
    assert out.size == os.path.getsize(path) != before.st_size
    assert out.mtime_ns == before.st_mtime_ns + 5_000_000_000


def test_duplicates_decode_identically(tmp_path: Path) -> None:
    data = encode(pattern(40, 30), "JPEG")
    (tmp_path / "one.jpg").write_bytes(data)
    (tmp_path / "two.jpg").write_bytes(data)
    np.testing.assert_array_equal(decoded(tmp_path / "one.jpg"), decoded(tmp_path / "two.jpg"))


MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"]
MODES += ["HSV", "I", "I;16", "I;16B", "I;16L", "F"]


@pytest.mark.parametrize("mode", MODES)
def test_to_rgb_handles_every_mode(mode: str) -> None:
    try:
        rgb = to_rgb(Image.new(mode, (4, 3)))
    except DecodeFailure as exc:  # allowed, with a reason, for modes Pillow cannot convert
        assert "unsupported colour mode" in str(exc)
        return
    assert rgb.mode == "RGB" and rgb.size == (4, 3)


def test_premultiplied_alpha_flattens_on_white() -> None:
    assert to_rgb(Image.new("RGBa", (2, 2), (0, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)


def test_make_thumbnail(tmp_path: Path) -> None:
    src, bad = tmp_path / "src.jpg", tmp_path / "bad.jpg"
    pattern(800, 600).save(src)
    bad.write_bytes(b"nope")
    assert make_thumbnail(str(src), str(tmp_path / "t.jpg"), max_side=128)
    assert max(Image.open(tmp_path / "t.jpg").size) == 128
    assert not make_thumbnail(str(bad), str(tmp_path / "u.jpg"), max_side=128)
    assert not (tmp_path / "u.jpg").exists()


# -- fuzz ---------------------------------------------------------------------------------

SEEDS = {
    "jpeg": encode(pattern(24, 16), "JPEG", quality=80),
    "progressive": encode(pattern(24, 16), "JPEG", progressive=True),
    "png": encode(pattern(24, 16).convert("RGBA"), "PNG"),
    "gif": encode(pattern(24, 16).convert("P"), "GIF"),
}
POSITION = st.integers(0, 1 << 16)
MUTATION = st.one_of(
    st.tuples(st.just("flip"), POSITION, st.integers(1, 255)),
    st.tuples(st.just("cut"), POSITION, st.just(0)),
    st.tuples(st.just("insert"), POSITION, st.binary(min_size=1, max_size=16)),
)


def mutate(data: bytes, mutations: list[tuple[str, int, object]]) -> bytes:
    buf = bytearray(data)
    for kind, position, arg in mutations:
        at = position % (len(buf) + 1)
        if kind == "flip" and at < len(buf):
            assert isinstance(arg, int)
            buf[at] ^= arg
        elif kind == "cut":
            del buf[at:]
        elif kind == "insert":
            assert isinstance(arg, bytes)
            buf[at:at] = arg
    return bytes(buf)


@pytest.fixture(scope="module")
def fuzz_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("fuzz") / "mutant.jpg")


@settings(
    max_examples=200,
    deadline=None,
    database=None,  # no .hypothesis folder in the checkout
    suppress_health_check=[HealthCheck.too_slow],
)
@given(seed=st.sampled_from(sorted(SEEDS)), mutations=st.lists(MUTATION, min_size=1, max_size=6))
def test_decode_never_raises_on_mutated_files(
    fuzz_path: str, seed: str, mutations: list[tuple[str, int, object]]
) -> None:
    with open(fuzz_path, "wb") as fh:
        fh.write(mutate(SEEDS[seed], mutations))
    # a small pixel limit: a mutated header may declare a huge (legal) canvas
    out = decode(fuzz_path, PRE, max_pixels=1_000_000)
    if out.array is None:
        assert isinstance(out.reason, str) and out.reason
    else:
        assert out.reason is None
        assert out.array.shape == SHAPE and out.array.dtype == np.uint8


def test_decode_leaves_the_gallery_thumbnail_the_report_reuses(
    big_jpeg: str, tmp_path: Path
) -> None:
    from imgclust.decode import ThumbTarget, thumb_relpath
    from imgclust.report.thumbs import make_thumbnails

    out = decode(big_jpeg, PRE, thumb=ThumbTarget(str(tmp_path), 160))
    assert out.array is not None
    thumb = tmp_path / thumb_relpath(big_jpeg, 160)
    reference = tmp_path / "reference.jpg"
    assert make_thumbnail(big_jpeg, str(reference), max_side=160)
    with Image.open(thumb) as made, Image.open(reference) as ref:
        assert made.size == ref.size and max(made.size) == 160
        diff = np.abs(np.asarray(made, np.int16) - np.asarray(ref, np.int16)).mean()
        assert diff < 4  # the same picture (decoded at another DCT scale)
    stamp = thumb.stat().st_mtime_ns
    made_now = make_thumbnails(tmp_path, [big_jpeg], size=160, workers=1)
    assert made_now == {big_jpeg: thumb_relpath(big_jpeg, 160)}
    assert thumb.stat().st_mtime_ns == stamp  # reused, not decoded again
    # An unwritable target never costs the image: it decodes, without a thumbnail.
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    assert decode(big_jpeg, PRE, thumb=ThumbTarget(str(blocked), 160)).array is not None
