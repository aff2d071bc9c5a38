"""Ray's native log lines kept off the terminal: everything else on fd 2 as it was written."""

from __future__ import annotations

import itertools
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from imgclust.engines.native_log import NATIVE_LINE, LineFilter

LINE = (
    b"[2026-12-02 05:58:25,128 E 2115 2115] core_worker.cc:2465: Actor with class name: "
    b"'MapWorker(MapBatches(EmbedShard))' has constructor arguments in the object store and "
    b"max_restarts > 0. See https://github.com/ray-project/ray/issues/53727 for more details.\n"
)
#: What other writers put on fd 2: progress bars (ANSI codes, carriage returns, no line end),
#: messages, brackets and dates; never a `]` (so never a native line's start).
OTHER = st.text(st.sampled_from(list("abc 0123456789-:,.EWI[\x1b\r\n━")), max_size=60).map(
    lambda s: s.encode()
)


@given(
    parts=st.lists(st.tuples(OTHER, st.booleans()), max_size=8),
    cuts=st.lists(st.integers(0, 2000), max_size=12),
)
def test_the_filter_drops_native_lines_and_nothing_else_however_the_reads_fall(
    parts: list[tuple[bytes, bool]], cuts: list[int]
) -> None:
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


def test_fd_2_is_filtered_and_every_python_writer_still_reaches_it() -> None:
    """The C-level line goes; prints, a logging handler made before (bound to the old
    ``sys.stderr`` object), a raw write and what comes after all arrive, in order."""
    script = f"""
import logging, os, sys
from imgclust.engines.native_log import native_lines_filtered
log = logging.getLogger("t")
log.addHandler(logging.StreamHandler())
print("before", file=sys.stderr, flush=True)
with native_lines_filtered():
    os.write(2, {LINE!r})
    print("print", file=sys.stderr, flush=True)
    log.warning("logged")
    os.write(2, b"a C library's own line\\n")
print("after", file=sys.stderr, flush=True)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    said = done.stderr.decode().splitlines()
    assert said == ["before", "print", "logged", "a C library's own line", "after"], said
