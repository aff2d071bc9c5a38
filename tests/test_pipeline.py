"""End to end on real photos: every file accounted for, clusters right, re-runs cheap."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sklearn.metrics import normalized_mutual_info_score

from imgclust import InputError, OutputError, RunConfig, StoreConfig, cluster_folder
from imgclust.config import ClusterConfig, EmbedConfig
from imgclust.demo import DEMO_SOURCES
from imgclust.embed import model_for
from imgclust.pipeline import run
from imgclust.store import FeatureStore


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def first_run(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("out")
    return cluster_folder([demo_photos], out=out, k=len(DEMO_SOURCES), workers=1)


def test_every_file_is_clustered_or_rejected(first_run, demo_photos: Path) -> None:  # type: ignore[no-untyped-def]
    out = first_run.out_dir
    assigned = _read(out / "assignments.csv")
    rejected = _read(out / "rejected.csv")
    images = sorted(str(p) for p in demo_photos.rglob("*.jpg"))
    assert sorted(r["path"] for r in assigned + rejected) == images
    assert [r["path"] for r in rejected] == [str(demo_photos / "broken.jpg")]
    assert rejected[0]["reason"]
    assert len({r["cluster"] for r in assigned}) == len(DEMO_SOURCES) == first_run.k


def test_clusters_agree_with_the_scenes(first_run) -> None:  # type: ignore[no-untyped-def]
    truth = [Path(p).parent.name for p in first_run.paths]
    assert normalized_mutual_info_score(truth, first_run.labels) > 0.9


def test_rank_zero_is_nearest_the_centroid(first_run) -> None:  # type: ignore[no-untyped-def]
    rows = _read(first_run.out_dir / "assignments.csv")
    by_cluster: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        by_cluster.setdefault(r["cluster"], []).append((int(r["rank"]), float(r["distance"])))
    for members in by_cluster.values():
        members.sort()
        assert [rank for rank, _ in members] == list(range(len(members)))
        dists = [d for _, d in members]
        assert dists == sorted(dists)
    clusters = _read(first_run.out_dir / "clusters.csv")
    assert all(c["name"] and Path(c["medoid"]).is_absolute() for c in clusters)
    assert (first_run.out_dir / "index.html").exists()


@pytest.mark.slow
def test_second_run_embeds_nothing_and_new_files_alone(first_run, demo_photos: Path) -> None:  # type: ignore[no-untyped-def]
    photos = demo_photos.parent / "grown"
    shutil.copytree(demo_photos, photos)
    out = first_run.out_dir.parent / "out-grown"
    cfg = RunConfig(
        inputs=(photos,),
        out=out,
        cluster=ClusterConfig(k=len(DEMO_SOURCES)),
        store=StoreConfig(cache_dir=first_run.out_dir / ".imgclust" / "store"),
    )
    # The copies have new paths: everything is new to the store.
    assert run(cfg).n_embedded == first_run.n_embedded
    again = run(cfg)
    assert again.n_embedded == 0 and again.n_cached == len(again.paths)
    shutil.copy(photos / "coffee" / "coffee-0.jpg", photos / "coffee" / "new.jpg")
    changed = photos / "rocket" / "rocket-1.jpg"
    os.utime(changed, ns=(time.time_ns(), time.time_ns()))
    assert run(cfg).n_embedded == 2


def test_out_folder_that_is_not_ours_is_refused(demo_photos: Path, tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not empty"):
        cluster_folder([demo_photos], out=tmp_path, k=3)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(InputError, match="no image"):
        cluster_folder([tmp_path / "in"], out=tmp_path / "out", k=3)


@pytest.mark.slow
def test_killed_run_resumes(demo_photos: Path, tmp_path: Path) -> None:
    """kill -9 during embedding, then run again: stored shards are not embedded again."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "imgclust.cli", "run", str(demo_photos), "--out", str(out),
           "--k", "12", "--workers", "0", "--batch-size", "8", "--shard-size", "16",
           "--quiet"]  # fmt: skip
    env = dict(os.environ)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # The default model in the default precision (int8 where OpenVINO and NNCF are here).
    store = FeatureStore(out / ".imgclust" / "store", model_for(EmbedConfig())).dir
    deadline = time.time() + 120
    while time.time() < deadline and len(list(store.glob("*.done.json"))) < 2:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.005)  # int8 embeds a 16-photo shard in ~0.1 s
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(list(store.glob("*.done.json")))
    assert 2 <= n_done < 7, "the run should have been killed part-way"
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    assert result.returncode == 0
    rows = _read(out / "assignments.csv")
    assert len(rows) == 12 * 8
    resumed = _read_json(out / ".imgclust" / "run.json")
    assert 0 < resumed["n_embedded"] <= 96 - 16 * 2 + 8
    assert resumed["n_cached"] >= 16 * 2 - 8
    assert resumed["model"] == model_for(EmbedConfig())  # the precision "auto" resolved to


def _read_json(path: Path) -> dict:  # type: ignore[type-arg]
    import json

    return json.loads(path.read_text())  # type: ignore[no-any-return]
