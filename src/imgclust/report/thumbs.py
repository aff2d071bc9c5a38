"""Gallery thumbnails: one small JPEG per shown image, made in parallel and reused across runs.

A thumbnail lives at ``thumbs/<size>/<ab>/<sha1 of the path bytes>.jpg`` under the output
folder, so changing the thumbnail size never serves stale pictures. It is remade only when
the source is newer, so those the decode workers already made while embedding
(:class:`imgclust.decode.ThumbTarget`) are reused as they are. A source that cannot be
read simply has no thumbnail (the page shows a placeholder); a thumbnail that cannot be
*written* is the output folder's fault and raises.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import NamedTuple

from .._fs import ensure_dir, output_error
from ..decode import thumb_relpath
from ..uri import is_uri

#: Fewer thumbnails than this to make are made in this process: a pool would cost more.
PARALLEL_MIN = 16


class _Job(NamedTuple):
    src: str
    dest: str
    size: int


class _Outcome(NamedTuple):
    dest: str
    ok: bool
    write_error: OSError | None


def make_thumbnails(
    out_dir: Path,
    paths: Sequence[str],
    *,
    size: int,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, str]:
    """Make (or reuse) the thumbnails of ``paths`` under ``out_dir``.

    Args:
        out_dir: the report folder.
        paths: source images; duplicates are handled once.
        size: longest side of a thumbnail, in pixels.
        workers: processes to use; ``None`` means one per CPU. Few thumbnails are made serially.
        on_progress: called with the number of thumbnails just settled (made, reused or
            failed); the calls add up to the number of distinct ``paths``.

    Returns:
        The relative thumbnail path of every source that has a thumbnail now.

    Raises:
        OutputError: when a thumbnail cannot be written.
    """
    progress = on_progress or (lambda n: None)
    available: dict[str, str] = {}
    jobs: list[_Job] = []
    n_settled = 0
    for src in dict.fromkeys(paths):
        rel = thumb_relpath(src, size)
        state = _freshness(src, out_dir / rel)
        if state == "stale":
            jobs.append(_Job(src, os.fspath(out_dir / rel), size))
            continue
        n_settled += 1
        if state == "fresh":
            available[src] = rel
    if n_settled:
        progress(n_settled)
    for folder in sorted({os.path.dirname(job.dest) for job in jobs}):
        ensure_dir(Path(folder))
    rel_of = {job.dest: thumb_relpath(job.src, size) for job in jobs}
    src_of = {job.dest: job.src for job in jobs}
    with contextlib.closing(_run(jobs, workers)) as outcomes:
        for outcome in outcomes:
            if outcome.write_error is not None:
                raise output_error(outcome.dest, outcome.write_error)
            if outcome.ok:
                available[src_of[outcome.dest]] = rel_of[outcome.dest]
            progress(1)
    return available


def _freshness(src: str, thumb: Path) -> str:
    """``"fresh"`` (reuse), ``"stale"`` (make it) or ``"missing"`` (no source to make it from)."""
    try:
        # An object in storage (a URI) is not stat'ed (a request per photo): its thumbnail
        # is written again whenever a changed object is decoded again.
        src_mtime = 0 if is_uri(src) else os.stat(src).st_mtime_ns
    except OSError:
        return "missing"
    try:
        return "fresh" if thumb.stat().st_mtime_ns >= src_mtime else "stale"
    except OSError:
        return "stale"


def _run(jobs: Sequence[_Job], workers: int | None) -> Generator[_Outcome, None, None]:
    n_workers = min(workers or os.cpu_count() or 1, len(jobs))
    if n_workers <= 1 or len(jobs) < PARALLEL_MIN:
        yield from map(_make_one, jobs)
        return
    try:
        # the platform's start method: under spawn (macOS, Windows) a calling script needs the
        # usual `if __name__ == "__main__":` guard; if the pool breaks we finish serially
        pool = ProcessPoolExecutor(n_workers)
    except (OSError, NotImplementedError):  # no subprocesses here: do the work ourselves
        yield from map(_make_one, jobs)
        return
    done: set[str] = set()
    try:
        chunksize = max(1, min(32, len(jobs) // (4 * n_workers)))
        for outcome in pool.map(_make_one, jobs, chunksize=chunksize):
            done.add(outcome.dest)
            yield outcome
    except BrokenProcessPool:  # a worker died (killed for memory?): finish in this process
        yield from map(_make_one, [job for job in jobs if job.dest not in done])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _make_one(job: _Job) -> _Outcome:
    """Worker: make one thumbnail; runs in a pool process, so it takes and returns tuples."""
    from ..decode import make_thumbnail

    try:
        ok = make_thumbnail(job.src, job.dest, max_side=job.size)
    except OSError as exc:  # decoding errors are returned as False: this is the write failing
        return _Outcome(job.dest, False, exc)
    except Exception:  # an encoder bug must not stop the report: show a placeholder
        return _Outcome(job.dest, False, None)
    return _Outcome(job.dest, ok, None)


__all__ = ["PARALLEL_MIN", "make_thumbnails", "thumb_relpath"]
