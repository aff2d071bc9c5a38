"""workers: a decode that hangs or crashes is rejected with a reason; the run goes on."""

from __future__ import annotations

import faulthandler
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from corpus import encode, pattern

from imgclust.decode import Decoded, decode
from imgclust.models import get_spec
from imgclust.workers import DecodePool

PRE = get_spec("efficientnet_lite0").preprocess
REAL = functools.partial(decode, preprocess=PRE)


def hang_on_marked(path: str) -> Decoded:
    """Test-only decoder: sleeps forever on files whose name holds "hang", else decodes."""
    if "hang" in os.path.basename(path):
        time.sleep(3600)
    return REAL(path)


def crash_on_marked(path: str) -> Decoded:
    """Test-only decoder: a segfault on files whose name holds "crash", else decodes."""
    if "crash" in os.path.basename(path):
        faulthandler.disable()  # pytest's handler would print the child's stack
        os.kill(os.getpid(), signal.SIGSEGV)
    if "exit" in os.path.basename(path):
        os._exit(3)
    return REAL(path)


def raise_on_marked(path: str) -> Decoded:
    if "raise" in os.path.basename(path):
        raise RuntimeError("boom")
    return REAL(path)


def _photos(folder: Path, names: list[str]) -> list[str]:
    data = encode(pattern(64, 48), "JPEG")
    paths = []
    for name in names:
        (folder / name).write_bytes(data)
        paths.append(str(folder / name))
    return paths


def test_results_come_back_in_input_order(tmp_path: Path) -> None:
    paths = _photos(tmp_path, [f"{i:03d}.jpg" for i in range(40)])
    (tmp_path / "000.jpg").write_bytes(b"junk")
    with DecodePool(REAL, workers=2, timeout=30) as pool:
        out = list(pool.imap(paths, prefetch=3))
    assert [i for i, _ in out] == list(range(40))
    assert out[0][1].array is None and out[0][1].reason
    assert all(d.array is not None and d.array.shape == (224, 224, 3) for _, d in out[1:])
    assert np.array_equal(out[5][1].array, REAL(paths[5]).array)  # type: ignore[arg-type]


def test_a_hanging_decode_times_out_and_the_rest_go_on(tmp_path: Path) -> None:
    names = ["a.jpg", "hang-1.jpg", "b.jpg", "c.jpg", "hang-2.jpg", "d.jpg", "e.jpg"]
    paths = _photos(tmp_path, names)
    start = time.monotonic()
    with DecodePool(hang_on_marked, workers=2, timeout=1.0) as pool:
        out = dict(pool.imap(paths))
        assert pool.n_timeouts == 2
    elapsed = time.monotonic() - start
    assert elapsed < 10, "the hang stalled the pool"
    for i, name in enumerate(names):
        if "hang" in name:
            assert out[i].array is None and out[i].reason == "decode timed out after 1 s"
        else:
            assert out[i].array is not None


def test_a_crashing_decoder_rejects_only_its_file(tmp_path: Path) -> None:
    names = ["a.jpg", "crash.jpg", "b.jpg", "exit.jpg", "c.jpg", "d.jpg"]
    paths = _photos(tmp_path, names)
    with DecodePool(crash_on_marked, workers=1, timeout=30) as pool:
        out = dict(pool.imap(paths))
        assert pool.n_crashes == 2
    assert out[1].array is None and "SIGSEGV" in (out[1].reason or "")
    assert out[3].array is None and "exit code 3" in (out[3].reason or "")
    assert all(out[i].array is not None for i in (0, 2, 4, 5))


def test_an_exception_in_the_decoder_is_a_reason(tmp_path: Path) -> None:
    paths = _photos(tmp_path, ["raise.jpg", "ok.jpg"])
    with DecodePool(raise_on_marked, workers=1) as pool:
        out = dict(pool.imap(paths))
    assert out[0].reason == "decode failed: RuntimeError: boom"
    assert out[1].array is not None


def test_stopping_early_leaves_no_worker_behind(tmp_path: Path) -> None:
    paths = _photos(tmp_path, [f"{i}.jpg" for i in range(30)])
    with DecodePool(REAL, workers=2) as pool:
        procs = [w.process for w in pool._workers]
        for i, _ in pool.imap(paths, prefetch=2):
            if i == 3:
                break
    assert all(not p.is_alive() for p in procs)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        DecodePool(REAL, workers=0)
    with pytest.raises(ValueError):
        DecodePool(REAL, workers=1, timeout=0)


_ORPHAN_SCRIPT = """
import sys, threading, time
sys.path.insert(0, sys.argv[1])
from test_workers import hang_on_marked
from imgclust.workers import DecodePool
pool = DecodePool(hang_on_marked, workers=2, timeout=600).__enter__()
items = pool.imap([sys.argv[2]] * 2)
threading.Thread(target=lambda: next(items), daemon=True).start()
print(*[w.process.pid for w in pool._workers], flush=True)
time.sleep(600)
"""


def test_workers_do_not_outlive_a_killed_parent(tmp_path: Path) -> None:
    """kill -9 of the parent while workers hang: they exit (and release inherited locks)."""
    (hang,) = _photos(tmp_path, ["hang.jpg"])
    script = _ORPHAN_SCRIPT
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(Path(__file__).parent), hang],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    time.sleep(0.5)  # both workers are now inside the hanging decode
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    assert pids and not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead
        return fh.read().split(") ")[-1][0] != "Z"
