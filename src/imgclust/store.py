"""Feature store: one Parquet file per shard with a done marker, so runs resume and re-runs
are cheap, and any Parquet reader (pandas, Polars, DuckDB, Ray) reads the features directly.

Layout, one folder per model::

    STORE/<model>/shard-000001.parquet       a row per embedded image: path, size, mtime_ns,
                                             embedding and logits (fixed-size lists of
                                             float16), top_classes (5 class ids, best first),
                                             taken (EXIF capture date; null: not read)
    STORE/<model>/shard-000001.done.json     written last: counts, byte size and CRC-32 of the
                                             shard file, rejected files (path, reason)
    STORE/<model>/shard-000001.parquet.damaged  a shard that failed its check, set aside
    STORE/<model>/lock                       held by the run using the store

A shard is written to a temporary name, fsynced and renamed; its done marker follows the
same way. Only shards with a marker are committed: another reader should take the files
:meth:`FeatureStore.files` names (or ``shard-??????.parquet`` while no run is writing). A
shard may be written by another process or machine (:class:`ShardWriter`, the Ray engine's
actors) under a number :meth:`FeatureStore.reserve` handed out; :meth:`FeatureStore.adopt`
then checks and indexes it. Opening the store checks every shard against its marker before
indexing its rows:

* no marker: a torn write (a run killed between the two renames). The shard is deleted.
* a marker that is not one this store wrote, a size or CRC-32 that differs from the marker's,
  or a path table that cannot be read: damage (disk, copy, bit rot). The shard is renamed to
  ``.damaged`` (safe to delete), its marker deleted, a warning logged naming it, and it is
  listed in :attr:`FeatureStore.damaged` for the run's summary.

Either way its images are embedded again by the same run. Every later read of a shard
(:meth:`FeatureStore.load`, :meth:`FeatureStore.iter_rows`) checks the bytes it parses
against the marker's CRC-32 again and raises a :class:`StoreError` naming a shard that no
longer matches: damage after the open is an error, never silently wrong features. An image is
looked up by path and taken from the store only if its size and mtime are unchanged; the
newest shard wins when a path was embedded more than once.

Stores written before Parquet hold ``shard-NNNNNN.npz`` files (markers without a ``format``
key, some without a CRC-32: checked by size alone). Opening such a store migrates each good
shard once to Parquet under the same number (rows keep their places) and logs a message; a
migration killed half-way is finished by the next open.
"""

from __future__ import annotations

import errno
import io
import itertools
import json
import logging
import os
import re
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._fs import atomic_write
from .embed import STORE_DTYPE, FeatureBlock
from .exceptions import OutputError, StoreError
from .scan import FileRecord, Rejection

logger = logging.getLogger(__name__)

_SHARD_RE = re.compile(r"^shard-(\d{6,})\.(parquet|npz)$")
_DAMAGED = ".damaged"
#: The ``format`` of markers of Parquet shards; markers without one describe ``.npz`` shards.
_FORMAT = "parquet"
#: Class ids kept per image in the ``top_classes`` column, best first.
TOP_CLASSES = 5
#: The feature columns a shard holds (fixed-size lists of float16).
FEATURE_COLUMNS: tuple[str, ...] = ("embedding", "logits")
#: Per-image strings recorded while decoding, each the value of the image column of that
#: name (:data:`imgclust.clustering.IMAGE_COLUMNS`), so a run need not read the file again.
STRING_COLUMNS: tuple[str, ...] = ("taken",)

#: What decoding damaged bytes can raise: from ``json``, ``zipfile`` (bad CRC, header, method
#: or flags: ``NotImplementedError``/``RuntimeError``), ``zlib``, numpy's ``.npy`` reader, and
#: pyarrow (its errors subclass ``ValueError``, ``OSError``, ``TypeError``, ``KeyError``...).
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
    parquet: bool  # False: a marker of an .npz shard (before Parquet)


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


def _damaged_error(path: Path, why: str) -> StoreError:
    return StoreError(
        f"feature store shard {path} is damaged ({why}); delete it and run again (its "
        "images are embedded again)"
    )


