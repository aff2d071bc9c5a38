"""Scan: folders and files → a sorted list of candidate image records. Never decodes.

A candidate is any regular file whose extension Pillow (or pillow-heif) can read. Whether it
really is an image is decode's business. Problems found while walking (a broken symlink, an
unreadable folder, a symlink loop) come back as :class:`Rejection` rows, never as exceptions.

A root may also be a URI (``s3://bucket/photos``, ``gs://...``): :mod:`imgclust.uri` lists it
through ``pyarrow.fs`` and its records are keyed by their URIs; everything after the scan is
the same. Local roots never touch pyarrow.

Folders that imgclust wrote are never scanned: an output folder (it holds ``.imgclust``) or
an export folder (``.imgclust-export`` with a journal) inside an input holds thumbnails and
copies or links of photos, not photos; they are listed in :attr:`ScanResult.skipped`, as is
a root that is one or lies inside one (``OUT/thumbs``).
Folders passed as ``exclude`` (the run's own output folder) are compared by device and
inode, so a symlinked path to them is recognised too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from . import uri as uris
from ._fs import HOLDER_FILE, LOCK_FILE
from .exceptions import InputError

#: Extensions treated as images. Anything else is ignored without a word (sidecars, videos).
IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".dib",
        ".tif", ".tiff", ".heic", ".heif", ".avif", ".ppm", ".pgm", ".pbm", ".pnm",
        ".tga", ".ico",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One candidate image: its absolute path (or URI) and the stat fields that key the store."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Rejection:
    """A file that will not be clustered, and why (shown in the report and rejected.csv)."""

    path: str
    reason: str


@dataclass(slots=True)
class ScanResult:
    """What :func:`scan` found: candidates in a deterministic order, and rejections."""

    records: list[FileRecord] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    n_ignored: int = 0  # files skipped because their extension is not an image format
    skipped: list[str] = field(default_factory=list)  # imgclust output/export folders


#: A folder holding one of these is an imgclust output or export folder, never scanned.
MARKER_NAMES = (".imgclust", ".imgclust-export")


def is_image_name(name: str) -> bool:
    """Whether a file name has an image extension (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def check_roots(roots: Sequence[str | os.PathLike[str]]) -> None:
    """Raise :class:`InputError` for the first root that does not exist (before any work):
    for a URI, also one whose bucket is missing or that cannot be reached or read."""
    for root in local_roots(roots):
        if uris.is_uri(root):
            uris.check(root)
            continue
        root_path = os.path.abspath(os.fspath(root))
        if not os.path.lexists(root_path):
            raise InputError(f"input path does not exist: {root_path}")


def local_roots(roots: Sequence[str | os.PathLike[str]]) -> list[str | os.PathLike[str]]:
    """``roots`` with ``file://`` URIs as the local paths they name."""
    return [(uris.local_path(r) or r) if uris.is_uri(r) else r for r in roots]


def scan(
    roots: Sequence[str | os.PathLike[str]],
    *,
    exclude: Sequence[str | os.PathLike[str]] = (),
) -> ScanResult:
    """Walk ``roots`` recursively and return candidate images sorted by absolute path.

    A root may be a folder, a single file or a URI (``s3://``, ``gs://``; ``file://`` is a
    local path). Symlinked folders are followed once (loops are
    detected by device/inode). Duplicate paths reached through several roots appear once.
    Folders in ``exclude`` and imgclust output/export folders are not entered.

    Raises:
        InputError: a root does not exist.
    """
    roots = local_roots(roots)
    check_roots(roots)
    result = ScanResult()
    seen_paths: set[str] = set()
    # Excluded folders are "already seen": _walk then skips them however they are reached.
    seen_dirs: set[tuple[int, int]] = set()
    for folder in exclude:
        with contextlib.suppress(OSError):
            st = os.stat(folder)
            seen_dirs.add((st.st_dev, st.st_ino))
    excluded = set(seen_dirs)
    for root in roots:
        if uris.is_uri(root):
            _add_uri(root, result, seen_paths)
            continue
        root_path = os.path.abspath(os.fspath(root))
        if _is_excluded(root_path, excluded) or output_folder_of(root_path) is not None:
            result.skipped.append(root_path)  # (the run's own folder, or what one holds)
        elif os.path.isdir(root_path):
            for entry in _walk(root_path, seen_dirs, result):
                _add(entry, result, seen_paths)
        else:
            _add(root_path, result, seen_paths)
    result.records.sort(key=lambda r: r.path)
    result.rejected.sort(key=lambda r: r.path)
    return result


def _walk(top: str, seen_dirs: set[tuple[int, int]], result: ScanResult) -> Iterator[str]:
    """Yield file paths below ``top`` (deterministic order, symlink loops cut).

    An explicit stack rather than recursion: a deep tree must not hit the recursion limit.
    """
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                continue  # a symlink loop or a folder reached twice
            seen_dirs.add(key)
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            result.rejected.append(Rejection(folder, f"folder unreadable: {exc.strerror or exc}"))
            continue
        if any(e.name in MARKER_NAMES and _is_dir(e) and _marks(e.path) for e in entries):
            result.skipped.append(folder)  # thumbnails and links of photos, not photos
            continue
        subfolders = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:  # a symlink loop: _add reports it
                is_dir = False
            if is_dir and entry.is_symlink() and output_folder_of(entry.path) is not None:
                result.skipped.append(entry.path)  # a link into an output folder's insides
            elif is_dir:
                subfolders.append(entry.path)
            else:
                yield entry.path
        stack.extend(reversed(subfolders))  # visit subfolders in name order


def output_folder_of(path: str) -> str | None:
    """The imgclust output or export folder that ``path`` (where it really is: links
    followed) lies inside, or ``None``: a root there holds thumbnails or exported copies,
    as a walk from above would skip it whole."""
    folder = os.path.dirname(os.path.realpath(path))
    while True:
        for name in MARKER_NAMES:
            marker = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                if stat.S_ISDIR(os.lstat(marker).st_mode) and _marks(marker):
                    return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _is_excluded(path: str, excluded: set[tuple[int, int]]) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) in excluded


