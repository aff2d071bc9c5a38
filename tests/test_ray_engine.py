"""Engine selection without a cluster: the options, the missing-Ray message, and the local
default staying as it was (Ray never imported). The cluster runs are in test_ray.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from imgclust.cli import app
from imgclust.config import EmbedConfig, load_config
from imgclust.engines import create_engine
from imgclust.engines.local import LocalEngine
from imgclust.exceptions import ConfigError


def test_engine_options_are_checked() -> None:
    assert EmbedConfig().engine == "local" and EmbedConfig().ray_address is None
    with pytest.raises(ConfigError, match="unknown engine 'spark'; choose one of local, ray"):
        EmbedConfig(engine="spark")
    with pytest.raises(ConfigError, match="--ray-address needs --engine ray"):
        EmbedConfig(ray_address="10.0.0.5:6379")
    cfg = load_config(["p"], "o", overrides={"embed": {"engine": "ray", "ray_address": "h:1"}})
    assert (cfg.embed.engine, cfg.embed.ray_address) == ("ray", "h:1")
    assert isinstance(create_engine(EmbedConfig()), LocalEngine)


def test_cli_passes_the_engine_options_by_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["run", str(tmp_path), "--out", str(tmp_path / "o"), "--ray-address", "h:1"]
    )
    assert result.exit_code != 0 and "--ray-address needs --engine ray" in result.output


def test_a_missing_ray_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgclust.engines.ray import RayEngine

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: import fails
    with pytest.raises(ConfigError, match=r"pip install 'imgclust\[ray\]'"):
        RayEngine().connect()


@pytest.mark.slow
def test_the_local_default_never_imports_ray(demo_photos: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(demo_photos / "coffee", photos / "coffee")
    code = (
        "import sys; from imgclust import cluster_folder; "
        f"r = cluster_folder([{str(photos)!r}], out={str(tmp_path / 'out')!r}, k=2, workers=0); "
        "print(len(r.paths), sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["8", "[]"]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 3000), per_shard=st.integers(1, 700))
def test_shards_cover_the_records_in_order_the_first_ones_smaller(n: int, per_shard: int) -> None:
    from imgclust.engines.ray import _split
    from imgclust.scan import FileRecord

    records = [FileRecord(f"/p/{i:05d}.jpg", 1, 1) for i in range(n)]
    groups = _split(records, per_shard)
    assert [r for g in groups for r in g] == records
    assert all(0 < len(g) <= per_shard for g in groups)
    sizes = [len(g) for g in groups]
    ramp = [max(1, per_shard // 4), max(1, per_shard // 2)]
    assert sizes[:2] == [min(r, n - sum(ramp[:i])) for i, r in enumerate(ramp)][: len(sizes)]
    rest = sizes[2:]  # whole shards, then a tail of two or three equal parts
    assert all(size == per_shard for size in rest[:-3])
    tail = rest[-3:]
    if len(tail) == 3 and max(tail) - min(tail) > 1:
        tail = tail[1:]
        assert rest[-3] == per_shard
    assert not tail or max(tail) - min(tail) <= 1


def test_storage_variables_go_with_a_job_but_never_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from imgclust.engines.ray import _storage_env

    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
                "AWS_EC2_METADATA_DISABLED", "AWS_PROFILE"):  # fmt: skip
        monkeypatch.delenv(key, raising=False)
    assert _storage_env() is None
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://minio:9000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert _storage_env() == {"env_vars": {"AWS_ENDPOINT_URL_S3": "http://minio:9000"}}


def test_release_without_ray_is_nothing() -> None:
    from imgclust.engines.ray import RayEngine

    engine = RayEngine()
    engine.release()
    engine.close()
    assert engine._local is None and LocalEngine().release() is None


@pytest.mark.slow
def test_a_local_instance_starts_and_stops_in_the_background() -> None:
    pytest.importorskip("ray")
    code = (
        "import ray; from imgclust.engines.ray import RayEngine\n"
        "with RayEngine() as e:\n"  # entered: nothing started yet
        "    assert e._local is None and not ray.is_initialized()\n"
        "    e.warm_up(); e.warm_up()\n"  # started (once) in the background, joined by connect()
        "    assert e._local is not None and e.connect() is ray and ray.is_initialized()\n"
        "    e.release(); assert e._local_only() and e._ray is None\n"
        "    assert e.connect() is ray and ray.is_initialized()\n"  # again after release
        "    logs = e.log_folder; assert logs.is_dir() and logs.parents[1].name.startswith("
        "'imgclust-ray-'), logs\n"
        "    e.release()\n"
        "print(ray.is_initialized(), e._local, logs.parents[1].exists())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["False", "None", "False"]
    # A command that failed keeps the folder (Ray's logs); a user's error said in words does
    # not. (One instance a process: Ray reads its token once.)
    for error, kept in [("EngineError", "True"), ("InputError", "False")]:
        code = (
            "import shutil; from imgclust.engines.ray import RayEngine\n"
            "from imgclust.engines import EngineError; from imgclust.exceptions import InputError\n"
            "e = RayEngine(); e.__enter__(); e.warm_up(); e.connect(); logs = e.log_folder\n"
            f"e.__exit__({error}, {error}('x'), None); print(logs.parents[1].exists())\n"
            "shutil.rmtree(logs.parents[1], ignore_errors=True)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.split() == [kept], error


@pytest.mark.parametrize("chosen", [None, "RATE_BASED"])
def test_the_embed_job_runs_under_v2_unless_the_user_chose(
    chosen: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray Data's default (rate-based) cluster autoscaler reserved half of what decoding
    could use on a fixed node; the embed job asks for V2, and leaves a user's choice be."""
    from imgclust.engines.ray import _AUTOSCALER, _cluster_autoscaler

    if chosen is None:
        monkeypatch.delenv(_AUTOSCALER, raising=False)
    else:
        monkeypatch.setenv(_AUTOSCALER, chosen)
    with _cluster_autoscaler():
        assert os.environ[_AUTOSCALER] == (chosen or "V2")
    assert os.environ.get(_AUTOSCALER) == chosen


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _default_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _listener(port: int, greeting: bytes | None) -> Any:
    """A TCP server on ``port`` that sends ``greeting`` to each client (``None``: says
    nothing) and holds the connection open: a service that is not Ray's."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", port))
    held: list[Any] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            if greeting is not None:
                conn.sendall(greeting)

    threading.Thread(target=serve, daemon=True).start()
    return server


@pytest.mark.parametrize("there", ["nothing", "a web server", "an ssh server", "a silent server",
                                   "no such host", ":6379", "127.0.0.1:99999",
                                   "http://127.0.0.1:1"])  # fmt: skip
def test_a_cluster_address_that_is_not_one_is_said_at_once(
    there: str, demo_photos: Path, tmp_path: Path
) -> None:
    """--ray-address where nothing listens, a web server answers (the dashboard's port is a
    common mix-up), another service greets or says nothing, or no host has the name: one
    line within seconds, where Ray's own client retried for minutes (over five, against a
    web server; without end, against the others) printing warnings."""
    pytest.importorskip("ray")
    import http.server
    import threading
    import time

    port = _free_port()
    server = None
    if there == "a web server":
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", port), http.server.SimpleHTTPRequestHandler
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
    other = None
    if there in ("an ssh server", "a silent server"):
        other = _listener(port, b"SSH-2.0-OpenSSH_9.2\r\n" if "ssh" in there else None)
    address = {"no such host": "nosuchhost.invalid:6379", "nothing": f"127.0.0.1:{port}",
               "a web server": f"127.0.0.1:{port}", "an ssh server": f"127.0.0.1:{port}",
               "a silent server": f"127.0.0.1:{port}"}.get(there, there)  # fmt: skip
    start = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "imgclust.cli", "run", str(demo_photos / "coffee"), "--out",
             str(tmp_path / "out"), "--engine", "ray", "--ray-address", address, "--quiet"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        if server is not None:
            server.shutdown()
        if other is not None:
            other.close()
    took = time.monotonic() - start
    said = " ".join(done.stdout.split() + done.stderr.split())
    assert done.returncode == 2 and "Traceback" not in said, said[-2000:]
    if there == "a web server":
        assert f"error: {address} answers as a web server" in said
    elif there in ("an ssh server", "a silent server"):
        assert f"error: {address} accepts connections but does not answer as a Ray" in said
        assert ("SSH-2.0" if "ssh" in there else "it said nothing") in said
    elif there in ("nothing", "no such host"):
        assert f"error: cannot reach the Ray cluster at {address}" in said
    else:  # (Ray printed a traceback of its own for some of these)
        assert f"error: --ray-address {address!r} is not HOST:PORT" in said
    assert "check --ray-address" in said and took < 60


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_a_stopped_ray_run_leaves_no_process_nor_folder_and_resumes(
    demo_photos: Path, tmp_path: Path, stop: str
) -> None:
    """Ctrl-C (the process group) or SIGTERM (the command alone: ``kill``, ``timeout``)
    mid-embed: one line, exit 130 or 143; the local instance's processes end and its folder
    goes (SIGTERM used to leave Ray's agents running and its folder, after a stack dump of
    Ray's own; Ctrl-C its folder); the next run embeds only what was not stored."""
    pytest.importorskip("ray")
    import signal
    import tempfile
    import time

    out = tmp_path / "out"
    before = set(Path(tempfile.gettempdir()).glob("imgclust-ray-*"))
    cmd = [sys.executable, "-m", "imgclust.cli", "run", str(demo_photos), "--out", str(out),
           "--engine", "ray", "--shard-size", "8"]  # fmt: skip
    # (as a terminal's foreground job: Ctrl-C's default action even under a background pytest)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)  # fmt: skip
    mine: set[Path] = set()
    deadline = time.monotonic() + 240
    while len(list(out.glob(".imgclust/store/*/*.done.json"))) < 2:
        mine |= set(Path(tempfile.gettempdir()).glob("imgclust-ray-*")) - before
        assert proc.poll() is None, "the run ended before it was stopped"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    mine |= set(Path(tempfile.gettempdir()).glob("imgclust-ray-*")) - before
    if stop == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    said = stdout + stderr
    assert proc.returncode == (130 if stop == "ctrl-c" else 143), said[-2000:]
    assert "what was finished is kept; run again to resume" in said
    assert "Traceback" not in said and "SIGTERM received" not in said, said[-2000:]
    assert len(mine) == 1, mine  # (the instance this run started)
    folder = str(next(iter(mine)))
    deadline = time.monotonic() + 30  # (Ray's agents notice their raylet is gone)
    while True:
        left = subprocess.run(["pgrep", "-f", folder], capture_output=True, text=True).stdout
        if not left.strip() or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left.strip(), subprocess.run(["ps", "-fp", ",".join(left.split())],
                                            capture_output=True, text=True).stdout  # fmt: skip
    assert not os.path.exists(folder)
    stored = len(list(out.glob(".imgclust/store/*/*.done.json")))
    again = subprocess.run([*cmd, "--quiet"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    info = json.loads((out / ".imgclust" / "run.json").read_text())
    assert info["n_cached"] >= stored > 0 and info["n_clustered"] == 96  # (first shards: few)
    assert info["n_embedded"] + info["n_cached"] == 96


@pytest.mark.slow
def test_reruns_with_nothing_to_embed_never_start_ray(demo_photos: Path, tmp_path: Path) -> None:
    """A run whose photos are all stored never imports Ray (a rerun took ~6 s for Ray's start
    and stop); one with a new photo starts it after the scan and embeds that photo alone.

    (Runs that began Ray's start and then had nothing to embed used to hang in most tries:
    ``ray.init`` still forking beside the map's linear algebra. The engine waits for such a
    start to end first; reruns are several tries of that path, should one be taken.)"""
    pytest.importorskip("ray")
    photos = tmp_path / "photos"
    shutil.copytree(demo_photos / "coffee", photos)
    out, cache = tmp_path / "out", tmp_path / "cache"
    cmd = [sys.executable, "-m", "imgclust.cli", "run", str(photos), "--out", str(out), "--cache",
           str(cache), "--engine", "ray", "--quiet"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "8 embedded now" in done.stderr  # (the summary: on stderr)
    rerun = (
        "import sys; from imgclust import cluster_folder; "
        f"r = cluster_folder([{str(photos)!r}], out={str(out)!r}, cache_dir={str(cache)!r}, "
        "engine='ray'); "
        "print(len(r.paths), sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    for attempt in range(3):
        try:
            done = subprocess.run(
                [sys.executable, "-c", rerun], capture_output=True, text=True, timeout=180
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"rerun {attempt + 1} hung (more than 180 s)")
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.split() == ["8", "[]"], done.stdout
    shutil.copy(next(photos.glob("*.jpg")), photos / "new.jpg")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stderr
    assert "1 embedded now, 8 from the store" in said and "ray engine: 1 photo in" in said


@pytest.mark.parametrize("counts", [[1], [2], [1, 1], [1_000, 1]])
def test_the_per_node_summary_counts_in_words(counts: list[int]) -> None:
    """``1 photo``, ``2 photos``, ``1,000 photos``: per node and in all."""
    from imgclust.engines import EmbedReport, NodeStats

    report = EmbedReport(seconds=2.0)
    for i, n in enumerate(counts):
        report.nodes[f"n{i}"] = NodeStats(f"n{i}", n_embedded=n)
    text = report.node_summary()
    total = sum(counts)
    assert text.startswith(f"ray engine: {total:,} photo{'' if total == 1 else 's'} in 2.0 s")
    for i, n in enumerate(counts):
        assert f"node n{i}: {n:,} photo{'' if n == 1 else 's'}," in text


def test_the_local_instances_folder_goes_even_while_a_process_still_writes_into_it(
    tmp_path: Path,
) -> None:
    """A Ray process still exiting after ``ray.shutdown()`` may write into the instance's
    folder while it is removed (a lone ``rmtree`` then fails on a folder no longer empty):
    the removal tries again until it is gone."""
    import contextlib
    import threading
    import time

    from imgclust.engines.ray import _remove_tree

    folder = tmp_path / "imgclust-ray-x"
    logs = folder / "session" / "logs"
    logs.mkdir(parents=True)
    for n in range(2000):
        (logs / f"old-{n}.out").write_text("x")
    started, stop = threading.Event(), time.monotonic() + 1.0

    def late_writer() -> None:  # into its log folder while that is there, as a process does
        n = 0
        while time.monotonic() < stop:
            with contextlib.suppress(OSError):
                (logs / f"worker-{n}.out").write_text("x")
            n += 1
            started.set()

    writer = threading.Thread(target=late_writer)
    writer.start()
    started.wait()
    _remove_tree(folder, patience=10.0)
    gone = not folder.exists()
    writer.join()
    assert gone and not folder.exists()


@pytest.mark.parametrize("n_good", [0, 1, 2, 5])
def test_a_decode_task_gives_the_same_shard_with_any_number_of_processes(
    demo_photos: Path, tmp_path: Path, n_good: int
) -> None:
    """A shard's pixels, sizes and reasons are the same decoded in the task itself, or in 1,
    2 or 3 pool processes beside it (the Ray engine's decode tasks use 2 on a CPU node), with
    broken and vanished files among good ones, and with none at all."""
    import json

    import numpy as np

    from imgclust.embed import Embedder
    from imgclust.engines.ray import DecodeShard

    good = sorted(p for p in demo_photos.rglob("*") if p.suffix.lower() in {".jpg", ".png"})
    assert len(good) >= n_good
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    paths = [str(p) for p in good[:n_good]] + [str(broken), str(tmp_path / "gone.jpg")]
    records = json.dumps([[p, 1, 1] for p in paths])
    batch = {"shard": np.array([7]), "records": np.array([records])}
    shards = []
    for workers, processes in [(0, 1), (1, 1), (1, 2), (1, 3)]:
        embedder = Embedder("efficientnet_lite0", device="cpu", workers=workers)
        shards.append(DecodeShard(embedder, processes=processes)(batch))
    first = shards[0]
    decoded = json.loads(str(first["decoded"][0]))
    assert [reason is None for _, _, reason, _ in decoded] == [True] * n_good + [False, False]
    assert first["pixels"].shape[1] == n_good
    for shard in shards[1:]:
        assert json.loads(str(shard["decoded"][0])) == decoded
        assert np.array_equal(shard["pixels"], first["pixels"])
        assert int(shard["shard"][0]) == 7