@dataclass(frozen=True)
class ShardWriter:
    """Writes committed shards into one model's store folder: picklable, so a worker on
    another machine (on storage every node sees) writes its shard itself.

    Only the process holding the store (:class:`FeatureStore`) decides shard numbers
    (:meth:`FeatureStore.reserve`), so two writers never pick the same one.
    """

    dir: str
    model: str

    def write(self, shard: int, block: FeatureBlock, n_classes: int, dim: int) -> None:
        """Write ``block`` as shard number ``shard``: the Parquet file, then its marker, each
        atomically. Writing the same number again (a retried task) replaces both.

        Raises:
            StoreError: the folder cannot be written (full disk, permissions).
        """
        folder = Path(self.dir)
        path = folder / f"shard-{shard:06d}.parquet"
        logits = block.logits_array(n_classes)
        table = shard_table(
            block.paths,
            block.sizes,
            block.mtimes,
            embedding=block.embedding_array(dim),
            logits=logits,
            model=self.model,
            taken=block.taken or None,
        )
        data = _parquet_bytes(table, path)
        marker = {
            "format": _FORMAT,
            "n": len(block.paths),
            "bytes": len(data),
            "crc32": zlib.crc32(data),
            "rejected": [
                {"path": _encode_path(r.path), "size": r.size, "mtime_ns": r.mtime_ns,
                 "reason": reason}
                for r, reason in block.rejected
            ],
        }  # fmt: skip
        payload = json.dumps(marker, ensure_ascii=True).encode()
        atomic_write(path, lambda fh: fh.write(data), error=_store_error)
        atomic_write(_done(folder, shard), lambda fh: fh.write(payload), error=_store_error)