def _marks(marker: str) -> bool:
    """Whether a marker folder marks imgclust's output. An export folder marks one while it
    holds a journal still to be undone (or what an export in flight writes beside it): not
    when all are undone, nor when it holds only its lock (an export killed before its
    journal, which it writes before any photo). What is there then is the user's."""
    if os.path.basename(marker) != ".imgclust-export":
        return True
    try:
        names = os.listdir(marker)
    except OSError:
        return True  # (unreadable: what it holds is unknown)
    return any(not _UNMARKING.fullmatch(name) for name in names)


#: What an export folder holds that marks nothing: its lock and holder note (and the note's
#: temporary file, from a kill), and the journals of undone exports.
_UNMARKING = re.compile(
    rf"{re.escape(LOCK_FILE)}|{re.escape(HOLDER_FILE)}(\.tmp.*)?|journal-\d+\.undone"
)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _add(path: str, result: ScanResult, seen_paths: set[str]) -> None:
    if path in seen_paths:
        return
    seen_paths.add(path)
    if not is_image_name(path):
        result.n_ignored += 1
        return
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            reason = "symlink loop"
        elif os.path.islink(path):
            reason = "broken symlink" if exc.errno == errno.ENOENT else f"symlink: {exc.strerror}"
        else:
            reason = f"cannot stat: {exc.strerror or exc}"
        result.rejected.append(Rejection(path, reason))
        return
    if not stat.S_ISREG(st.st_mode):
        result.rejected.append(Rejection(path, "not a regular file"))
        return
    result.records.append(FileRecord(path, st.st_size, st.st_mtime_ns))


def _add_uri(root: str, result: ScanResult, seen_paths: set[str]) -> None:
    """The objects at or below a URI root (a listing that fails is that root's rejection)."""
    try:
        entries, skipped = uris.list_files(root, skip_below=MARKER_NAMES)
    except OSError as exc:
        result.rejected.append(Rejection(root, f"listing failed: {uris.short_error(exc)}"))
        return
    result.skipped += skipped
    for entry in entries:
        if entry.uri in seen_paths:
            continue
        seen_paths.add(entry.uri)
        if is_image_name(entry.uri):
            result.records.append(FileRecord(entry.uri, entry.size, entry.mtime_ns))
        else:
            result.n_ignored += 1


def stat_record(path: str) -> FileRecord:
    """``path``'s record as it is now (a file, or an object named by its URI).

    Raises:
        OSError: it is gone or cannot be read.
    """
    if uris.is_uri(path):
        entry = uris.stat(path)
        return FileRecord(path, entry.size, entry.mtime_ns)
    st = os.stat(path)
    return FileRecord(path, st.st_size, st.st_mtime_ns)


def batched(records: Sequence[FileRecord], size: int) -> Iterator[Sequence[FileRecord]]:
    """Split ``records`` into consecutive shards of at most ``size`` records."""
    for start in range(0, len(records), size):
        yield records[start : start + size]


def display_path(path: str) -> str:
    """A printable form of a path that may hold undecodable bytes (surrogate escapes)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


__all__ = [
    "MARKER_NAMES",
    "FileRecord",
    "Rejection",
    "ScanResult",
    "batched",
    "check_roots",
    "display_path",
    "scan",
    "stat_record",
]
