"""Ray's native log lines kept off the terminal: everything else on fd 2 as it was written."""

from __future__ import annotations

import itertools
import os
import select
import subprocess
import sys
import threading

from hypothesis import assume, given
from hypothesis import strategies as st

from imgclust.engines.native_log import HOLD_S, NATIVE_LINE, LineFilter, forward

LINE = (
    b"[2026-12-02 05:58:25,128 E 2115 2115] core_worker.cc:2465: Actor with class name: "
    b"'MapWorker(MapBatches(EmbedShard))' has constructor arguments in the object store and "
    b"max_restarts > 0. See https://github.com/ray-project/ray/issues/53727 for more details.\n"
)
#: What other writers put on fd 2: progress bars (ANSI codes, carriage returns, no line end),
#: messages, brackets, counts and dates.
OTHER = st.text(st.sampled_from(list("abc 0123456789-:,.EWIF[]\x1b\r\n━")), max_size=60).map(
    lambda s: s.encode()
)


@given(
    parts=st.lists(st.tuples(OTHER, st.booleans()), max_size=8),
    cuts=st.lists(st.integers(0, 2000), max_size=12),
)
def test_the_filter_drops_native_lines_and_nothing_else_however_the_reads_fall(
    parts: list[tuple[bytes, bool]], cuts: list[int]
) -> None:
    # (the other writers' text, between two native lines, never looks like one itself)
    runs = b"".join(text + (b"\0" if native else b"") for text, native in parts).split(b"\0")
    assume(not any(NATIVE_LINE.search(run) for run in runs))
    stream = b"".join(text + (LINE if native else b"") for text, native in parts)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    lines = LineFilter()
    out = b"".join(lines.feed(stream[a:b]) for a, b in itertools.pairwise(points))
    out += lines.flush()
    assert out == b"".join(text for text, _ in parts)


def test_what_may_start_a_native_line_is_held_only_until_the_next_bytes() -> None:
    lines = LineFilter()
    assert lines.feed(b"  embed 3/15 [2026-12-02 05:58") == b"  embed 3/15 "
    assert lines.feed(b" not a log line\n") == b"[2026-12-02 05:58 not a log line\n"
    assert lines.feed(b"\x1b[2K\r  embed 4/15\x1b[") == b"\x1b[2K\r  embed 4/15\x1b"
    assert lines.feed(b"0m") == b"[0m"
    assert NATIVE_LINE.match(LINE) and lines.feed(LINE[:70]) == b""
    assert lines.feed(LINE[70:] + b"done\n") == b"done\n"
    fatal = LINE.replace(b",128 E ", b",128 F ")  # (a FATAL line always passes)
    assert lines.feed(fatal) == fatal


def test_a_held_tail_is_forwarded_when_no_more_bytes_come() -> None:
    """`[3]` at the end of a progress line may start a native line: it waits for the next
    bytes at most HOLD_S, not until the writer is done."""
    (r_in, w_in), (r_out, w_out) = os.pipe(), os.pipe()
    thread = threading.Thread(target=forward, args=(r_in, w_out), daemon=True)
    thread.start()
    try:
        os.write(w_in, b"embedding shard [3]")
        got = b""
        while len(got) < 19 and select.select([r_out], [], [], 10 * HOLD_S + 2)[0]:
            got += os.read(r_out, 100)
        assert got == b"embedding shard [3]"
    finally:
        os.close(w_in)
        thread.join(5)
        for fd in (r_in, r_out, w_out):
            os.close(fd)


def _stderr_of(body: str) -> tuple[int, list[str]]:
    script = (
        "import logging, os, sys\nfrom imgclust.engines.native_log import native_lines_filtered\n"
    )
    done = subprocess.run([sys.executable, "-c", script + body], capture_output=True, timeout=60)
    return done.returncode, done.stderr.decode(errors="replace").splitlines()


def test_fd_2_is_filtered_and_every_python_writer_still_reaches_it() -> None:
    """The C-level line goes; prints, a logging handler made before (bound to the old
    ``sys.stderr`` object), a raw write and what comes after all arrive, in order."""
    rc, said = _stderr_of(f"""
log = logging.getLogger("t")
log.addHandler(logging.StreamHandler())
print("before", file=sys.stderr, flush=True)
with native_lines_filtered():
    os.write(2, {LINE!r})
    print("print", file=sys.stderr, flush=True)
    log.warning("logged")
    os.write(2, "a C library's own line, ünïcode\\n".encode())
print("after", file=sys.stderr, flush=True)
""")
    assert rc == 0 and said == [
        "before", "print", "logged", "a C library's own line, ünïcode", "after"
    ], said  # fmt: skip


def test_what_a_process_says_as_it_crashes_still_arrives() -> None:
    """The forwarder is a process of its own: a fault handler's traceback, written as the
    process dies inside the job, reaches the terminal."""
    rc, said = _stderr_of("""
import faulthandler
faulthandler.enable()
with native_lines_filtered():
    print("last words", file=sys.stderr, flush=True)
    os.abort()
""")
    assert rc != 0 and "last words" in said, said
    assert any("Fatal Python error" in line for line in said), said
