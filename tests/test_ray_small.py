"""The Ray engine on clusters too small for one CPU a task: a node of one CPU (a small pod,
``ray start --num-cpus 1``, a one-core machine's local instance) must run the job rather
than hang with its model actor holding the only CPU. Each run is the real CLI joining a
real cluster (``ray.cluster_utils.Cluster``) started and stopped here."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'imgclust[ray]'")
from ray.cluster_utils import Cluster  # noqa: E402

from imgclust.engines.ray import cpu_share  # noqa: E402


@given(nodes=st.lists(st.integers(0, 64) | st.floats(0.01, 64), max_size=8))
def test_each_node_has_room_for_an_actor_and_a_decode_task(nodes: list[float]) -> None:
    share = cpu_share(nodes)
    assert 0 < share <= 1
    assert all(2 * share <= c for c in nodes if c > 0)  # (an actor and a task, side by side)
    if all(c >= 2 or c == 0 for c in nodes):
        assert share == 1.0  # (one CPU each, as ever)


@pytest.fixture(scope="module")
def one_cpu(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A cluster of two nodes of one CPU each (every model actor on a node of its own)."""
    token = os.urandom(32).hex()
    saved = os.environ.get("RAY_AUTH_TOKEN")
    os.environ["RAY_AUTH_TOKEN"] = token
    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
        shutdown_at_exit=True,
    )
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    c.shutdown()
    if saved is None:
        os.environ.pop("RAY_AUTH_TOKEN", None)
    else:
        os.environ["RAY_AUTH_TOKEN"] = saved


def test_a_cluster_of_one_cpu_nodes_runs(one_cpu: Any, demo_photos: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(demo_photos / "coffee", photos / "coffee")
    shutil.copytree(demo_photos / "rocket", photos / "rocket")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "imgclust.cli", "run", str(photos), "--out", str(out),
           "--engine", "ray", "--ray-address", one_cpu.address, "--shard-size", "4",
           "--k", "2", "--algorithm", "kmeans", "--quiet"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "assignments.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(list(photos.rglob("*.jpg")))
    assert len({r["cluster"] for r in rows}) == 2


def test_a_token_the_cluster_needs_and_this_process_lacks_is_said_so(
    one_cpu: Any, demo_photos: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_TOKEN")}
    env.update(RAY_AUTH_MODE="token", HOME=str(tmp_path))  # (no ~/.ray/auth_token either)
    cmd = [sys.executable, "-m", "imgclust.cli", "run", str(demo_photos / "coffee"), "--out",
           str(tmp_path / "out"), "--engine", "ray", "--ray-address", one_cpu.address]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stderr[-3000:]
    said = " ".join(done.stderr.split())
    assert f"the Ray cluster at {one_cpu.address} did not accept this process's" in said
    assert "set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH)" in said and "Traceback" not in said
    assert not (tmp_path / ".ray").exists()
