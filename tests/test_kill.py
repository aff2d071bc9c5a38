"""kill -9 a real ``imgclust run`` at several points; the next run finishes with the same result.

Each kill point waits for something the run writes (a store shard, the last done marker, the
first thumbnail, a rewritten CSV) and kills the process then, after a small random delay. Set
``IMGCLUST_KILL_SEED`` to replay the delays of a failing run; the seed is in every message.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imgclust.config import EmbedConfig
from imgclust.embed import model_for
from imgclust.store import FeatureStore

pytestmark = pytest.mark.slow  # eleven real runs of the CLI, about a minute on 2 idle cores

SEED = int(os.environ.get("IMGCLUST_KILL_SEED", str(time.time_ns() % 10_000)))
SCENES = ("coffee", "rocket", "astronaut", "chelsea")  # 4 scenes x 8 photos
SHARD = 4


def _cmd(photos: Path, out: Path, k: int = 4) -> list[str]:
    # fp32: the kill delays are tuned to its pace; int8 embeds all 32 photos within them.
    return [sys.executable, "-m", "imgclust.cli", "run", str(photos), "--out", str(out),
            "--k", str(k), "--seed", "7", "--workers", "1", "--batch-size", "4",
            "--shard-size", str(SHARD), "--precision", "fp32", "--quiet"]  # fmt: skip


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _store(out: Path) -> Path:
    return FeatureStore(out / ".imgclust" / "store", model_for(EmbedConfig(precision="fp32"))).dir


def _n_stored(out: Path) -> int:
    return sum(json.loads(p.read_text())["n"] for p in _store(out).glob("*.done.json"))


@pytest.fixture(scope="module")
def photos(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kill") / "photos"
    for scene in SCENES:
        shutil.copytree(demo_photos / scene, folder / scene)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


@pytest.fixture(scope="module")
def baseline(photos: Path) -> tuple[Path, list[dict[str, str]], int]:
    out = photos.parent / "baseline"
    subprocess.run(_cmd(photos, out), check=True, capture_output=True, timeout=300)
    n_markers = len(list(_store(out).glob("*.done.json")))
    return out, _rows(out / "assignments.csv"), n_markers


def _kill_when(cmd: list[str], ready: Callable[[], bool], delay: float) -> int:
    """Start ``cmd``; kill -9 it ``delay`` s after ``ready()`` turns true. Returns its rc."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not ready():
        assert proc.poll() is None, f"the run ended before the kill point (seed {SEED})"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.001)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    return proc.wait()


def _torn_shard(out: Path) -> bool:
    """A shard being written: a temp file, or a shard file whose done marker is not there yet."""
    store = _store(out)
    if not store.is_dir():
        return False
    names = set(os.listdir(store))
    return any(
        ".tmp" in n
        or (n.endswith(".parquet") and n[: -len(".parquet")] + ".done.json" not in names)
        for n in names
    )


def _thumbnail_written(out: Path) -> bool:
    thumbs = out / "thumbs"
    return thumbs.is_dir() and any(p.is_file() for p in thumbs.rglob("*"))


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _assert_complete_outputs(out: Path, n_rows: int) -> None:
    """No page or CSV in place is half-written (temp files may be left; they are not in place)."""
    for page in out.glob("*.html"):
        if ".tmp" in page.name:  # (`cluster-0-1.html.tmp<pid>.html`: a write a kill cut short)
            continue
        assert page.read_text("utf-8").rstrip().endswith("</html>"), page
    if (out / "assignments.csv").exists():
        assert len(_rows(out / "assignments.csv")) == n_rows
    for name in ("clusters.csv", "rejected.csv"):
        if (out / name).exists():
            _rows(out / name)


