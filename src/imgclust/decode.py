"""Decode: bytes on disk (or in object storage) → an upright RGB array of the model's input size.

Every failure comes back as a :class:`Decoded` with ``array=None`` and a human reason; this
module never raises for a bad file. JPEGs are decoded at reduced scale with Pillow's draft
mode (libjpeg's DCT scaling), so a 12-megapixel photo is never fully decoded to make a
224-pixel input. EXIF orientation is applied; every Pillow mode is converted to RGB without
clipping (16-bit is rescaled, transparency is flattened onto white). A path that is a URI
(``s3://``, ``gs://``) is read whole through :mod:`imgclust.uri` and decoded from memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import uri as uris
from ._fs import atomic_write, same_error
from .models.spec import Preprocess

#: Largest image (in pixels) we agree to decode; twice Pillow's default warning level.
DEFAULT_MAX_PIXELS = 2 * 89_478_485

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
#: Formats whose decoder can scale down while decoding (libjpeg DCT scaling). MPO is the
#: multi-picture JPEG many cameras write.
_DCT_SCALABLE = frozenset({"JPEG", "MPO"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_heif_registered = False


class DecodeFailure(Exception):
    """Internal: raised by :func:`open_rgb` with the reason a file cannot be used."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """The outcome of decoding one file: an array, or the reason there is none.

    ``size`` and ``mtime_ns`` are read from the open file, so they describe the bytes that
    were decoded even if the file changed after the scan.
    """

    array: np.ndarray | None
    reason: str | None
    size: int = -1
    mtime_ns: int = -1
    #: When the photo was taken (:func:`exif_date`); ``""`` when its EXIF does not say.
    taken: str = ""


class Opened(NamedTuple):
    """What :func:`open_rgb` read: the upright RGB image, the file's stat, its EXIF date."""

    image: Image.Image
    stat: os.stat_result
    taken: str


def _register_plugins() -> None:
    global _heif_registered
    if not _heif_registered:
        _heif_registered = True
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
        except Exception:  # optional (missing or broken): HEIC files are then rejected
            pass


