"""Writing into the output folder: atomic files, and one error that says what to do."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from ..exceptions import OutputError


def output_error(path: str | os.PathLike[str], exc: OSError) -> OutputError:
    """An :class:`OutputError` for a failed write to ``path``, saying how to fix it."""
    reason = exc.strerror or str(exc)
    return OutputError(
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


@contextmanager
def atomic_open(path: Path, *, newline: str | None = None) -> Iterator[TextIO]:
    """Open ``path.tmp`` for UTF-8 text; on success it replaces ``path`` in one step.

    A crash or an error while writing leaves the previous ``path`` as it was and removes the
    temporary file. Undecodable file-name bytes (surrogate escapes) are written back as bytes.

    Raises:
        OutputError: when the file cannot be written.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline=newline) as fh:
            yield fh
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise output_error(path, exc) from exc
    except BaseException:
        _discard(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as fh:
        fh.write(text)


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
