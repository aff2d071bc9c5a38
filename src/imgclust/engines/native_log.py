"""Native log lines kept off the terminal, everything else on this process's fd 2 untouched.

Ray's C++ core worker in the driver prints each of its ERROR lines to fd 2 as well as to its
log file (``python-core-driver-*.log`` in the session's logs), and Ray Data 2.60 makes it
print one on every job with actors: they get their constructor arguments from the object
store and may restart (ray-project/ray#53727, "has constructor arguments in the object store
and max_restarts > 0"), which reads like a failure and is not one. While
:func:`native_lines_filtered` is entered, fd 2 is a pipe that a small process of its own
(this module run as a script) forwards to where fd 2 led, less each line that starts as
Ray's native INFO, WARNING and ERROR lines do; FATAL ones and everything else pass.
``sys.stderr`` (the progress bars, Python's logging and warnings) is the same object writing
to the same fd, so nothing else changes; and as the forwarder is a process, what this one
writes just before it dies (a fault handler's traceback, Ray's own crash report) still
arrives. The log file keeps every line dropped here.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import sys
from collections.abc import Iterator

#: How Ray's native (C++) log lines start: ``[2026-12-02 05:58:25,128 E 2115 2115] ``
#: (I, W or E: a FATAL line, ``F``, always passes).
NATIVE_LINE = re.compile(rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [IWE] \d+ \d+\] ")
#: What the start of such a line may hold, up to its ``]``: a tail of the stream made of
#: these alone may be one, cut by a read, and is held back until the next bytes say (or,
#: at most, :data:`HOLD_S`).
_MAYBE_START = re.compile(rb"\[[\d\-: ,IWE]{0,60}\]?")
#: A line longer than this is forwarded whole, never held back for its end.
MAX_LINE = 1 << 16
#: The longest a held tail waits for the bytes after it (seconds).
HOLD_S = 0.2


class LineFilter:
    """Bytes in, the same bytes out less every whole line that starts as :data:`NATIVE_LINE`
    (also right after a partial line: a progress bar's); it holds back only what may be such a
    line, whose end has not come yet."""

    def __init__(self) -> None:
        self._held = b""

    @property
    def holding(self) -> bool:
        return bool(self._held)

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
        """What is held back, now that no more bytes come (or none came in time)."""
        held, self._held = self._held, b""
        return held


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def forward(read_fd: int = 0, out_fd: int = 1) -> None:
    """Forward ``read_fd`` to ``out_fd``, filtered, until every writer has closed it. It
    never stops reading before that: a writer to a full pipe would wait for good."""
    lines: LineFilter | None = LineFilter()
    sink = True
    while True:
        if lines is not None and lines.holding:
            ready, _, _ = select.select([read_fd], [], [], HOLD_S)
            data = os.read(read_fd, 1 << 16) if ready else None
        else:
            data = os.read(read_fd, 1 << 16)
        if data == b"":
            break
        try:
            if lines is None:
                out = data or b""
            else:
                out = lines.feed(data) if data is not None else lines.flush()
        except Exception:  # (never: but then forward as it comes)
            out, lines = data or b"", None
        if sink:
            try:
                _write_all(out_fd, out)
            except OSError:
                sink = False  # the terminal is gone: read on, to let writers go on
    if sink and lines is not None:
        with contextlib.suppress(OSError):
            _write_all(out_fd, lines.flush())


@contextlib.contextmanager
def native_lines_filtered() -> Iterator[None]:
    """Ray's native log lines written to fd 2 meanwhile stay in its log files (module
    docstring); nothing changes where fd 2 cannot be piped or the forwarder not started."""
    if os.name == "nt":  # (a pipe cannot be waited on with a timeout there: left as it is)
        yield
        return
    try:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        terminal = os.dup(2)
    except OSError:
        yield
        return
    try:
        read_fd, write_fd = os.pipe()
        try:
            # (-I -S: the standard library alone, so it starts in milliseconds)
            forwarder = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__)],
                stdin=read_fd,
                stdout=terminal,
                stderr=subprocess.DEVNULL,
            )
        finally:
            os.close(read_fd)
    except OSError:
        os.close(terminal)
        with contextlib.suppress(NameError, OSError):
            os.close(write_fd)
        yield
        return
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(terminal, 2)  # (the pipe's last writer here: the forwarder drains it, ends)
        os.close(terminal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            forwarder.wait(timeout=1.0)  # (else a process started meanwhile holds the pipe)


if __name__ == "__main__":
    forward()