def open_rgb(
    path: str, *, min_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Opened:
    """Open ``path`` as an upright RGB image, at least ``min_side`` on its shorter side, with
    its stat and its EXIF capture date (read from the header already parsed: no extra I/O).

    With ``min_side`` set, JPEGs are decoded at the smallest DCT scale that keeps both sides
    at least ``min_side`` long (so the result may be smaller than the file's own size).

    Raises:
        DecodeFailure: with a reason fit for rejected.csv.
    """
    _register_plugins()
    try:
        fh, st = _read_uri(path) if uris.is_uri(path) else _open_local(path)
        with fh:
            if not stat.S_ISREG(st.st_mode):
                raise DecodeFailure("not a regular file (a pipe, socket or device)")
            if st.st_size == 0:
                raise DecodeFailure("empty file (0 bytes)")
            with warnings.catch_warnings():
                # Our own pixel limit replaces Pillow's bomb warning; EXIF and truncation
                # warnings from one odd file would otherwise flood the log of a large run.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
                img = Image.open(fh)
                width, height = img.size
                if width * height > max_pixels:
                    raise DecodeFailure(
                        f"decompression bomb: {width}x{height} exceeds {max_pixels:,} pixels"
                    )
                if min_side and img.format in _DCT_SCALABLE:
                    img.draft("RGB", (min_side, min_side))
                img.load()
                taken = exif_date(img)  # (before the transpose rewrites the EXIF)
                return Opened(to_rgb(_upright(img)), st, taken)
    except DecodeFailure:
        raise
    except FileNotFoundError:
        raise DecodeFailure("file disappeared before it could be read") from None
    except PermissionError:
        raise DecodeFailure("permission denied") from None
    except IsADirectoryError:
        raise DecodeFailure("is a directory") from None
    except UnidentifiedImageError:
        raise DecodeFailure("not an image, or a format Pillow cannot read") from None
    except Image.DecompressionBombError as exc:
        raise DecodeFailure(f"decompression bomb: {exc}") from None
    except MemoryError:
        raise DecodeFailure("out of memory while decoding") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DecodeFailure(f"corrupt or truncated: {exc}") from None
    except Exception as exc:  # a decoder bug must not stop the run
        raise DecodeFailure(f"decoder error: {type(exc).__name__}: {exc}") from None


def _open_local(path: str) -> tuple[BinaryIO, os.stat_result]:
    fh = open(path, "rb", opener=_open_nonblocking)  # noqa: SIM115 (the caller closes it)
    try:
        return fh, os.fstat(fh.fileno())
    except BaseException:
        fh.close()
        raise


def _read_uri(uri: str) -> tuple[BinaryIO, os.stat_result]:
    """An object's bytes in memory, and a stat of them (a regular file of that size and
    mtime): the decoder's seeks would each be a request on the object itself."""
    try:
        data, entry = uris.read_file(uri)
    except FileNotFoundError:
        raise DecodeFailure("object disappeared before it could be read") from None
    except IsADirectoryError:
        raise DecodeFailure("is a prefix, not an object") from None
    except Exception as exc:  # a network or permission failure costs this photo only
        raise DecodeFailure(f"cannot read: {uris.short_error(exc)}") from None
    mtime_s = entry.mtime_ns // 1_000_000_000
    fields = (stat.S_IFREG | 0o444, 0, 0, 1, 0, 0, entry.size, mtime_s, mtime_s, mtime_s)
    return io.BytesIO(data), os.stat_result(fields, {"st_mtime_ns": entry.mtime_ns})


def _open_nonblocking(path: str, flags: int) -> int:
    # O_NONBLOCK: opening a FIFO that appeared after the scan must not wait for a writer.
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def exif_date(img: Image.Image) -> str:
    """When ``img`` was taken, from its EXIF (``DateTimeOriginal``, else ``DateTime``), as
    ``"YYYY-MM-DD HH:MM:SS"`` (other text as it is written); ``""`` when unknown."""
    try:
        exif = img.getexif()
        value = exif.get_ifd(0x8769).get(36867) or exif.get(306) or ""  # Exif IFD, IFD0
    except Exception:  # no EXIF, or a damaged one: the date is unknown
        return ""
    text = str(value).strip().strip("\x00")
    if len(text) >= 19 and text[4] == ":" and text[7] == ":":  # EXIF's "2024:06:01 12:00:00"
        text = f"{text[:4]}-{text[5:7]}-{text[8:10]} {text[11:19]}"
    return text


def _upright(img: Image.Image) -> Image.Image:
    # In place, so an image that is already upright is not copied. Unreadable EXIF: keep
    # the pixels as stored.
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(img, in_place=True)
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB: rescale high bit depths, flatten alpha on white.

    Raises:
        DecodeFailure: the mode has no conversion to RGB.
    """
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    try:
        if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
            return _gray_to_rgb(img)
        if mode in ("La", "RGBa"):  # premultiplied alpha: undo it first
            img = img.convert("RGBA" if mode == "RGBa" else "LA")
            mode = img.mode
        if mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return img.convert("RGB")
    except ValueError as exc:
        raise DecodeFailure(f"unsupported colour mode {mode}: {exc}") from None


def _gray_to_rgb(img: Image.Image) -> Image.Image:
    """Gray deeper than 8 bits → RGB, scaled by the format's range, never clipped at 255."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode in _SIXTEEN_BIT_MODES:
        # The range is known: a dark 16-bit image must stay dark, not be read as 8-bit.
        arr = arr * (255.0 / 65535.0)
    else:  # "I" (32-bit) or "F": the range is not in the file, so guess it from the data
        top = float(arr.max()) if arr.size else 0.0
        if img.mode == "F" and top <= 1.0:
            arr = arr * 255.0
        elif top > 255.0:
            arr = arr * (255.0 / (65535.0 if top <= 65535.0 else top))
    gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([gray] * 3, axis=-1), "RGB")