KILL_POINTS: dict[str, tuple[Callable[[Path, int], bool], float]] = {
    # Up to 20 ms: the 24 photos left after two shards take ~0.2 s at fp32 on 2 cores.
    "embedding": (lambda out, n: len(list(_store(out).glob("*.done.json"))) >= 2, 0.02),
    "store-write": (lambda out, n: _torn_shard(out), 0.0),
    "clustering": (lambda out, n: len(list(_store(out).glob("*.done.json"))) >= n, 0.01),
    "report": (lambda out, n: _thumbnail_written(out), 0.05),
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_then_rerun_gives_the_same_assignments(
    point: str, photos: Path, baseline: tuple[Path, list[dict[str, str]], int], tmp_path: Path
) -> None:
    _, expected, n_markers = baseline
    out = tmp_path / "out"
    ready, max_delay = KILL_POINTS[point]
    delay = random.Random(f"{SEED}-{point}").uniform(0, max_delay)
    rc = _kill_when(_cmd(photos, out), lambda: ready(out, n_markers), delay)
    assert rc == -signal.SIGKILL
    _assert_complete_outputs(out, len(expected))
    n_stored = _n_stored(out)
    if point in ("embedding", "store-write"):
        assert n_stored < len(expected), f"killed too late (seed {SEED})"
    if point != "report":
        assert not (out / "assignments.csv").exists(), f"killed too late (seed {SEED})"
    again = subprocess.run(_cmd(photos, out), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    info = json.loads((out / ".imgclust" / "run.json").read_text())
    assert info["n_embedded"] == len(expected) - n_stored, f"re-embedded stored images ({SEED})"
    assert _rows(out / "assignments.csv") == expected, f"seed {SEED}"
    _assert_complete_outputs(out, len(expected))


@pytest.mark.slow
def test_kill_while_rewriting_the_report_keeps_good_files(
    photos: Path, baseline: tuple[Path, list[dict[str, str]], int], tmp_path: Path
) -> None:
    base_out, expected, _ = baseline
    out = tmp_path / "out"
    shutil.copytree(base_out, out, symlinks=True)
    before = (out / "assignments.csv").stat().st_mtime_ns
    delay = random.Random(f"{SEED}-rewrite").uniform(0, 0.05)
    rewritten = lambda: (out / "assignments.csv").stat().st_mtime_ns != before  # noqa: E731
    rc = _kill_when(_cmd(photos, out, k=3), rewritten, delay)
    assert rc == -signal.SIGKILL
    _assert_complete_outputs(out, len(expected))
    again = subprocess.run(_cmd(photos, out), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads((out / ".imgclust" / "run.json").read_text())["n_embedded"] == 0
    assert _rows(out / "assignments.csv") == expected


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_ctrl_c_says_what_is_kept_and_the_next_run_resumes(
    photos: Path, baseline: tuple[Path, list[dict[str, str]], int], tmp_path: Path, stop: str
) -> None:
    """Ctrl-C (SIGINT to the run's process group, as a terminal sends it) once shards are
    stored: exit 130 with one line that says the finished work is kept (Typer used to turn
    it into a silent exit), no traceback, and the next run embeds only the rest. SIGTERM to
    the command alone (``kill``, ``timeout``) stops it the same way: exit 143."""
    _, expected, _ = baseline
    out = tmp_path / "out"
    cmd = [c for c in _cmd(photos, out) if c != "--quiet"]
    # As a terminal's foreground job: Ctrl-C's default action, also when pytest itself was
    # started in the background (`cmd &` in a script starts its children ignoring SIGINT,
    # and a Python started so keeps ignoring it: the run then ended 0, unbothered).
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)  # fmt: skip
    deadline = time.monotonic() + 240
    while not (_store(out).is_dir() and len(list(_store(out).glob("*.done.json"))) >= 2):
        assert proc.poll() is None, "the run ended before Ctrl-C"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    if stop == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == (130 if stop == "ctrl-c" else 143), stderr[-2000:]
    said = "interrupted" if stop == "ctrl-c" else "terminated"
    assert f"{said}: what was finished is kept; run again to resume" in stderr
    assert "Traceback" not in stdout + stderr
    stored = _n_stored(out)
    again = subprocess.run(_cmd(photos, out), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert _rows(out / "assignments.csv") == expected
    info = json.loads((out / ".imgclust" / "run.json").read_text())
    assert info["n_cached"] >= stored > 0  # what the interrupted run finished was kept
