"""Feature store: per-shard files with done markers, so runs resume and re-runs are cheap.

Layout, one folder per model::

    STORE/<model>/shard-000001.npz          paths, sizes, mtimes, logits, embedding (float16)
    STORE/<model>/shard-000001.done.json    written last: counts, byte size and CRC-32 of the
                                            shard, rejected files
    STORE/<model>/shard-000001.npz.damaged  a shard that failed its check, set aside
    STORE/<model>/lock                      held by the run using the store

A shard is written to a temporary name, fsynced and renamed; its done marker follows the
same way. Opening the store checks every shard against its marker before indexing its rows:

* no marker: a torn write (a run killed between the two renames). The shard is deleted.
* a marker that is not one this store wrote, a size or CRC-32 that differs from the marker's,
  or a path table that cannot be read: damage (disk, copy, bit rot). The shard is renamed to
  ``.damaged`` (safe to delete), its marker deleted, a warning logged naming it, and it is
  listed in :attr:`FeatureStore.damaged` for the run's summary.

Either way its images are embedded again by the same run. Markers written before the
CRC-32 was kept have none: their shards are checked by size alone. A shard read later
(:meth:`FeatureStore.load`, :meth:`FeatureStore.iter_rows`) that fails to decode raises a
:class:`StoreError` naming it. An image is looked up by path and taken from the store only if
its size and mtime are unchanged; the newest shard wins when a path was embedded more than
once.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._fs import atomic_write
from .embed import STORE_DTYPE, FeatureBlock
from .exceptions import StoreError
from .scan import FileRecord, Rejection

logger = logging.getLogger(__name__)

_SHARD_RE = re.compile(r"^shard-(\d{6,})\.npz$")
_DAMAGED = ".damaged"

#: What decoding damaged bytes can raise: from ``json``, ``zipfile`` (bad CRC, header, method
#: or flags: ``NotImplementedError``/``RuntimeError``), ``zlib``, numpy's ``.npy`` reader.
DECODE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    RuntimeError,
    struct.error,
    zipfile.BadZipFile,
    zlib.error,
)


def file_crc32(path: Path, *, chunk: int = 1 << 24) -> int:
    """CRC-32 of a file, read ``chunk`` bytes at a time (zlib's: about 2 GB/s)."""
    crc = 0
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            crc = zlib.crc32(view[:n], crc)
    return crc


@dataclass(frozen=True, slots=True)
class Location:
    """Where an image's features live: shard number and row."""

    shard: int
    row: int


@dataclass(frozen=True)
class Lookup:
    """Split of scanned records into stored ones, stored rejections, and ones to embed."""

    found: dict[str, Location]
    rejected: list[Rejection]
    todo: list[FileRecord]


@dataclass(frozen=True)
class _Marker:
    """A parsed done marker; ``crc32`` is ``None`` in markers older than the checksum."""

    n: int
    size: int
    crc32: int | None
    rejected: list[tuple[str, str, int, int]]  # path, reason, size, mtime_ns


@dataclass(frozen=True)
class _PathTable:
    """The rows of a checked shard: path, size and mtime of each, and the marker's rejects."""

    paths: list[str]
    sizes: list[int]
    mtimes: list[int]
    rejected: list[tuple[str, str, int, int]]


def _store_error(path: Path, exc: OSError) -> StoreError:
    return StoreError(
        f"cannot write the feature store at {path.parent}: {exc}. Free space or pass "
        "--cache to a writable folder; features stored so far are kept"
    )


class FeatureStore:
    """The features of one model under one folder. Use as a context manager (takes a lock).

    Args:
        root: the store folder (``--cache``); each model gets a sub-folder.
        model: model name, e.g. ``"efficientnet_lite0"``.

    Attributes:
        damaged: shards that failed their check when the store was opened, each now renamed
            to its name + ``.damaged``; their images are looked up as todo.
    """

    def __init__(self, root: Path, model: str) -> None:
        self.dir = Path(root) / re.sub(r"[^A-Za-z0-9_.-]+", "_", model)
        self._lock: Any = None
        self._index: dict[str, tuple[Location, int, int]] = {}
        self._rejected: dict[str, tuple[str, int, int]] = {}
        self._shards: list[int] = []
        self.damaged: list[Path] = []

    def __enter__(self) -> FeatureStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Lock the store, delete torn shards, and index what is stored."""
        from filelock import FileLock, Timeout  # flock on POSIX, msvcrt on Windows

        lock = FileLock(self.dir / "lock", timeout=0)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except Timeout:
            raise StoreError(
                f"another imgclust run is using the feature store {self.dir}; "
                "wait for it to finish or pass a different --cache"
            ) from None
        except OSError as exc:
            raise StoreError(f"cannot create the feature store at {self.dir}: {exc}") from exc
        self._lock = lock
        self._clean_and_index()

    def close(self) -> None:
        """Release the lock and the in-memory index (~400 bytes an image)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._index, self._rejected, self._shards = {}, {}, []

    def _shard_path(self, shard: int) -> Path:
        return self.dir / f"shard-{shard:06d}.npz"

    def _done_path(self, shard: int) -> Path:
        return self.dir / f"shard-{shard:06d}.done.json"

    def _clean_and_index(self) -> None:
        """Delete what killed runs left, set damaged shards aside, index the rest."""
        self.damaged = []
        for tmp in self.dir.glob("*.tmp*"):
            tmp.unlink(missing_ok=True)  # left by a killed run
        shards = []
        for path in self.dir.glob("shard-*.npz"):
            m = _SHARD_RE.match(path.name)
            if m:
                shards.append(int(m.group(1)))
        for done in self.dir.glob("shard-*.done.json"):
            if not done.with_name(done.name.replace(".done.json", ".npz")).exists():
                done.unlink(missing_ok=True)  # its shard was deleted by hand
        for shard in sorted(shards):
            table = self._check_shard(shard)
            if table is None:  # torn: killed before its marker was written
                self._shard_path(shard).unlink(missing_ok=True)
                continue
            if isinstance(table, str):
                self._set_aside(shard, table)
                continue
            rows = zip(table.paths, table.sizes, table.mtimes, strict=True)
            for row, (key, size, mtime) in enumerate(rows):
                self._index[key] = (Location(shard, row), size, mtime)
                self._rejected.pop(key, None)
            for key, reason, size, mtime in table.rejected:
                self._rejected[key] = (reason, size, mtime)
                self._index.pop(key, None)
            self._shards.append(shard)

    def _check_shard(self, shard: int) -> _PathTable | str | None:
        """The shard's path table if it matches its marker; ``None`` if it has no marker
        (torn); otherwise why it is damaged."""
        path, done = self._shard_path(shard), self._done_path(shard)
        try:
            raw = done.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"its marker {done.name} cannot be read: {exc}"
        try:
            marker = _parse_marker(raw)
        except DECODE_ERRORS as exc:
            return f"its marker {done.name} is not valid: {exc}"
        try:
            size = path.stat().st_size
            if size != marker.size:
                return f"{size} bytes where its marker says {marker.size}"
            if marker.crc32 is not None and file_crc32(path) != marker.crc32:
                return "its CRC-32 differs from its marker's"
            with np.load(path) as data:
                if data["paths"].dtype.kind != "U":
                    raise ValueError("its paths are not text")
                paths = [_decode_path(p) for p in data["paths"].tolist()]
                sizes = [int(s) for s in data["sizes"].tolist()]
                mtimes = [int(t) for t in data["mtimes"].tolist()]
        except DECODE_ERRORS as exc:
            return f"it cannot be read: {type(exc).__name__}: {exc}"
        if not len(paths) == len(sizes) == len(mtimes) == marker.n:
            return f"it holds {len(paths)} rows where its marker says {marker.n}"
        return _PathTable(paths, sizes, mtimes, marker.rejected)

    def _set_aside(self, shard: int, reason: str) -> None:
        path = self._shard_path(shard)
        aside = path.with_name(path.name + _DAMAGED)
        try:
            os.replace(path, aside)
            self._done_path(shard).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(
                f"feature store shard {path} is damaged ({reason}) and cannot be moved aside "
                f"({exc}); delete it and run again"
            ) from exc
        logger.warning(
            "feature store shard %s is damaged (%s): moved it to %s; its images are embedded again",
            path,
            reason,
            aside.name,
        )
        self.damaged.append(path)

    @property
    def n_stored(self) -> int:
        """Images with stored features."""
        return len(self._index)

    def lookup(self, records: Sequence[FileRecord]) -> Lookup:
        """Split ``records`` into stored (unchanged size and mtime), stored rejects, and todo."""
        found: dict[str, Location] = {}
        rejected: list[Rejection] = []
        todo: list[FileRecord] = []
        for rec in records:
            hit = self._index.get(rec.path)
            if hit is not None and hit[1] == rec.size and hit[2] == rec.mtime_ns:
                found[rec.path] = hit[0]
                continue
            bad = self._rejected.get(rec.path)
            if bad is not None and bad[1] == rec.size and bad[2] == rec.mtime_ns:
                rejected.append(Rejection(rec.path, bad[0]))
                continue
            todo.append(rec)
        return Lookup(found, rejected, todo)

    def locate(self, paths: Sequence[str]) -> dict[str, Location]:
        """Where the newest stored features of each of ``paths`` are, whatever its file is
        like now (moved, edited, gone); paths never stored are left out.

        What rebuilds an index of features stored earlier; :meth:`lookup` is for scanned files.
        """
        return {p: hit[0] for p in paths if (hit := self._index.get(p)) is not None}

    def write(self, block: FeatureBlock, n_classes: int, dim: int) -> int:
        """Store a block as a new shard (atomically, marker last) and return its number."""
        shard = (self._shards[-1] + 1) if self._shards else 1
        path = self._shard_path(shard)
        arrays = {
            "paths": np.array([_encode_path(p) for p in block.paths], dtype=object).astype(str)
            if block.paths
            else np.zeros(0, dtype="<U1"),
            "sizes": np.asarray(block.sizes, dtype=np.int64),
            "mtimes": np.asarray(block.mtimes, dtype=np.int64),
            "logits": block.logits_array(n_classes),
            "embedding": block.embedding_array(dim),
        }
        # Built in memory (~7 MB a shard) so its checksum is that of the bytes written.
        buf = io.BytesIO()
        try:
            np.savez(buf, **arrays)  # type: ignore[arg-type]
        except OSError as exc:  # what a real file would raise (and a test's full disk)
            raise _store_error(path, exc) from exc
        data = buf.getbuffer()
        try:
            atomic_write(path, lambda fh: fh.write(data), error=_store_error)
            marker = {
                "n": len(block.paths),
                "bytes": len(data),
                "crc32": zlib.crc32(data),
                "rejected": [
                    {
                        "path": _encode_path(r.path),
                        "size": r.size,
                        "mtime_ns": r.mtime_ns,
                        "reason": reason,
                    }
                    for r, reason in block.rejected
                ],
            }
            payload = json.dumps(marker, ensure_ascii=True).encode()
            atomic_write(self._done_path(shard), lambda fh: fh.write(payload), error=_store_error)
        finally:
            data.release()
        for row, (p, s, t) in enumerate(zip(block.paths, block.sizes, block.mtimes, strict=True)):
            self._index[p] = (Location(shard, row), s, t)
            self._rejected.pop(p, None)
        for rec, reason in block.rejected:
            self._rejected[rec.path] = (reason, rec.size, rec.mtime_ns)
            self._index.pop(rec.path, None)
        self._shards.append(shard)
        return shard

    def load(
        self,
        paths: Sequence[str],
        locations: dict[str, Location],
        *,
        arrays: Sequence[str],
        transform: Callable[[str, np.ndarray], np.ndarray] | None = None,
        out: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Read ``arrays`` (``"logits"``, ``"embedding"``) for ``paths``, in that order.

        Reads one shard at a time; the result is float16. ``transform(name, rows)``, if given,
        maps each shard's rows before they are placed (same width), so derived features are
        built without a second full-size copy. ``out`` may give the arrays to fill (one row per
        path; e.g. a similarity index's own storage).

        Raises:
            StoreError: a shard cannot be decoded (damaged since the store was opened).
        """
        result: dict[str, np.ndarray] = dict(out or {})
        for name in arrays:
            for dst_rows, rows in self.iter_rows(paths, locations, name):
                if name not in result:
                    result[name] = np.empty((len(paths), rows.shape[1]), dtype=STORE_DTYPE)
                result[name][dst_rows] = rows if transform is None else transform(name, rows)
            result.setdefault(name, np.zeros((0, 0), dtype=STORE_DTYPE))
        return result

    def iter_rows(
        self, paths: Sequence[str], locations: dict[str, Location], name: str
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(positions in paths, rows of array name)`` one shard at a time (float16).

        Needs no :meth:`open`: ``locations`` (from :meth:`lookup`) name finished shards, which
        are never rewritten, so they can be read after the store is closed, without its index.

        Raises:
            StoreError: a shard cannot be decoded (damaged since the store was opened).
        """
        # Plain integer arrays, not a list of tuples per image (a million of those is ~100 MB).
        n = len(paths)
        shards = np.fromiter((locations[p].shard for p in paths), dtype=np.int64, count=n)
        rows = np.fromiter((locations[p].row for p in paths), dtype=np.int64, count=n)
        order = np.argsort(shards, kind="stable")
        bounds = np.flatnonzero(np.diff(shards[order])) + 1
        for group in np.split(order, bounds) if n else []:
            path = self._shard_path(int(shards[group[0]]))
            try:
                with np.load(path) as data:
                    block = data[name][rows[group]]
            except DECODE_ERRORS as exc:
                raise StoreError(
                    f"feature store shard {path} is damaged ({type(exc).__name__}: {exc}); "
                    "delete it and run again (its images are embedded again)"
                ) from exc
            yield group, block


def _parse_marker(raw: bytes) -> _Marker:
    """Raises ``ValueError`` (or another of :data:`DECODE_ERRORS`) unless ``raw`` is a done
    marker as :meth:`FeatureStore.write` writes them."""
    marker = json.loads(raw.decode("utf-8"))
    if not isinstance(marker, dict):
        raise ValueError("not a JSON object")
    crc = marker.get("crc32")
    rejected = []
    for item in marker.get("rejected", []):
        path, reason = item["path"], item["reason"]
        if not (isinstance(path, str) and isinstance(reason, str)):
            raise ValueError("a rejected file's path or reason is not text")
        size, mtime = _int(item["size"], "a size"), _int(item["mtime_ns"], "an mtime")
        rejected.append((_decode_path(path), reason, size, mtime))
    return _Marker(
        n=_int(marker.get("n"), "its row count"),
        size=_int(marker.get("bytes"), "its byte count"),
        crc32=None if crc is None else _int(crc, "its checksum"),
        rejected=rejected,
    )


def _int(value: object, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"{what} is not an integer: {value!r}")


def _encode_path(path: str) -> str:
    """Paths with undecodable bytes (surrogate escapes) are stored as ``b64:`` + base64."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        import base64

        return "b64:" + base64.b64encode(os.fsencode(path)).decode("ascii")


def _decode_path(stored: str) -> str:
    if stored.startswith("b64:"):
        import base64

        return os.fsdecode(base64.b64decode(stored[4:], validate=True))
    return stored