def shard_table(
    paths: Sequence[str],
    sizes: Sequence[int],
    mtimes: Sequence[int],
    *,
    embedding: np.ndarray,
    logits: np.ndarray,
    model: str = "",
    taken: Sequence[str] | None = None,
) -> Any:
    """The ``pyarrow.Table`` of one shard (the columns the module docstring lists).
    ``taken``: each photo's EXIF capture date (``""``: none); ``None``: not read (nulls,
    which a run fills from the files)."""
    import pyarrow as pa

    if taken is not None and len(taken) != len(paths):
        raise ValueError(f"{len(taken)} capture dates for {len(paths)} photos")

    def fixed(rows: np.ndarray) -> Any:
        rows = np.ascontiguousarray(rows)
        return pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), rows.shape[1])

    logits = np.asarray(logits, dtype=STORE_DTYPE)
    n_top = min(TOP_CLASSES, logits.shape[1])
    top = np.zeros((len(logits), n_top), dtype=np.int64)
    if len(logits) and n_top:
        scores = -logits.astype(np.float32)
        part = np.argpartition(scores, n_top - 1, axis=1)[:, :n_top]
        best = np.argsort(np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(part, best, axis=1)
    schema_meta = {"imgclust": json.dumps({"format": _FORMAT, "model": model})}
    return pa.table(
        {
            "path": pa.array([_encode_path(p) for p in paths], type=pa.string()),
            "size": pa.array(np.asarray(sizes, dtype=np.int64)),
            "mtime_ns": pa.array(np.asarray(mtimes, dtype=np.int64)),
            "embedding": fixed(np.asarray(embedding, dtype=STORE_DTYPE)),
            "logits": fixed(logits),
            "top_classes": fixed(top.astype(np.int16)),
            "taken": pa.array(taken if taken is not None else [None] * len(paths), pa.string()),
        }
    ).replace_schema_metadata(schema_meta)


def _parquet_bytes(table: Any, path: Path) -> memoryview:
    """The Parquet file of ``table``, built in memory (~5 MB a shard) so the marker's
    checksum is that of the very bytes written."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    try:
        # zstd: float16 features shrink ~10%; one row group, statistics for the scalars only.
        pq.write_table(
            table, buf, compression="zstd", use_dictionary=False,
            write_statistics=["path", "size", "mtime_ns"],
        )  # fmt: skip
    except OSError as exc:  # what a real file would raise (and a test's full disk)
        raise _store_error(path, exc) from exc
    return buf.getbuffer()


def feature_rows(table: Any, name: str) -> np.ndarray:
    """Column ``name`` (``"embedding"``, ``"logits"``) of a shard table as an ``(n, width)``
    float16 array."""
    import pyarrow as pa

    column = table.column(name)
    width = column.type.list_size
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    flat = values.flatten()  # honours the array's offset, unlike .values
    return np.asarray(flat.to_numpy(zero_copy_only=False), dtype=STORE_DTYPE).reshape(-1, width)


def _model_folder(root: Path, model: str) -> Path:
    return Path(root) / re.sub(r"[^A-Za-z0-9_.-]+", "_", model)


def _done(folder: Path, shard: int) -> Path:
    return folder / f"shard-{shard:06d}.done.json"


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
        self.model = model
        self.dir = _model_folder(root, model)
        self._lock: Any = None
        self._index: dict[str, tuple[Location, int, int]] = {}
        self._rejected: dict[str, tuple[str, int, int]] = {}
        self._shards: list[int] = []
        self._next = 1
        self.damaged: list[Path] = []

    def __enter__(self) -> FeatureStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Lock the store, delete torn shards, migrate ``.npz`` shards, index what is stored."""
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
        try:
            self._clean_and_index()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the lock and the in-memory index (~400 bytes an image)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._index, self._rejected, self._shards, self._next = {}, {}, [], 1

    @staticmethod
    def holds_shards(root: Path, model: str) -> bool:
        """Whether ``root`` holds a committed shard of ``model`` (no lock, nothing checked):
        a cheap guess, before a scan, at whether a run will find photos already stored."""
        try:
            return next(_model_folder(root, model).glob("shard-*.done.json"), None) is not None
        except OSError:
            return False

    def _shard_path(self, shard: int) -> Path:
        return self.dir / f"shard-{shard:06d}.parquet"

    def _done_path(self, shard: int) -> Path:
        return _done(self.dir, shard)

    def writer(self) -> ShardWriter:
        """A picklable writer of this store's shards (for workers elsewhere)."""
        return ShardWriter(str(self.dir), self.model)

    def files(self) -> list[Path]:
        """The committed shard files (each has its marker), in shard order."""
        return [self._shard_path(s) for s in self._shards]

    def _clean_and_index(self) -> None:
        """Delete what killed runs left, migrate .npz shards, set damaged ones aside, index."""
        self.damaged = []
        for tmp in self.dir.glob("*.tmp*"):
            tmp.unlink(missing_ok=True)  # left by a killed run
        found: dict[int, set[str]] = {}
        for path in self.dir.glob("shard-*"):
            m = _SHARD_RE.match(path.name)
            if m:
                found.setdefault(int(m.group(1)), set()).add(m.group(2))
        for done in self.dir.glob("shard-*.done.json"):
            m = re.match(r"^shard-(\d{6,})\.done\.json$", done.name)
            if m and int(m.group(1)) not in found:
                done.unlink(missing_ok=True)  # its shard was deleted by hand
        n_migrated = 0
        for shard in sorted(found):
            self._next = max(self._next, shard + 1)
            outcome = self._check_shard(shard, found[shard])
            if outcome is None:  # torn: killed before its marker was written
                for suffix in found[shard]:
                    (self.dir / f"shard-{shard:06d}.{suffix}").unlink(missing_ok=True)
                continue
            table, where = outcome
            if isinstance(table, str):
                self._set_aside(where, shard, table)
                continue
            if where.suffix == ".npz":
                self._migrate(shard, where, table)
                n_migrated += 1
            self._add(shard, table)
        if n_migrated:
            logger.warning(
                "feature store %s: migrated %d .npz shard(s) to Parquet (once; rows kept)",
                self.dir,
                n_migrated,
            )

    def _add(self, shard: int, table: _PathTable) -> None:
        rows = zip(table.paths, table.sizes, table.mtimes, strict=True)
        for row, (key, size, mtime) in enumerate(rows):
            self._index[key] = (Location(shard, row), size, mtime)
            self._rejected.pop(key, None)
        for key, reason, size, mtime in table.rejected:
            self._rejected[key] = (reason, size, mtime)
            self._index.pop(key, None)
        self._shards.append(shard)
        self._next = max(self._next, shard + 1)

    def _check_shard(self, shard: int, suffixes: set[str]) -> tuple[_PathTable | str, Path] | None:
        """``(path table, file)`` if the shard matches its marker; ``None`` if it has no
        marker (torn); otherwise ``(why it is damaged, file)``. A second file under the
        same number (left by a killed migration) is deleted."""
        done = self._done_path(shard)
        if not suffixes:
            return None
        try:
            raw = done.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"its marker {done.name} cannot be read: {exc}", self._file(shard, suffixes)
        try:
            marker = _parse_marker(raw)
        except DECODE_ERRORS as exc:
            return f"its marker {done.name} is not valid: {exc}", self._file(shard, suffixes)
        kind = "parquet" if marker.parquet else "npz"
        path = self.dir / f"shard-{shard:06d}.{kind}"
        if kind not in suffixes:  # (a migration deletes the .npz only after the marker)
            return f"its marker describes a .{kind} file", self._file(shard, suffixes)
        for other in suffixes - {kind}:  # the half a killed migration left
            (self.dir / f"shard-{shard:06d}.{other}").unlink(missing_ok=True)
        try:
            size = path.stat().st_size
            if size != marker.size:
                return f"{size} bytes where its marker says {marker.size}", path
            if marker.parquet:
                data = _read_checked(path, marker)
                import pyarrow.parquet as pq

                parsed = pq.read_table(_buffer(data), columns=["path", "size", "mtime_ns"])
                if str(parsed.schema.field("path").type) != "string":
                    raise ValueError("its paths are not text")
                paths = [_decode_path(p) for p in parsed.column("path").to_pylist()]
                sizes = [int(s) for s in parsed.column("size").to_pylist()]
                mtimes = [int(t) for t in parsed.column("mtime_ns").to_pylist()]
            else:
                if marker.crc32 is not None and file_crc32(path) != marker.crc32:
                    raise _Mismatch
                with np.load(path) as data:
                    if data["paths"].dtype.kind != "U":
                        raise ValueError("its paths are not text")
                    paths = [_decode_path(p) for p in data["paths"].tolist()]
                    sizes = [int(s) for s in data["sizes"].tolist()]
                    mtimes = [int(t) for t in data["mtimes"].tolist()]
        except _Mismatch:
            return "its CRC-32 differs from its marker's", path
        except DECODE_ERRORS as exc:
            return f"it cannot be read: {type(exc).__name__}: {exc}", path
        if not len(paths) == len(sizes) == len(mtimes) == marker.n:
            return f"it holds {len(paths)} rows where its marker says {marker.n}", path
        return _PathTable(paths, sizes, mtimes, marker.rejected), path

    def _file(self, shard: int, suffixes: set[str]) -> Path:
        kind = "parquet" if "parquet" in suffixes else "npz"
        return self.dir / f"shard-{shard:06d}.{kind}"

    def _migrate(self, shard: int, npz: Path, table: _PathTable) -> None:
        """Rewrite a checked ``.npz`` shard as Parquet under the same number (same rows),
        marker last, then delete the ``.npz``."""
        try:
            with np.load(npz) as data:
                logits = np.asarray(data["logits"], dtype=STORE_DTYPE)
                embedding = np.asarray(data["embedding"], dtype=STORE_DTYPE)
        except DECODE_ERRORS as exc:  # checked a moment ago: damaged while we read it
            raise _damaged_error(npz, f"{type(exc).__name__}: {exc}") from exc
        block = FeatureBlock(
            paths=table.paths, sizes=table.sizes, mtimes=table.mtimes,
            logits=[logits], embeddings=[embedding],
            rejected=[(FileRecord(p, s, t), why) for p, why, s, t in table.rejected],
        )  # fmt: skip
        self.writer().write(shard, block, logits.shape[1], embedding.shape[1])
        npz.unlink(missing_ok=True)

    def _set_aside(self, path: Path, shard: int, reason: str) -> None:
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

    def reserve(self, n: int) -> list[int]:
        """``n`` new shard numbers for shards written elsewhere (:meth:`writer`), then
        :meth:`adopt`-ed; numbers never written are simply skipped by later opens."""
        first = self._next
        self._next += n
        return list(range(first, first + n))

    def adopt(self, shard: int) -> bool:
        """Check a shard another process wrote (:meth:`reserve`, :meth:`writer`) against its
        marker and index it. Returns whether it was there and whole; a damaged one is set
        aside (:attr:`damaged`) and its images stay todo."""
        suffixes = {"parquet"} if self._shard_path(shard).exists() else set()
        outcome = self._check_shard(shard, suffixes)
        if outcome is None:
            self._shard_path(shard).unlink(missing_ok=True)
            return False
        table, where = outcome
        if isinstance(table, str):
            self._set_aside(where, shard, table)
            return False
        self._add(shard, table)
        return True

    def write(self, block: FeatureBlock, n_classes: int, dim: int) -> int:
        """Store a block as a new shard (atomically, marker last) and return its number."""
        (shard,) = self.reserve(1)
        self.writer().write(shard, block, n_classes, dim)
        table = _PathTable(
            list(block.paths), list(block.sizes), list(block.mtimes),
            [(r.path, reason, r.size, r.mtime_ns) for r, reason in block.rejected],
        )  # fmt: skip
        self._add(shard, table)
        return shard

    def load(
        self,
        paths: Sequence[str],
        locations: dict[str, Location],
        *,
        arrays: Sequence[str],
        transform: Callable[[str, np.ndarray], np.ndarray] | None = None,
        out: dict[str, np.ndarray] | None = None,
        strings: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Read ``arrays`` (``"logits"``, ``"embedding"``) for ``paths``, in that order.

        Reads one shard at a time; the result is float16. ``transform(name, rows)``, if given,
        maps each shard's rows before they are placed (same width), so derived features are
        built without a second full-size copy. ``out`` may give the arrays to fill (one row per
        path; e.g. a similarity index's own storage). ``strings``: string columns filled from
        the same reads (:meth:`iter_rows`).

        Raises:
            StoreError: a shard cannot be decoded (damaged since the store was opened).
        """
        result: dict[str, np.ndarray] = dict(out or {})
        for i, name in enumerate(arrays):
            extra = strings if i == 0 else None  # (read with the first array)
            for dst_rows, rows in self.iter_rows(paths, locations, name, strings=extra):
                if name not in result:
                    result[name] = np.empty((len(paths), rows.shape[1]), dtype=STORE_DTYPE)
                result[name][dst_rows] = rows if transform is None else transform(name, rows)
            result.setdefault(name, np.zeros((0, 0), dtype=STORE_DTYPE))
        return result

    def iter_rows(
        self,
        paths: Sequence[str],
        locations: dict[str, Location],
        name: str,
        *,
        strings: dict[str, np.ndarray] | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(positions in paths, rows of array name)`` one shard at a time (float16).

        ``strings`` names string columns (e.g. ``"taken"``) to fill from the same reads: an
        object array per name, aligned with ``paths``, whose entries are left as they are
        where a shard lacks the column (written before it existed, or migrated from
        ``.npz``); a null is ``None``.

        Needs no :meth:`open`: ``locations`` (from :meth:`lookup`) name finished shards, which
        are never rewritten, so they can be read after the store is closed, without its index.

        Raises:
            StoreError: a shard cannot be decoded (damaged since the store was opened).
        """
        extra = strings or {}
        for group, shard, rows in self._by_shard(paths, locations):
            table = self.read_table(shard, [name, *extra], missing_ok=bool(extra))
            for column, out in extra.items():
                if column in table.column_names:
                    out[group] = table.column(column).take(rows).to_pylist()
            yield group, self._rows(shard, table, name)[rows]

    @staticmethod
    def _by_shard(
        paths: Sequence[str], locations: dict[str, Location]
    ) -> Iterator[tuple[np.ndarray, int, np.ndarray]]:
        """``(positions in paths, shard, rows in that shard)`` for each shard ``paths`` use."""
        # Plain integer arrays, not a list of tuples per image (a million of those is ~100 MB).
        n = len(paths)
        shards = np.fromiter((locations[p].shard for p in paths), dtype=np.int64, count=n)
        rows = np.fromiter((locations[p].row for p in paths), dtype=np.int64, count=n)
        order = np.argsort(shards, kind="stable")
        bounds = np.flatnonzero(np.diff(shards[order])) + 1
        for group in np.split(order, bounds) if n else []:
            yield group, int(shards[group[0]]), rows[group]

    def read_shard(self, shard: int, name: str) -> np.ndarray:
        """All rows of array ``name`` of one committed shard, checked against its marker.

        Raises:
            StoreError: the shard or its marker is missing, or its bytes no longer match.
        """
        return self._rows(shard, self.read_table(shard, [name]), name)

    def _rows(self, shard: int, table: Any, name: str) -> np.ndarray:
        try:
            return feature_rows(table, name)
        except DECODE_ERRORS as exc:
            raise _damaged_error(self._shard_path(shard), f"{type(exc).__name__}: {exc}") from exc

    def n_rows(self, shard: int) -> int:
        """Rows of a committed shard, from its marker (the file is not read).

        Raises:
            StoreError: its marker is missing or unreadable.
        """
        try:
            return _parse_marker(self._done_path(shard).read_bytes()).n
        except DECODE_ERRORS as exc:
            raise _damaged_error(self._shard_path(shard), f"its marker: {exc}") from exc

    def read_table(self, shard: int, columns: Sequence[str], *, missing_ok: bool = False) -> Any:
        """``columns`` of one committed shard as a ``pyarrow.Table``, its bytes checked
        against its marker (``path`` holds the stored form: :func:`decode_path` it).
        ``missing_ok``: leave out the columns the shard was written without.

        Raises:
            StoreError: the shard or its marker is missing, or its bytes no longer match.
        """
        path = self._shard_path(shard)
        try:
            marker = _parse_marker(self._done_path(shard).read_bytes())
            data = _read_checked(path, marker)
            import pyarrow.parquet as pq

            if missing_ok:
                names = set(pq.read_schema(_buffer(data)).names)
                columns = [c for c in columns if c in names]
            table = pq.read_table(_buffer(data), columns=list(columns))
            if table.num_rows != marker.n:
                raise ValueError(f"{table.num_rows} rows where its marker says {marker.n}")
            return table
        except _Mismatch:
            raise _damaged_error(path, "its CRC-32 differs from its marker's") from None
        except DECODE_ERRORS as exc:
            raise _damaged_error(path, f"{type(exc).__name__}: {exc}") from exc


class StoredRows:
    """An ``(n, width)`` float16 matrix whose rows stay in the store until indexed.

    For a process that must not hold every row (a distributed run's driver, whose clustering
    ran as passes over the shards): ``rows[key]`` with a slice, an integer array or a boolean
    mask reads just those rows, a shard at a time, as :meth:`FeatureStore.load` would give
    them (``transform(name, rows)`` applied, then float16). The most recently read shards
    are kept, up to ``cache_bytes``, so that reading in order reads each shard once.

    Args:
        store: the store (its finished shards are read; it need not be open).
        paths, locations: the rows, in order, and where each is (:meth:`FeatureStore.lookup`).
        name: the stored array (``"embedding"`` or ``"logits"``); ``width`` its columns.
        scratch: where :meth:`grouped` may write its scratch file (the output folder).
    """

    dtype = np.dtype(STORE_DTYPE)
    ndim = 2

    def __init__(
        self,
        store: FeatureStore,
        paths: Sequence[str],
        locations: dict[str, Location],
        name: str,
        width: int,
        *,
        transform: Callable[[str, np.ndarray], np.ndarray] | None = None,
        cache_bytes: int = 256 << 20,
        scratch: Path | None = None,
    ) -> None:
        n = len(paths)
        # Two int32 per image (not a Location object each): 8 bytes a row at 50 million.
        self._shard = np.fromiter((locations[p].shard for p in paths), np.int32, count=n)
        self._row = np.fromiter((locations[p].row for p in paths), np.int32, count=n)
        self._store, self._name, self._width = store, name, int(width)
        self._transform, self._budget = transform, int(cache_bytes)
        self._cache: dict[int, np.ndarray] = {}  # (insertion order: oldest first)
        self.scratch = scratch
        self.shards_read = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self._shard), self._width)

    def __len__(self) -> int:
        return len(self._shard)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            raise TypeError("StoredRows are indexed by rows only")
        if isinstance(key, (int, np.integer)):
            return self[np.array([key])][0]
        picked = self._positions(key)
        out = np.empty((len(picked), self._width), dtype=self.dtype)
        if not len(picked):
            return out
        shards = self._shard[picked]
        order = np.argsort(shards, kind="stable")
        bounds = np.flatnonzero(np.r_[True, np.diff(shards[order]) != 0, True])
        for start, end in itertools.pairwise(bounds):
            group = order[start:end]
            out[group] = self._read(int(shards[group[0]]))[self._row[picked[group]]]
        return out

    def _positions(self, key: Any) -> np.ndarray:
        """The row numbers ``key`` picks (a slice, a mask, ids; negative ids as numpy's),
        without an n-sized array per call (the map reads 8,192 rows at a time)."""
        n = len(self)
        if isinstance(key, slice):
            return np.arange(*key.indices(n))
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != (n,):
                raise IndexError(f"a mask of {key.shape} for {n} rows")
            return np.flatnonzero(key)
        ids = key.astype(np.int64, casting="safe").ravel()
        if len(ids) and (ids.min() < -n or ids.max() >= n):
            raise IndexError(f"row ids out of range for {n} rows")
        return np.where(ids < 0, ids + n, ids)

    def grouped(self, groups: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
        """The rows of each of ``groups`` in turn, for groups too large to hold at once: each
        shard is read once, its rows written to a scratch file (in ``scratch``, else the
        system's temporary folder; gone when done, or if the process dies) where each group's
        rows follow each other, and each group is read back from it when its turn comes.

        Raises:
            OutputError: the scratch file cannot be written (a full disk).
        """
        lengths = [len(g) for g in groups]
        picked = self._positions(np.concatenate([np.zeros(0, np.int64), *groups]))
        row_bytes = self._width * self.dtype.itemsize
        try:
            fh = tempfile.TemporaryFile(dir=self.scratch)  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise self._scratch_error(exc, len(picked) * row_bytes) from exc
        with fh:
            try:
                self._spill(fh.fileno(), picked, row_bytes)
            except OSError as exc:
                raise self._scratch_error(exc, len(picked) * row_bytes) from exc
            at = 0
            for n in lengths:
                fh.seek(at * row_bytes)
                rows = np.fromfile(fh, dtype=self.dtype, count=n * self._width)
                yield rows.reshape(n, self._width)
                at += n

    def _scratch_error(self, exc: OSError, size: int) -> OutputError:
        where = self.scratch or tempfile.gettempdir()
        return OutputError(
            f"cannot write a scratch file of {size / 2**30:.1f} GiB in {where}: "
            f"{exc.strerror or exc}; free some space there"
        )

    def _spill(self, fd: int, picked: np.ndarray, row_bytes: int) -> None:
        """Write row ``picked[i]`` at row ``i`` of file ``fd``, reading each shard once."""
        shards = self._shard[picked]
        order = np.argsort(shards, kind="stable")  # (within a shard: ascending file rows)
        bounds = np.flatnonzero(np.r_[True, np.diff(shards[order]) != 0, True])
        for start, end in itertools.pairwise(bounds) if len(picked) else []:
            where = order[start:end]
            rows = self._read(int(shards[where[0]]))[self._row[picked[where]]]
            cuts = np.flatnonzero(np.diff(where) != 1) + 1  # (runs of rows: one write each)
            for a, b in itertools.pairwise([0, *cuts.tolist(), len(where)]):
                data = rows[a:b].tobytes()
                if os.pwrite(fd, data, int(where[a]) * row_bytes) != len(data):
                    raise OSError(errno.ENOSPC, "No space left on device")

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        # Never all rows at once by accident (numpy would otherwise read them one by one).
        raise TypeError("StoredRows are read by rows: index them (rows[start:stop], rows[ids])")

    def __iter__(self) -> Iterator[np.ndarray]:
        raise TypeError("StoredRows are read by rows: index them (rows[start:stop], rows[ids])")

    def _read(self, shard: int) -> np.ndarray:
        rows = self._cache.pop(shard, None)
        if rows is None:
            raw = self._store.read_shard(shard, self._name)
            rows = np.asarray(
                raw if self._transform is None else self._transform(self._name, raw),
                dtype=self.dtype,
            )
            self.shards_read += 1
            while (
                self._cache
                and sum(a.nbytes for a in self._cache.values()) + rows.nbytes > self._budget
            ):
                del self._cache[next(iter(self._cache))]
        self._cache[shard] = rows  # (now the newest)
        return rows


#: A clustered feature matrix: loaded, or read from the store when indexed.
Rows = np.ndarray | StoredRows


def rows_by_group(
    features: Rows, groups: Sequence[np.ndarray], *, budget: int = 256 << 20
) -> Iterator[np.ndarray]:
    """The rows of each of ``groups`` (index arrays), in turn, for a per-cluster stage.

    A loaded matrix is indexed a group at a time. :class:`StoredRows` (every cluster has rows
    in most shards, so a read per group would read the store once per cluster) are read in
    one indexing when all the groups' rows fit in ``budget`` bytes, else spilled
    (:meth:`StoredRows.grouped`): the store read once, memory for one group.
    """
    if not isinstance(features, StoredRows):
        for group in groups:
            yield features[group]
        return
    groups = [np.asarray(g, dtype=np.int64) for g in groups]
    if not groups:
        return
    row_bytes = features.shape[1] * features.dtype.itemsize
    if sum(len(g) for g in groups) * row_bytes > budget:
        yield from features.grouped(groups)
        return
    rows = features[np.concatenate([np.zeros(0, np.int64), *groups])]
    yield from np.split(rows, np.cumsum([len(g) for g in groups])[:-1])


class _Mismatch(Exception):
    """A shard's bytes differ from what its marker recorded."""


def _read_checked(path: Path, marker: _Marker) -> bytes:
    """The bytes of a shard file, if they match its marker's size and CRC-32."""
    data = path.read_bytes()
    if len(data) != marker.size or (marker.crc32 is not None and zlib.crc32(data) != marker.crc32):
        raise _Mismatch
    return data


def _buffer(data: bytes) -> Any:
    import pyarrow as pa

    return pa.BufferReader(data)


def _parse_marker(raw: bytes) -> _Marker:
    """Raises ``ValueError`` (or another of :data:`DECODE_ERRORS`) unless ``raw`` is a done
    marker as :class:`ShardWriter` (or an older imgclust) writes them."""
    marker = json.loads(raw.decode("utf-8"))
    if not isinstance(marker, dict):
        raise ValueError("not a JSON object")
    crc = marker.get("crc32")
    kind = marker.get("format")
    if kind not in (None, _FORMAT):
        raise ValueError(f"an unknown shard format {kind!r}")
    rejected = []
    for item in marker.get("rejected", []):
        path, reason = item["path"], item["reason"]
        if not (isinstance(path, str) and isinstance(reason, str)):
            raise ValueError("a rejected file's path or reason is not text")
        size, mtime = _int(item["size"], "a size"), _int(item["mtime_ns"], "an mtime")
        rejected.append((_decode_path(path), reason, size, mtime))
    if kind == _FORMAT and crc is None:
        raise ValueError("it has no checksum")
    return _Marker(
        n=_int(marker.get("n"), "its row count"),
        size=_int(marker.get("bytes"), "its byte count"),
        crc32=None if crc is None else _int(crc, "its checksum"),
        rejected=rejected,
        parquet=kind == _FORMAT,
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


#: A stored path as written in the shard files' ``path`` column, and back.
encode_path, decode_path = _encode_path, _decode_path
