"""The file-system primitives every stage shares: one atomic write, one output-folder lock.

* :func:`atomic_write` / :func:`atomic_open`: write ``path.tmp<pid>``, flush and fsync, then
  rename over ``path`` in one step. A crash or an error while writing leaves the previous
  file as it was and removes the temporary one.
* :class:`OutputLock`: held by every command that writes an output folder (run, assign,
  refine, similar's page, review) for its whole duration, so two commands never both succeed
  with one result lost. It is an OS file lock (``filelock``: ``flock`` on POSIX, ``msvcrt``
  on Windows), released by the OS when the holder dies; ``lock.json`` beside it says who
  holds it, for the message the second command prints.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TextIO

from .exceptions import OutputError

LOCK_FILE = "lock"
HOLDER_FILE = "lock.json"


def same_error(path: Path, exc: OSError) -> OSError:
    """For :func:`atomic_write`'s ``error``: let the ``OSError`` through as it is."""
    return exc


class WriteError(OutputError):
    """A path that cannot be written (permissions, a read-only or full disk)."""


def output_error(path: str | os.PathLike[str], exc: OSError) -> OutputError:
    """An :class:`OutputError` for a failed write to ``path``, saying how to fix it."""
    reason = exc.strerror or str(exc)
    return WriteError(
        f"cannot write {os.fsdecode(path)}: {reason}. Make sure the output folder is writable "
        "and its disk has free space, or choose another output folder."
    )


def ensure_dir(path: Path) -> None:
    """Create ``path`` and its parents if needed.

    Raises:
        OutputError: when the folder cannot be created.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(path, exc) from exc


def _tmp_name(path: Path) -> Path:
    # The pid keeps two writers (a test's child process, a second command refused late)
    # off each other's temporary file; the suffix keeps numpy from appending ".npz".
    return path.with_name(f"{path.name}.tmp{os.getpid()}{path.suffix}")


@contextmanager
def _replacing(path: Path, error: Callable[[Path, OSError], Exception]) -> Iterator[Path]:
    """Yield a temporary path; when the block succeeds it replaces ``path`` in one step. On
    any failure the temporary file goes and ``path`` stays as it was."""
    tmp = _tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise error(path, exc) from exc
    except BaseException:
        _discard(tmp)
        raise


def atomic_write(
    path: Path,
    write: Callable[[IO[bytes]], Any] | None = None,
    *,
    write_path: Callable[[Path], Any] | None = None,
    error: Callable[[Path, OSError], Exception] = output_error,
    fsync: bool = True,
) -> None:
    """Write ``path`` atomically: a temporary file is filled, fsynced, then renamed over it.

    Args:
        write: fills the open temporary file (``np.savez(fh, ...)``, ``fh.write(data)``).
        write_path: or, for writers that want a file name (``faiss.write_index``), writes
            the temporary file by its path.
        error: the exception an ``OSError`` becomes (default: :func:`output_error`).
        fsync: flush to disk before the rename; off for caches a crash may lose (thumbnails).

    Raises:
        OutputError: (or what ``error`` makes) when the file cannot be written; the previous
            file is kept and the temporary one removed.
    """
    with _replacing(path, error) as tmp:
        if write_path is not None:
            write_path(tmp)
        if write_path is None or fsync:
            with open(tmp, "rb+" if write_path is not None else "wb") as fh:
                if write is not None and write_path is None:
                    write(fh)
                    fh.flush()
                if fsync:
                    os.fsync(fh.fileno())  # on disk before it replaces the previous file


@contextmanager
def atomic_open(path: Path, *, newline: str | None = None) -> Iterator[TextIO]:
    """Open a temporary file for UTF-8 text; on success it replaces ``path`` in one step.

    Undecodable file-name bytes (surrogate escapes) are written back as bytes.

    Raises:
        OutputError: when the file cannot be written.
    """
    with (
        _replacing(path, output_error) as tmp,
        open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline=newline) as fh,
    ):
        yield fh


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as fh:
        fh.write(text)


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


class OutputLock:
    """The lock of one output folder, held for a whole command (a context manager).

    Args:
        marker_dir: the output folder's ``.imgclust`` folder (it must exist).
        command: what holds it, for the other command's message (``"run"``, ``"assign"``).
        instead: what the other command's message suggests besides waiting, if anything.

    Raises:
        OutputError: on enter, when another command holds the lock (it names that command);
            a :class:`WriteError` when the lock cannot be written.
    """

    def __init__(
        self,
        marker_dir: Path,
        command: str,
        *,
        instead: str | None = "choose another output folder",
    ) -> None:
        self.marker_dir = Path(marker_dir)
        self.command = command
        self.instead = instead
        self._lock: Any = None

    def __enter__(self) -> OutputLock:
        from filelock import FileLock, Timeout

        lock = FileLock(self.marker_dir / LOCK_FILE, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise OutputError(self._busy_message()) from None
        except OSError as exc:
            raise output_error(self.marker_dir / LOCK_FILE, exc) from exc
        self._lock = lock
        holder = {"command": self.command, "pid": os.getpid(), "since": time.time()}
        with contextlib.suppress(OSError, OutputError):  # only for the message
            atomic_write_text(self.marker_dir / HOLDER_FILE, json.dumps(holder))
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self, *, discard: bool = False) -> None:
        """Let the lock go; ``discard``: its file too (removed while still held, so no other
        command can have taken it meanwhile: one that opens it later makes a new one)."""
        if self._lock is not None:
            with contextlib.suppress(OSError):
                (self.marker_dir / HOLDER_FILE).unlink()
                if discard:
                    (self.marker_dir / LOCK_FILE).unlink()
            self._lock.release()
            self._lock = None

    def _busy_message(self) -> str:
        out = self.marker_dir.parent
        try:
            holder = json.loads((self.marker_dir / HOLDER_FILE).read_text(encoding="utf-8"))
            who = f"`imgclust {holder['command']}` (pid {holder['pid']})"
        except (OSError, ValueError, KeyError, TypeError):
            who = "another imgclust command"
        return f"{out} is in use by {who}; wait for it to finish, then run this again" + (
            f" (or {self.instead})" if self.instead else ""
        )
