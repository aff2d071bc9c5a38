"""Native log lines kept off the terminal, everything else on this process's fd 2 untouched.

Ray's C++ core worker in the driver prints each of its ERROR lines to fd 2 as well as to its
log file (``python-core-driver-*.log`` in the session's logs), and Ray Data 2.60 makes it
print one on every job with actors: they get their constructor arguments from the object
store and may restart (ray-project/ray#53727, "has constructor arguments in the object store
and max_restarts > 0"), which reads like a failure and is not one. While
:func:`native_lines_filtered` is entered, fd 2 is a pipe that one thread forwards to where
fd 2 led, less each whole line that starts as Ray's native log lines do; ``sys.stderr`` (the
progress bars, Python's logging and warnings) is the same object writing to the same fd, so
nothing else changes. The log file keeps every line dropped here.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

#: How Ray's native (C++) log lines start: ``[2026-12-02 05:58:25,128 E 2115 2115] ``.
NATIVE_LINE = re.compile(rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [DIWEF] \d+ \d+\] ")
#: What the start of such a line may hold, up to its ``]``: a tail of the stream made of
#: these alone may be one, cut by a read, and is held back until the next bytes say.
_MAYBE_START = re.compile(rb"\[[\d\-: ,DIWEF]{0,60}\]?")
#: A line longer than this is forwarded whole, never held back for its end.
MAX_LINE = 1 << 16


class LineFilter:
    """Bytes in, the same bytes out less every whole line that starts as :data:`NATIVE_LINE`
    (also right after a partial line: a progress bar's); it holds back only what may be such a
    line, whose end has not come yet."""

    def __init__(self) -> None:
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        buf, out = self._held + data, list[bytes]()
        while (m := NATIVE_LINE.search(buf)) is not None:
            end = buf.find(b"\n", m.end())
            if end < 0:
                if len(buf) - m.start() > MAX_LINE:
                    break  # (not a log line after all: forwarded)
                self._held = buf[m.start() :]
                return b"".join([*out, buf[: m.start()]])
            out.append(buf[: m.start()])
            buf = buf[end + 1 :]
        cut = len(buf)
        start = buf.rfind(b"[")
        if start >= 0 and _MAYBE_START.fullmatch(buf, start):
            cut = start
        self._held = buf[cut:]
        return b"".join([*out, buf[:cut]])

    def flush(self) -> bytes:
        """What is held back, now that no more bytes come."""
        held, self._held = self._held, b""
        return held


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _forward(read_fd: int, terminal: int) -> None:
    """Forward the pipe to ``terminal``, filtered, until every writer has closed it. It never
    stops reading before that: a writer to a full pipe would wait for good."""
    lines: LineFilter | None = LineFilter()
    sink: int | None = terminal
    try:
        while data := os.read(read_fd, 1 << 16):
            try:
                data = lines.feed(data) if lines is not None else data
            except Exception:  # (never: but then forward as it comes)
                lines = None
            if sink is not None:
                try:
                    _write_all(sink, data)
                except OSError:
                    sink = None  # the terminal is gone: read on, to let writers go on
        if sink is not None and lines is not None:
            with contextlib.suppress(OSError):
                _write_all(sink, lines.flush())
    finally:
        os.close(read_fd)


@contextlib.contextmanager
def native_lines_filtered() -> Iterator[None]:
    """Ray's native log lines written to fd 2 meanwhile stay in its log files (module
    docstring); nothing changes where fd 2 cannot be piped."""
    try:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        terminal = os.dup(2)
    except OSError:
        yield
        return
    read_fd, write_fd = os.pipe()
    thread = threading.Thread(
        target=_forward, args=(read_fd, terminal), name="imgclust-fd2", daemon=True
    )
    thread.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(terminal, 2)  # (the pipe's last writer: the thread drains it and ends)
        thread.join(timeout=2.0)
        if not thread.is_alive():  # (else a process started meanwhile holds the pipe still)
            os.close(terminal)