def resize_center_crop(img: Image.Image, preprocess: Preprocess) -> Image.Image:
    """Resize the shorter side to ``preprocess.resize_size`` and crop the centre square."""
    resample = _RESAMPLE.get(preprocess.interpolation, Image.Resampling.BICUBIC)
    width, height = img.size
    side = preprocess.input_size
    # Resample only the source box that becomes the centre crop: resizing the whole image
    # first would turn a 10000x10 panorama into a 256000x256 intermediate.
    box_side = side * min(width, height) / preprocess.resize_size
    box_w, box_h = min(width, box_side), min(height, box_side)
    left, top = (width - box_w) / 2, (height - box_h) / 2
    box = (left, top, left + box_w, top + box_h)
    return img.resize((side, side), resample, box=box, reducing_gap=3.0)


@dataclass(frozen=True, slots=True)
class ThumbTarget:
    """Where :func:`decode` also leaves a gallery thumbnail: ``folder/thumb_relpath(...)``."""

    folder: str
    size: int


def decode(
    path: str,
    preprocess: Preprocess,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    thumb: ThumbTarget | None = None,
) -> Decoded:
    """Decode ``path`` into a ``(size, size, 3)`` uint8 model input, or a reason it can't be.

    With ``thumb``, the gallery thumbnail is made from the same decoded pixels (the report
    then finds it made and does not decode the file a second time). A thumbnail that cannot
    be written is skipped silently: the report makes it again, and reports a real failure.
    """
    try:
        img, st, taken = open_rgb(path, min_side=preprocess.resize_size, max_pixels=max_pixels)
        array = np.asarray(resize_center_crop(img, preprocess), dtype=np.uint8)
    except DecodeFailure as exc:
        return Decoded(None, str(exc))
    except Exception as exc:  # never let one file stop the run
        return Decoded(None, f"decoder error: {type(exc).__name__}: {exc}")
    if thumb is not None:
        with contextlib.suppress(Exception):
            dest = os.path.join(thumb.folder, thumb_relpath(path, thumb.size))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            save_thumbnail(img, dest, max_side=thumb.size)
    return Decoded(array, None, st.st_size, st.st_mtime_ns, taken)


def thumb_relpath(path: str, size: int) -> str:
    """Where the thumbnail of ``path`` goes, relative to the output folder (``/``-separated)."""
    digest = hashlib.sha1(os.fsencode(path), usedforsecurity=False).hexdigest()
    return f"thumbs/{size}/{digest[:2]}/{digest}.jpg"


def make_thumbnail(src: str, dest: str, *, max_side: int, quality: int = 80) -> bool:
    """Write a JPEG thumbnail of ``src`` (longest side ``max_side``) to ``dest`` atomically.

    Returns False (writing nothing) when ``src`` cannot be decoded.
    """
    try:
        img = open_rgb(src, min_side=max_side).image
    except DecodeFailure:
        return False
    save_thumbnail(img, dest, max_side=max_side, quality=quality)
    return True


def save_thumbnail(img: Image.Image, dest: str, *, max_side: int, quality: int = 80) -> None:
    """Shrink ``img`` in place to ``max_side`` and write it to ``dest`` as JPEG, atomically."""
    img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC, reducing_gap=2.0)
    atomic_write(
        Path(dest),
        write_path=lambda tmp: img.save(tmp, "JPEG", quality=quality, optimize=True),
        error=same_error,  # the caller tells a failed write (OSError) from a bad photo
        fsync=False,  # a cache: a crash loses at most a thumbnail, made again next time
    )


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "Decoded",
    "ThumbTarget",
    "decode",
    "make_thumbnail",
    "open_rgb",
    "save_thumbnail",
    "thumb_relpath",
    "to_rgb",
]
