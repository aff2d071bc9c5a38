"""workers: a decode that hangs or crashes is rejected with a reason; the run goes on."""

from __future__ import annotations

import faulthandler
import functools
import mmap
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from corpus import encode, pattern
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgclust.decode import Decoded, decode
from imgclust.models import get_spec
from imgclust.workers import SLOT_BYTES, DecodePool, _from_slot, _to_slot

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
    # 5 s: a good file on a worker just forked to replace a killed one must not time out too
    # on a loaded machine (the hangs sleep an hour).
    with DecodePool(hang_on_marked, workers=2, timeout=5.0) as pool:
        out = dict(pool.imap(paths))
        assert pool.n_timeouts == 2
    elapsed = time.monotonic() - start
    assert elapsed < 40, "the hang stalled the pool"
    for i, name in enumerate(names):
        if "hang" in name:
            assert out[i].array is None and out[i].reason == "decode timed out after 5 s"
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


def made_from_name(path: str) -> Decoded:
    """Test-only decoder: an array the file's name describes ("H-W-C-DTYPE-SEED"), no file
    read; "obj" arrays hold Python objects (which no slot can carry)."""
    h, w, c, kind, seed = os.path.basename(path).split("-")
    rng = np.random.default_rng(int(seed))
    if kind == "obj":
        return Decoded(np.array([f"item {seed}"] * int(h), dtype=object), None, int(seed), 1)
    data = rng.integers(0, 255, size=(int(h), int(w), int(c))).astype(kind)
    return Decoded(data, None, size=int(seed), mtime_ns=7, taken=f"taken {seed}")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from([(0, 3), (1, 1), (224, 224), (384, 384), (600, 600)]),
            st.sampled_from(["uint8", "float32", "int16", "obj"]),
        ),
        min_size=1,
        max_size=12,
    ),
    st.integers(1, 3),
)
def test_every_array_comes_back_whole_through_its_slot_or_the_pipe(
    specs: list[tuple[tuple[int, int], str]], workers: int
) -> None:
    """Arrays that fit a worker's slot (224 and 384 pixels of uint8) and ones that do not
    (600 pixels, float32 at 384, objects) come back equal to a plain call, in order, with the
    rest of their ``Decoded``; a slot reused for the next file leaves nothing of the last."""
    paths = [f"/nowhere/{h}-{w}-3-{kind}-{i}" for i, ((h, w), kind) in enumerate(specs)]
    with DecodePool(made_from_name, workers=workers) as pool:
        out = list(pool.imap(paths))
    assert [i for i, _ in out] == list(range(len(paths)))
    for (_, got), path in zip(out, paths, strict=True):
        want = made_from_name(path)
        assert got.array is not None and want.array is not None
        assert got.array.dtype == want.array.dtype and got.array.shape == want.array.shape
        assert np.array_equal(got.array, want.array)
        assert (got.reason, got.size, got.mtime_ns, got.taken) == (
            want.reason, want.size, want.mtime_ns, want.taken
        )  # fmt: skip


def test_a_fitting_array_goes_through_the_slot_and_a_large_one_through_the_pipe() -> None:
    slot = mmap.mmap(-1, SLOT_BYTES)
    small = made_from_name("/x/224-224-3-uint8-1")
    sent, in_slot = _to_slot(small, slot)
    assert sent.array is None and in_slot == ((224, 224, 3), np.dtype(np.uint8))
    assert np.array_equal(_from_slot(sent, slot, in_slot).array, small.array)  # type: ignore[arg-type]
    fields = np.array([(1, 2.5), (3, 4.5)], dtype=[("a", "<i4"), ("b", ">f4")])
    sent, in_slot = _to_slot(Decoded(fields, None), slot)
    back = _from_slot(sent, slot, in_slot).array
    assert back is not None and back.dtype == fields.dtype and back.tolist() == fields.tolist()
    for name in ("600-600-3-uint8-2", "4-1-3-obj-3"):
        big = made_from_name(f"/x/{name}")
        assert _to_slot(big, slot) == (big, None)
    assert _to_slot(Decoded(None, "bad"), slot) == (Decoded(None, "bad"), None)
    slot.close()


def test_a_replaced_worker_hands_back_each_files_own_pixels(tmp_path: Path) -> None:
    """After a crash and a timeout (each worker replaced, its slot kept), every other file's
    array is its own: distinct photos, compared with a plain decode."""
    names = ["a.jpg", "crash.jpg", "b.jpg", "hang.jpg", "c.jpg", "exit.jpg", "d.jpg"]
    paths = []
    for i, name in enumerate(names):
        (tmp_path / name).write_bytes(encode(pattern(64 + 8 * i, 48 + 4 * i), "JPEG"))
        paths.append(str(tmp_path / name))
    with DecodePool(crash_or_hang_on_marked, workers=1, timeout=5.0) as pool:
        out = dict(pool.imap(paths))
        assert (pool.n_crashes, pool.n_timeouts) == (2, 1)
    for i, name in enumerate(names):
        if name.startswith(("crash", "hang", "exit")):
            assert out[i].array is None and out[i].reason
        else:
            assert np.array_equal(out[i].array, REAL(paths[i]).array)  # type: ignore[arg-type]


def crash_or_hang_on_marked(path: str) -> Decoded:
    if "hang" in os.path.basename(path):
        time.sleep(3600)
    return crash_on_marked(path)


def test_the_pool_hands_arrays_over_through_the_slot() -> None:
    """Not only may they: the last array a lone worker decoded is in its slot, byte for
    byte (the pipe would leave the slot as it was made: zeros)."""
    paths = ["/x/224-224-3-uint8-5", "/x/224-224-3-uint8-6"]
    with DecodePool(made_from_name, workers=1) as pool:
        out = dict(pool.imap(paths))
        (worker,) = pool._workers
        assert worker.slot is not None
        last = out[1].array
        assert last is not None and bytes(worker.slot[: last.nbytes]) == last.tobytes()


def tensor_like(path: str) -> Decoded:
    """Test-only decoder: an ``array`` that is not an ndarray (a custom decoder's list)."""
    return Decoded([[1, 2], [3, 4]], None)  # type: ignore[arg-type]


def test_a_custom_decoders_non_array_goes_through_the_pipe() -> None:
    with DecodePool(tensor_like, workers=1) as pool:
        out = dict(pool.imap(["/x/a", "/x/b"]))
        assert pool.n_crashes == 0
    assert out[0].array == [[1, 2], [3, 4]] and out[1].reason is None
