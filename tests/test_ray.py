"""The Ray engine on a real multi-node Ray cluster on this machine (three raylets).

The cluster is started and stopped by the module's fixture (``ray.cluster_utils.Cluster``);
each run is the real CLI in a subprocess, a driver joining it with ``--ray-address``. On
2 cores the module takes about a minute. Skipped, saying why, where Ray is not installed
(``pip install 'imgclust[ray]'``; the ``dev`` extra brings it).
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageOps

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'imgclust[ray]'")
from ray.cluster_utils import Cluster  # noqa: E402

SHARD = 8  # photos per shard: 24 shards for the three actors to share
K, SEED = 8, 3
DUPS = 0.05  # near-duplicates' cosine distance in the passes' tests
NODE_RE = re.compile(r"node ([^ :;]+)/([0-9a-f]{6}): ([\d,]+) photos?\b")


def _cli(photos: Path | str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "imgclust.cli", "run", str(photos), "--out", str(out),
            "--k", str(K), "--algorithm", "kmeans", "--seed", str(SEED),
            "--shard-size", str(SHARD), "--quiet", *extra]  # fmt: skip


def _run(cmd: list[str], *, unset: tuple[str, ...] = (), **env: str) -> Any:
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**environ, **env})
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _info(out: Path) -> dict[str, Any]:
    info: dict[str, Any] = json.loads((out / ".imgclust" / "run.json").read_text())
    return info


def _per_node(out: Path) -> dict[str, int]:
    """Node id (first 6 hex digits) → photos its actor embedded, from the run's summary."""
    notes = [n for n in _info(out)["notes"] if n.startswith("ray engine:")]
    assert len(notes) == 1, _info(out)["notes"]
    found = {m[1]: int(m[2].replace(",", "")) for m in NODE_RE.findall(notes[0])}
    # Every node the note names is parsed ("1 photo" too: a node may get one shard only).
    assert f" on {len(found)} node" in notes[0], notes[0]
    return found


def _accounted(out: Path, photos: Path) -> None:
    """Every image file under ``photos`` is in exactly one of the two CSVs."""
    clustered = [r["path"] for r in _rows(out / "assignments.csv")]
    rejected = [r["path"] for r in _rows(out / "rejected.csv")]
    files = sorted(str(p) for p in photos.rglob("*.jpg"))
    assert sorted(clustered + rejected) == files
    assert not set(clustered) & set(rejected)


