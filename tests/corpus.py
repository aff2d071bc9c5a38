"""A hostile image corpus, generated on the spot with Pillow and numpy (nothing downloaded).

Each builder writes one file into a folder and returns a :class:`Case` that says what decode
must make of it: pixels matching a lossless RGB reference, or a rejection whose reason holds
a given phrase. Tests parametrise over :data:`CASES`; :func:`build_tree` lays out a folder for
the scan tests.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@dataclass(frozen=True)
class Case:
    """One corpus file and what decode must make of it."""

    path: str
    reason: str | None = None  # phrase the rejection reason must hold; None: must decode
    reference: str | None = None  # lossless RGB file whose decode the pixels must match
    tolerance: float = 6.0  # mean absolute difference allowed against the reference


# -- pixels -------------------------------------------------------------------------------


def pattern(width: int, height: int) -> Image.Image:
    """An asymmetric picture (red left, blue right, green top band) so rotations show."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2] = (220, 40, 40)
    arr[:, width // 2 :] = (40, 60, 220)
    arr[: max(1, height // 4)] = (40, 200, 60)
    return Image.fromarray(arr, "RGB")


def gradient(width: int, height: int) -> np.ndarray:
    """A smooth RGB gradient covering many hues (kind to JPEG, hard on colour conversion)."""
    y, x = np.mgrid[0:height, 0:width]
    red = x * 255 // max(1, width - 1)
    green = y * 255 // max(1, height - 1)
    blue = 255 - (red + green) // 2
    return np.stack([red, green, blue], -1).astype(np.uint8)


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random pixels: a JPEG of them is large, so truncation cuts into the scan data."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    """``img`` encoded in memory."""
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _save(img: Image.Image, path: Path, fmt: str | None = None, **params: object) -> str:
    img.save(path, fmt, **params)
    return str(path)


def _reference(img: Image.Image, folder: Path, name: str) -> str:
    return _save(img.convert("RGB"), folder / f"{name}.ref.png")


def _solid_case(img: Image.Image, path: Path, fmt: str, expected: Image.Image) -> Case:
    """``img`` saved as ``fmt`` at ``path``; its decode must look like ``expected``."""
    return Case(_save(img, path, fmt), reference=_reference(expected, path.parent, path.name))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


# -- rejected -----------------------------------------------------------------------------


def empty_file(folder: Path) -> Case:
    return Case(_write(folder / "empty.jpg", b""), reason="empty file")


def truncated_jpeg(folder: Path) -> Case:
    data = encode(noise(256, 256), "JPEG", quality=90)
    return Case(_write(folder / "truncated.jpg", data[: len(data) // 2]), reason="truncated")


def random_bytes(folder: Path) -> Case:
    data = np.random.default_rng(1).bytes(4096)
    return Case(_write(folder / "random.jpg", data), reason="not an image")


def png_bad_header_crc(folder: Path) -> Case:
    data = bytearray(encode(pattern(16, 16), "PNG"))
    data[29] ^= 0xFF  # last byte of the IHDR CRC
    return Case(_write(folder / "bad_crc.png", bytes(data)), reason="not an image")


def decompression_bomb(folder: Path) -> Case:
    """A 100-byte PNG whose header declares 100000x100000 pixels (30 GB once decoded)."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + _png_chunk(b"IEND", b"")
    )
    return Case(_write(folder / "bomb.png", data), reason="decompression bomb")


def unreadable(folder: Path) -> Case:
    if os.geteuid() == 0:
        pytest.skip("running as root: a chmod 000 file is still readable")
    path = _save(pattern(32, 32), folder / "secret.jpg")
    os.chmod(path, 0)
    return Case(path, reason="permission denied")


def fifo(folder: Path) -> Case:
    """A named pipe with an image name: opening it must not wait for a writer."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    path = folder / "pipe.jpg"
    os.mkfifo(path)
    return Case(str(path), reason="not a regular file")


def directory(folder: Path) -> Case:
    path = folder / "folder.jpg"
    path.mkdir()
    return Case(str(path), reason="is a directory")


# -- decoded ------------------------------------------------------------------------------


def png_bad_data_crc(folder: Path) -> Case:
    """A wrong IDAT checksum over intact data: Pillow does not check it, the pixels are fine."""
    img = pattern(32, 32)
    data = bytearray(encode(img, "PNG"))
    at = data.find(b"IDAT")
    length = int.from_bytes(data[at - 4 : at], "big")
    data[at + 4 + length] ^= 0xFF
    return Case(
        _write(folder / "bad_idat_crc.png", bytes(data)), reference=_reference(img, folder, "idat")
    )


def gif_named_jpg(folder: Path) -> Case:
    img = pattern(40, 30)
    return _solid_case(
        img.convert("P", palette=Image.Palette.ADAPTIVE), folder / "gif.jpg", "GIF", img
    )


def png_named_jpg(folder: Path) -> Case:
    img = pattern(40, 30)
    return _solid_case(img, folder / "png.jpg", "PNG", img)


def animated_gif(folder: Path) -> Case:
    first, second = pattern(40, 30), Image.new("RGB", (40, 30), (0, 255, 0))
    path = _save(first, folder / "anim.gif", "GIF", save_all=True, append_images=[second])
    return Case(path, reference=_reference(first, folder, "anim_gif"))


def animated_webp(folder: Path) -> Case:
    first, second = pattern(40, 30), Image.new("RGB", (40, 30), (0, 255, 0))
    path = _save(
        first, folder / "anim.webp", "WEBP", save_all=True, append_images=[second], lossless=True
    )
    return Case(path, reference=_reference(first, folder, "anim_webp"))


def _cmyk(rgb: np.ndarray) -> np.ndarray:
    """Naive RGB → CMYK with full black generation (k = 1 - max(r, g, b))."""
    f = rgb / 255.0
    k = 1.0 - f.max(-1)
    room = np.where(k < 1.0, 1.0 - k, 1.0)
    cmy = (1.0 - f - k[..., None]) / room[..., None]
    return np.round(np.concatenate([cmy, k[..., None]], -1) * 255).astype(np.uint8)


def cmyk_jpeg(folder: Path) -> Case:
    """An Adobe CMYK JPEG (Pillow writes the Adobe marker and inverted channels)."""
    rgb = gradient(96, 64)
    path = _save(Image.fromarray(_cmyk(rgb), "CMYK"), folder / "cmyk.jpg", quality=95)
    return Case(path, reference=_reference(Image.fromarray(rgb), folder, "cmyk"))


def ycck_jpeg(folder: Path) -> Case:
    """An Adobe YCCK JPEG (how Photoshop saves CMYK): C, M, Y stored as YCbCr of "RGB".

    Pillow cannot write YCCK, so we write the channels libjpeg's YCCK→CMYK step expects as a
    CMYK JPEG and flip the Adobe marker's transform flag from 0 (none) to 2 (YCCK).
    """
    rgb = gradient(96, 64)
    cmyk = _cmyk(rgb)
    ycc = np.asarray(Image.fromarray(cmyk[..., :3], "RGB").convert("YCbCr"))
    stored = np.concatenate([ycc, 255 - cmyk[..., 3:]], -1)  # Adobe inverts K
    data = bytearray(encode(Image.fromarray(255 - stored, "CMYK"), "JPEG", quality=95))
    at = data.find(b"\xff\xeeAdobe"[:2])
    assert data[at + 4 : at + 9] == b"Adobe" and data[at + 15] == 0
    data[at + 15] = 2
    path = _write(folder / "ycck.jpg", bytes(data))
    return Case(path, reference=_reference(Image.fromarray(rgb), folder, "ycck"))


def gray16_mid(folder: Path) -> Case:
    """16-bit mid-grey (32768): must come out mid-grey, not clipped to white."""
    img = Image.fromarray(np.full((32, 48), 32768, np.uint16))
    return _solid_case(
        img, folder / "gray16_mid.png", "PNG", Image.new("RGB", (48, 32), (128,) * 3)
    )


def gray16_dark(folder: Path) -> Case:
    """16-bit values all below 256 are near-black, not 8-bit values."""
    img = Image.fromarray(np.full((32, 48), 200, np.uint16))
    return _solid_case(img, folder / "gray16_dark.png", "PNG", Image.new("RGB", (48, 32), (1,) * 3))


def palette_transparency(folder: Path) -> Case:
    index = np.zeros((32, 32), np.uint8)
    index[:, 16:] = 1
    img = Image.fromarray(index, "P")
    img.putpalette([255, 0, 0, 0, 0, 255])
    expected = np.zeros((32, 32, 3), np.uint8)
    expected[:, :16] = 255  # transparent red becomes the white background
    expected[:, 16:] = (0, 0, 255)
    path = _save(img, folder / "palette.png", transparency=0)
    return Case(path, reference=_reference(Image.fromarray(expected), folder, "palette"))


def _half_transparent(mode: str, colour: tuple[int, ...]) -> tuple[Image.Image, Image.Image]:
    img = Image.new(mode, (32, 32), colour)
    alpha = np.zeros((32, 32), np.uint8)
    alpha[:, 16:] = 255
    img.putalpha(Image.fromarray(alpha, "L"))
    expected = Image.new("RGB", (32, 32), (255, 255, 255))
    expected.paste(Image.new(mode, (16, 32), colour).convert("RGB"), (16, 0))
    return img, expected


def rgba(folder: Path) -> Case:
    img, expected = _half_transparent("RGB", (0, 128, 0))
    return _solid_case(img, folder / "rgba.png", "PNG", expected)


def gray_alpha(folder: Path) -> Case:
    img, expected = _half_transparent("L", (60,))
    return _solid_case(img, folder / "la.png", "PNG", expected)


def gray(folder: Path) -> Case:
    img = Image.new("L", (40, 30), 100)
    return _solid_case(img, folder / "gray.png", "PNG", img)


def bilevel(folder: Path) -> Case:
    arr = np.zeros((32, 32), bool)
    arr[:, 16:] = True
    img = Image.fromarray(arr).convert("1")
    return _solid_case(img, folder / "bilevel.png", "PNG", img)


def _exif_rotated(folder: Path, orientation: int) -> Case:
    """A JPEG stored sideways with an EXIF orientation; large enough to be draft-decoded."""
    upright = pattern(1200, 900)
    undo = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(upright.transpose(undo), folder / f"exif{orientation}.jpg", exif=exif.tobytes())
    return Case(path, reference=_reference(upright, folder, f"exif{orientation}"))


def exif_orientation_6(folder: Path) -> Case:
    return _exif_rotated(folder, 6)


def exif_orientation_8(folder: Path) -> Case:
    return _exif_rotated(folder, 8)


def very_wide(folder: Path) -> Case:
    img = Image.new("RGB", (10_000, 10), (9, 99, 199))
    return _solid_case(img, folder / "wide.png", "PNG", img)


def one_pixel(folder: Path) -> Case:
    img = Image.new("RGB", (1, 1), (200, 30, 90))
    return _solid_case(img, folder / "dot.png", "PNG", img)


def heic(folder: Path) -> Case:
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        img = pattern(64, 48)
        path = _save(img, folder / "photo.heic", "HEIF", quality=95)
    except Exception as exc:  # no pillow_heif, or one built without an encoder
        pytest.skip(f"pillow_heif cannot write HEIC here: {exc}")
    return Case(path, reference=_reference(img, folder, "heic"), tolerance=10.0)


def _named(folder: Path, name: str | bytes) -> Case:
    img = pattern(160, 120)
    filename = os.fsdecode(name)
    path = _save(img, folder / filename, "JPEG", quality=95, subsampling=0)
    return Case(path, reference=_reference(img, folder, "named"))


def non_utf8_name(folder: Path) -> Case:
    return _named(folder, b"caf\xe9.jpg")


def long_name(folder: Path) -> Case:
    return _named(folder, "n" * 246 + ".jpg")  # 250 bytes, near the usual 255 limit


def hostile_name(folder: Path) -> Case:
    return _named(folder, "<script>alert(1)<\\script> \"q\" 'a' #1 ?x=y & z.jpg")


#: Every single-file case, by name.
CASES: dict[str, Callable[[Path], Case]] = {
    f.__name__: f
    for f in (
        empty_file,
        truncated_jpeg,
        random_bytes,
        png_bad_header_crc,
        decompression_bomb,
        unreadable,
        fifo,
        directory,
        png_bad_data_crc,
        gif_named_jpg,
        png_named_jpg,
        animated_gif,
        animated_webp,
        cmyk_jpeg,
        ycck_jpeg,
        gray16_mid,
        gray16_dark,
        palette_transparency,
        rgba,
        gray_alpha,
        gray,
        bilevel,
        exif_orientation_6,
        exif_orientation_8,
        very_wide,
        one_pixel,
        heic,
        non_utf8_name,
        long_name,
        hostile_name,
    )
}


# -- a folder tree for scan -----------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    """What :func:`build_tree` laid out, with the answers scan must give."""

    root: str
    images: list[str]  # every path scan must list as a record
    rejected: dict[str, str]  # path → phrase its rejection reason must hold
    n_ignored: int


def build_tree(root: Path) -> Tree:
    """A folder with images, duplicates, non-images, odd names, bad and looping symlinks."""
    jpeg = encode(pattern(40, 30), "JPEG")
    images: list[Path] = []

    def image(path: Path, data: bytes = jpeg) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        images.append(path)

    image(root / "a.jpg")
    image(root / "copy of a.jpg")  # a duplicate: both are clustered
    image(root / "UPPER.JPEG")
    image(root / "x.jpg" / "inside.png", encode(pattern(8, 8), "PNG"))  # a folder named x.jpg
    image(root / "sub" / "deeper" / "b.webp", encode(pattern(8, 8), "WEBP"))
    image(root / "sub" / "empty.jpg", b"")  # scan never decodes: decode rejects it later
    image(root / "sub" / os.fsdecode(b"caf\xe9.jpg"))
    image(root / "sub" / ("n" * 246 + ".jpg"))
    image(root / "sub" / '<script>alert(1)<\\script> "q" #1 ?x=y.jpg')
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "video.mp4").write_bytes(b"\0" * 16)
    (root / "sub" / "deeper" / "README").write_text("no extension")

    (root / "dangling.jpg").symlink_to(root / "gone.jpg")
    (root / "loop1.jpg").symlink_to(root / "loop2.jpg")
    (root / "loop2.jpg").symlink_to(root / "loop1.jpg")
    (root / "sub" / "back_to_root").symlink_to(root, target_is_directory=True)
    (root / "sub" / "link.jpg").symlink_to(root / "a.jpg")  # a link to a good file is listed
    images.append(root / "sub" / "link.jpg")
    rejected = {
        str(root / "dangling.jpg"): "broken symlink",
        str(root / "loop1.jpg"): "symlink loop",
        str(root / "loop2.jpg"): "symlink loop",
    }
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "sub" / "pipe.png")
        rejected[str(root / "sub" / "pipe.png")] = "not a regular file"
    return Tree(str(root), sorted(str(p) for p in images), rejected, n_ignored=3)
