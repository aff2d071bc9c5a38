"""Feature store: per-shard files with done markers, so runs resume and re-runs are cheap.

Layout, one folder per model::

    STORE/<model>/shard-000001.npz        paths, sizes, mtimes, logits, embedding (float16)
    STORE/<model>/shard-000001.done.json  written last: counts, file size, rejected files
    STORE/<model>/lock                    held by the run using the store

A shard is written to a temporary name, fsynced and renamed; its done marker follows the
same way. A shard without a done marker, or whose size differs from the marker's, is torn:
it is deleted when the store is opened and its images are embedded again. An image is
looked up by path and taken from the store only if its size and mtime are unchanged; the
newest shard wins when a path was embedded more than once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from .embed import STORE_DTYPE, FeatureBlock
from .exceptions import StoreError
from .scan import FileRecord, Rejection

_SHARD_RE = re.compile(r"^shard-(\d{6,})\.npz$")


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


def _fsync_write(path: Path, write: object) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)  # type: ignore[operator]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class FeatureStore:
    """The features of one model under one folder. Use as a context manager (takes a lock).

    Args:
        root: the store folder (``--cache``); each model gets a sub-folder.
        model: model name, e.g. ``"efficientnet_lite0"``.
    """

    def __init__(self, root: Path, model: str) -> None:
        self.dir = Path(root) / re.sub(r"[^A-Za-z0-9_.-]+", "_", model)
        self._lock: IO[bytes] | None = None
        self._index: dict[str, tuple[Location, int, int]] = {}
        self._rejected: dict[str, tuple[str, int, int]] = {}
        self._shards: list[int] = []

    def __enter__(self) -> FeatureStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Lock the store, delete torn shards, and index what is stored."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.dir / "lock", "wb")  # noqa: SIM115 (held until close())
        except OSError as exc:
            raise StoreError(f"cannot create the feature store at {self.dir}: {exc}") from exc
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise StoreError(
                f"another imgclust run is using the feature store {self.dir}; "
                "wait for it to finish or pass a different --cache"
            ) from None
        self._clean_and_index()

    def close(self) -> None:
        """Release the lock and the in-memory index (~400 bytes an image)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self._index, self._rejected, self._shards = {}, {}, []

    def _shard_path(self, shard: int) -> Path:
        return self.dir / f"shard-{shard:06d}.npz"

    def _done_path(self, shard: int) -> Path:
        return self.dir / f"shard-{shard:06d}.done.json"

    def _clean_and_index(self) -> None:
        for tmp in self.dir.glob("*.tmp*"):
            tmp.unlink(missing_ok=True)  # left by a killed run
        shards = []
        for path in self.dir.glob("shard-*.npz"):
            m = _SHARD_RE.match(path.name)
            if m:
                shards.append(int(m.group(1)))
        for shard in sorted(shards):
            marker = self._read_marker(shard)
            if marker is None or marker.get("bytes") != self._shard_path(shard).stat().st_size:
                self._shard_path(shard).unlink(missing_ok=True)
                self._done_path(shard).unlink(missing_ok=True)
                continue
            try:
                with np.load(self._shard_path(shard)) as data:
                    paths, sizes, mtimes = data["paths"], data["sizes"], data["mtimes"]
            except (OSError, ValueError, KeyError) as exc:
                raise StoreError(
                    f"shard {self._shard_path(shard)} is unreadable ({exc}); "
                    "delete it and run again"
                ) from exc
            rows = zip(paths.tolist(), sizes.tolist(), mtimes.tolist(), strict=True)
            for row, (stored, size, mtime) in enumerate(rows):
                key = _decode_path(stored)
                self._index[key] = (Location(shard, row), int(size), int(mtime))
                self._rejected.pop(key, None)
            for item in marker.get("rejected", []):
                key = _decode_path(item["path"])
                self._rejected[key] = (item["reason"], int(item["size"]), int(item["mtime_ns"]))
                self._index.pop(key, None)
            self._shards.append(shard)

    def _read_marker(self, shard: int) -> dict[str, Any] | None:
        try:
            marker: dict[str, Any] = json.loads(self._done_path(shard).read_text(encoding="utf-8"))
            return marker
        except (OSError, ValueError):
            return None

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
        try:
            _fsync_write(path, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]
            marker = {
                "n": len(block.paths),
                "bytes": path.stat().st_size,
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
            _fsync_write(self._done_path(shard), lambda fh: fh.write(payload))
        except OSError as exc:
            raise StoreError(
                f"cannot write the feature store at {self.dir}: {exc}. Free space or pass "
                "--cache to a writable folder; features stored so far are kept"
            ) from exc
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
        """
        # Plain integer arrays, not a list of tuples per image (a million of those is ~100 MB).
        n = len(paths)
        shards = np.fromiter((locations[p].shard for p in paths), dtype=np.int64, count=n)
        rows = np.fromiter((locations[p].row for p in paths), dtype=np.int64, count=n)
        order = np.argsort(shards, kind="stable")
        bounds = np.flatnonzero(np.diff(shards[order])) + 1
        for group in np.split(order, bounds) if n else []:
            with np.load(self._shard_path(int(shards[group[0]]))) as data:
                yield group, data[name][rows[group]]


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

        return os.fsdecode(base64.b64decode(stored[4:]))
    return stored