@pytest.fixture(scope="module")
def photos(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~200 photos: the demo's 96 (and its corrupt file) twice, in two folders."""
    folder = tmp_path_factory.mktemp("ray") / "photos"
    for part in ("a", "b"):
        shutil.copytree(demo_photos, folder / part, ignore=shutil.ignore_patterns("*.txt"))
    return folder


@pytest.fixture(scope="module")
def cluster() -> Any:
    """A head and two worker raylets, two CPUs each; stopped after the module. Its token
    is in the environment (which the CLI runs inherit), not in ``~/.ray``."""
    token = {
        "RAY_AUTH_TOKEN": os.urandom(32).hex(),
        # The nodes' own credentials for test_s3_inputs_on_the_cluster's S3 server (a job
        # brings where the storage is, never credentials).
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    saved = {k: os.environ.get(k) for k in token}
    os.environ.update(token)
    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "include_dashboard": False,
            # A killed node is noticed in ~2 s rather than Ray's default ~15 s.
            "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 2},
        },
        shutdown_at_exit=True,
    )
    workers = [c.add_node(num_cpus=2) for _ in range(2)]
    c.wait_for_nodes()
    c.workers = workers  # type: ignore[attr-defined]
    yield c
    c.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def ray_out(cluster: Any, photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ray-out") / "out"
    _run(_cli(photos, out, "--engine", "ray", "--ray-address", cluster.address))
    return out


def test_every_node_embeds_and_every_file_is_accounted_for(
    cluster: Any, ray_out: Path, photos: Path
) -> None:
    per_node = _per_node(ray_out)
    nodes = {n.node_id[:6] for n in cluster.list_all_nodes()}
    assert set(per_node) == nodes and all(n > 0 for n in per_node.values()), per_node
    info = _info(ray_out)
    assert sum(per_node.values()) == info["n_embedded"] == info["n_clustered"] == 192
    assert info["config"]["embed"]["engine"] == "ray"
    _accounted(ray_out, photos)


def test_a_local_run_on_the_ray_store_gives_the_same_assignments(
    ray_out: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "local"
    store = ray_out / ".imgclust" / "store"
    _run(_cli(photos, out, "--cache", str(store)))  # the default engine: local
    info = _info(out)
    assert info["n_embedded"] == 0 and info["n_cached"] == 192  # the store, as it is
    assert not any(n.startswith("ray engine") for n in info["notes"])

    # Every column but the map's x/y: the map is laid out around the centroids, which the
    # distributed passes average in another order (the same clusters, ranks, distances).
    def unmapped(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k not in ("x", "y")} for r in rows]

    assert unmapped(_rows(out / "assignments.csv")) == unmapped(_rows(ray_out / "assignments.csv"))
    assert _rows(out / "rejected.csv") == _rows(ray_out / "rejected.csv")
    # The clusters' names and classes (the Ray run's from the passes' sums): the same.
    named = ("cluster", "size", "name", "medoid", "top_classes", "distinctive_classes")

    def names(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        return [{k: r[k] for k in named} for r in rows]

    assert names(_rows(out / "clusters.csv")) == names(_rows(ray_out / "clusters.csv"))


def test_a_distributed_run_names_its_clusters_from_the_passes(
    cluster: Any, ray_out: Path, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a cluster of nodes the k-means passes gather the names' class statistics, each
    image's top classes and its date where the shards are, and find the medoids and the
    near-duplicates a cluster at a time: the driver reads no logits (at 10^8 photos,
    200 GB), and the report says what the Ray run's does."""
    from imgclust import cluster_folder
    from imgclust.store import FeatureStore

    read: list[str] = []
    real = FeatureStore.iter_rows

    def iter_rows(self: FeatureStore, paths: Any, locations: Any, name: str, **kw: Any) -> Any:
        read.append(name)
        return real(self, paths, locations, name, **kw)

    monkeypatch.setattr(FeatureStore, "iter_rows", iter_rows)
    # Nor does it look for the medoids and near-duplicates: the ranking pass found them.
    import imgclust.describe.summary
    import imgclust.pipeline

    def not_here(*args: Any, **kw: Any) -> Any:
        raise AssertionError("the driver looked through the feature matrix")

    monkeypatch.setattr(imgclust.pipeline, "near_duplicates", not_here)
    monkeypatch.setattr(imgclust.describe.summary, "medoid", not_here)
    # Nor does it load the feature matrix: the groups and the map read their rows from the
    # shards (StoredRows), and no similarity index is written (similar/assign build it).
    monkeypatch.setattr(imgclust.pipeline, "_load_matrix", not_here)
    ray.init(address=cluster.address)
    try:
        out = tmp_path / "again"
        result = cluster_folder(
            [photos], out=out, k=K, algorithm="kmeans", seed=SEED, engine="ray",
            cache_dir=str(ray_out / ".imgclust" / "store"),
        )  # fmt: skip
    finally:
        ray.shutdown()
    assert result.n_embedded == 0 and "logits" not in read
    for name in ("assignments.csv", "clusters.csv"):
        assert _rows(out / name) == _rows(ray_out / name), name
    assert not (out / ".imgclust" / "index.faiss").exists()


def test_s3_inputs_on_the_cluster(cluster: Any, demo_photos: Path, tmp_path: Path) -> None:
    """Photos in an S3-compatible server (moto's, on 127.0.0.1): the cluster's workers read
    them by URI, the endpoint brought by the job (AWS_ENDPOINT_URL_S3 of the driver)."""
    # moto keeps every server's buckets in one store per process: a bucket of our own
    bucket = "ray-cluster-photos"
    moto_server = pytest.importorskip("moto.server", reason="moto[server] (dev extra)")
    boto3 = pytest.importorskip("boto3")
    logging.getLogger("werkzeug").disabled = True  # its request log
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=bucket)
        keys = [f"{p.parent.name}/{p.name}" for s in ("coffee", "rocket")
                for p in sorted((demo_photos / s).glob("*.jpg"))] + ["broken.jpg"]  # fmt: skip
        for key in keys:
            client.put_object(
                Bucket=bucket, Key=f"set/{key}", Body=(demo_photos / key).read_bytes()
            )
        out = tmp_path / "out"
        env = {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
        _run(_cli(f"s3://{bucket}/set", out, "--engine", "ray", "--ray-address", cluster.address),
             **env)  # fmt: skip
    finally:
        server.stop()
    uris = [f"s3://{bucket}/set/{k}" for k in keys]
    clustered = sorted(r["path"] for r in _rows(out / "assignments.csv"))
    assert clustered == sorted(uris[:-1])
    assert [r["path"] for r in _rows(out / "rejected.csv")] == [uris[-1]]
    assert sum(_per_node(out).values()) == 16


def test_the_ray_store_serves_assign_similar_and_parquet_readers(
    ray_out: Path, photos: Path, tmp_path: Path
) -> None:
    import pyarrow.dataset as ds

    from imgclust.assign import assign_folder
    from imgclust.similar import find_similar
    from imgclust.store import FeatureStore

    # Any Parquet reader: one row per embedded photo, the embedding a fixed-size float16 list.
    (model_dir,) = (ray_out / ".imgclust" / "store").iterdir()
    with FeatureStore(model_dir.parent, model_dir.name) as store:
        files = [str(p) for p in store.files()]
    table = ds.dataset(files, format="parquet").to_table()
    paths = table.column("path").to_pylist()
    assert sorted(paths) == sorted(r["path"] for r in _rows(ray_out / "assignments.csv"))
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    assert emb.shape == (192, 1280) and emb.dtype == np.float16
    frame = table.select(["path", "top_classes"]).to_pandas()
    frame["scene"] = frame["path"].str.split("/").str[-2]
    frame["best"] = frame["top_classes"].map(lambda t: int(t[0]))
    coffee = frame[frame["scene"] == "coffee"]["best"]
    assert len(coffee) == 16 and coffee.value_counts().iloc[0] >= 12  # they agree: a cup

    out = tmp_path / "out"
    shutil.copytree(ray_out, out)
    saved = _rows(out / "assignments.csv")
    query = next(r["path"] for r in saved if "/coffee/" in r["path"])
    similar = find_similar(Path(query), out, n=3, device="cpu")
    assert all("/coffee/" in nb.path for nb in similar.neighbours)

    new = tmp_path / "new"
    new.mkdir()
    ImageOps.mirror(Image.open(query)).save(new / "mirrored.jpg", quality=85)
    assigned = assign_folder([new], out, workers=0)
    coffee = {r["cluster"] for r in saved if "/coffee/" in r["path"]}
    assert assigned.paths == [str(new / "mirrored.jpg")]
    assert {str(c) for c in assigned.labels} <= coffee


def _blobs(root: Path, n: int, *, dim: int = 16, n_classes: int = 10) -> list[str]:
    """A store of ``n`` rows in three well-separated blobs (class ``c`` strongest in blob
    ``c``), 250 rows a shard; returns the paths."""
    from imgclust.embed import FeatureBlock
    from imgclust.store import FeatureStore

    rng = np.random.default_rng(0)
    paths = [f"/synthetic/{i:05d}.jpg" for i in range(n)]
    blob = rng.integers(0, 3, n)
    centres = np.eye(3, dim) * 4
    emb = centres[blob] + rng.normal(0, 0.3, (n, dim))
    copies = np.arange(50, n, 100)  # near-duplicates: every 100th row a copy of the one before
    blob[copies] = blob[copies - 1]
    emb[copies] = emb[copies - 1] + rng.normal(0, 1e-3, (len(copies), dim))
    emb = emb.astype(np.float16)
    logits = rng.normal(0, 1, (n, n_classes))
    logits[np.arange(n), blob] += 6
    with FeatureStore(root, "m") as store:
        for start in range(0, n, 250):
            rows = slice(start, start + 250)
            store.write(
                FeatureBlock(
                    paths=paths[rows], sizes=[1] * len(paths[rows]), mtimes=[1] * len(paths[rows]),
                    logits=[logits[rows].astype(np.float16)], embeddings=[emb[rows]],
                    taken=[] if start == 0 else  # (the first shard's: not read, null)
                    [f"2021-01-0{i % 9 + 1} 10:00:00" if i % 3 else "" for i in
                     range(start, start + len(paths[rows]))],
                ),
                n_classes, dim,
            )  # fmt: skip
    return paths


def test_distributed_kmeans_on_a_sample_matches_the_local_clustering(
    cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgclust.cluster import KMeans
    from imgclust.cluster.distributed import (
        FeatureRows,
        fit_kmeans,
        read_assignments,
        sample_fraction,
    )  # fmt: skip
    from imgclust.steps import fit_clusters
    from imgclust.store import FeatureStore

    n = 3000
    paths = _blobs(tmp_path / "store", n)
    assert sample_fraction(n, 3, 16) < 1  # trained on a sample, not on every row
    with FeatureStore(tmp_path / "store", "m") as store:
        found = store.locate(paths)
        matrix = store.load(paths, found, arrays=("embedding",))["embedding"]
    rows = FeatureRows(tmp_path / "store", "m", "embedding", found)
    peaks: dict[int, int] = {}
    ray.init(address=cluster.address)
    try:
        result = fit_kmeans(
            ray, rows.source(paths), k=3, seed=0, work_dir=tmp_path / "work",
            on_peak=lambda pid, peak: peaks.__setitem__(pid, max(peak, peaks.get(pid, 0))),
            duplicates=DUPS,
        )  # fmt: skip
        got = read_assignments(result, paths)
        # One cluster of all 3,000: its medoid measured against a random 2,048 of them.
        whole = fit_kmeans(
            ray, rows.source(paths), k=1, seed=5, work_dir=tmp_path / "whole", duplicates=0.0
        )
        got_whole = read_assignments(whole, paths)
        # Features the cluster's shuffle aggregators have no room for stay out of it: the
        # medoids and near-duplicates are then left to the driver (the same clustering).
        import imgclust.cluster.distributed

        monkeypatch.setattr(imgclust.cluster.distributed, "AGGREGATOR_BYTES", 1)
        lean = fit_kmeans(
            ray, rows.source(paths), k=3, seed=0, work_dir=tmp_path / "lean", duplicates=DUPS
        )
        got_lean = read_assignments(lean, paths)
    finally:
        ray.shutdown()
    from imgclust.cluster.features import row_features

    local = fit_clusters(
        row_features("embedding", matrix).astype(np.float16), paths, KMeans(3), algorithm="kmeans",
        requested_k=3,
    )  # fmt: skip
    assert result.n_sample < n and result.n_rows == n and len(peaks) >= 2  # several workers
    np.testing.assert_array_equal(got["labels"], local.labels)
    assert list(result.sizes) == np.bincount(local.labels).tolist()
    # Centroids of a half sample: the distances agree to its noise (0.3 a dimension / ~22).
    np.testing.assert_allclose(got["distances"], local.distances, atol=0.05)
    for c in range(3):  # ranks: 0.. by distance, ties by path, as fit_clusters numbers them
        members = np.flatnonzero(got["labels"] == c)
        order = members[np.lexsort((members, got["distances"][members]))]
        assert got["ranks"][order].tolist() == list(range(len(members)))
    assert np.isfinite(result.fences).all()
    np.testing.assert_array_equal(got["outliers"], got["distances"] > result.fences[got["labels"]])
    np.testing.assert_allclose(result.cluster_scores.sum(axis=1), 1.0, rtol=1e-5)
    blob_of = {int(np.argmax(result.cluster_scores[c])) for c in range(3)}
    assert blob_of == {0, 1, 2}  # each cluster named by its own blob's class
    # What the names and top classes need, gathered by the passes where the shards are, is
    # what the driver's own pass over every logit finds (so a distributed run skips it).
    from imgclust.describe import class_statistics

    taken = np.full(n, None, dtype=object)
    own = class_statistics(
        FeatureStore(tmp_path / "store", "m").iter_rows(
            paths, found, "logits", strings={"taken": taken}
        ),
        got["labels"],
    )
    np.testing.assert_array_equal(got["top_ids"], own.top_ids)
    np.testing.assert_array_equal(got["top_scores"], own.top_scores)
    assert got["taken"].tolist() == taken.tolist() and {"", None} < set(taken)
    for c in range(3):
        np.testing.assert_allclose(result.cluster_scores[c], own.cluster_scores[c], rtol=1e-12)
    # Medoids and near-duplicates, found a cluster at a time by the ranking pass: what the
    # driver finds in the whole matrix with the same labels and distances.
    from imgclust.describe import medoid
    from imgclust.neardup import near_duplicates

    clustered = row_features("embedding", matrix).astype(np.float16)
    want = near_duplicates(clustered, got["labels"], got["distances"], threshold=DUPS)
    np.testing.assert_array_equal(got["duplicate_of"], want)
    assert (want >= 0).sum() >= 29  # the planted copies (and nothing else) are grouped
    for fit, seed, assigned in ((result, 0, got), (whole, 5, got_whole)):
        for c in range(len(fit.sizes)):
            members = np.flatnonzero(assigned["labels"] == c)
            members = members[np.lexsort((members, assigned["distances"][members]))]
            assert assigned["medoids"][c] == medoid(clustered, members, seed), (len(members), c)
    assert whole.sizes.tolist() == [n] and (got_whole["duplicate_of"] == -1).all()  # (0: none)
    assert lean.medoids is None and not {"medoids", "duplicate_of"} & set(got_lean)
    np.testing.assert_array_equal(got_lean["labels"], got["labels"])
    np.testing.assert_array_equal(got_lean["ranks"], got["ranks"])
    lean_files = sorted((tmp_path / "lean").glob("assign-*.parquet"))
    assert lean_files and all("features" not in pq.read_schema(f).names for f in lean_files)


@pytest.mark.parametrize("n", [0, 1, 2, 3, SHARD + 1])
def test_small_folders_on_the_cluster_end_as_a_local_run(
    cluster: Any, demo_photos: Path, tmp_path: Path, n: int
) -> None:
    """0, 1, 2, 3 and one past a shard's photos (and a corrupt file), ``--k`` above n: the
    same exit, message, clusters and rejections as the local engine (k lowered the same way
    in the distributed passes)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted(demo_photos.rglob("*.jpg"))[:n]:
        shutil.copy(path, folder / f"{path.parent.name}-{path.name}")
    dated = sorted(folder.glob("*.jpg"))[:1]
    for path in dated:  # a capture date, which the decode tasks record in the store
        with Image.open(path) as img:
            exif = Image.Exif()
            exif.get_ifd(0x8769)[36867] = "2021:07:04 09:30:00"
            img.save(path, exif=exif.tobytes())
    if n:
        shutil.copy(demo_photos / "broken.jpg", folder / "broken.jpg")
    ends = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        extra = ("--engine", "ray", "--ray-address", cluster.address) if engine == "ray" else ()
        done = subprocess.run(
            _cli(folder, out, *extra), capture_output=True, text=True, timeout=300
        )
        assert "Traceback" not in done.stderr + done.stdout, done.stderr[-3000:]
        ends[engine] = (done.returncode, done.stderr.splitlines()[-1:] if done.returncode else [])
    assert ends["ray"] == ends["local"]
    if ends["local"][0]:
        return
    assert _info(tmp_path / "ray")["n_clustered"] == n
    _accounted(tmp_path / "ray", folder)
    for name in ("assignments.csv", "rejected.csv"):
        got = [
            {k: v for k, v in r.items() if k not in ("x", "y")}
            for r in _rows(tmp_path / "ray" / name)
        ]
        want = [
            {k: v for k, v in r.items() if k not in ("x", "y")}
            for r in _rows(tmp_path / "local" / name)
        ]
        assert got == want, name
    taken = {r["path"]: r["taken"] for r in _rows(tmp_path / "ray" / "assignments.csv")}
    assert taken[str(dated[0])] == "2021-07-04 09:30:00"
    stored = pq.read_table(
        glob.glob(str(tmp_path / "ray" / ".imgclust" / "store" / "*" / "*.parquet")),
        columns=["path", "taken"],
    ).to_pydict()  # what the decode tasks recorded: no run need read the files' EXIF again
    assert dict(zip(stored["path"], stored["taken"], strict=True)) == taken


def test_a_node_killed_mid_embed_costs_no_photo(cluster: Any, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        _cli(photos, out, "--engine", "ray", "--ray-address", cluster.address),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    markers = str(out / ".imgclust" / "store" / "*" / "*.done.json")
    deadline = time.monotonic() + 120
    while len(glob.glob(markers)) < 2:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no shard was stored in two minutes"
        time.sleep(0.02)
    victim = cluster.workers[0]
    cluster.remove_node(victim, allow_graceful=False)  # kill -9 its raylet and workers
    assert len(glob.glob(markers)) < 192 // SHARD, "killed too late: the job had finished"
    _, err = proc.communicate(timeout=300)
    if proc.returncode != 0:  # Ray gave up on the job: a re-run resumes from the shards
        _run(_cli(photos, out, "--engine", "ray", "--ray-address", cluster.address))
    info = _info(out)
    assert info["n_clustered"] == 192 and info["n_rejected"] == 2, err[-3000:]
    _accounted(out, photos)
    # Each photo embedded once: every committed shard's rows together are the 192 photos.
    (model_dir,) = (out / ".imgclust" / "store").iterdir()
    n_rows = sum(json.loads(p.read_text())["n"] for p in model_dir.glob("*.done.json"))
    assert n_rows == 192


def test_a_local_ray_instance_writes_nothing_into_the_home_folder(
    demo_photos: Path, tmp_path: Path
) -> None:
    from imgclust.models.runtime import cache_root

    photos = tmp_path / "photos"
    shutil.copytree(demo_photos / "coffee", photos / "coffee")
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "imgclust.cli", "run", str(photos), "--out", str(out),
           "--k", "2", "--engine", "ray", "--quiet"]  # fmt: skip
    # Without the cluster fixture's token: the engine gives its local instance one.
    done = _run(cmd, unset=("RAY_AUTH_TOKEN",), HOME=str(home), IMGCLUST_CACHE=str(cache_root()))
    assert _info(out)["n_clustered"] == 8 and "ray engine: 8 photos" in done.stderr
    # Ray's core worker logs an ERROR on every Ray Data job with actors (ray#53727, no
    # failure): to its log file, not between our lines.
    assert "core_worker.cc" not in done.stderr and "53727" not in done.stderr, done.stderr
    # (~/intel is OpenVINO's telemetry, which every run on it writes, the local engine's too.)
    assert [p for p in home.iterdir() if p.name != "intel"] == []
