"""Inputs as URIs (imgclust.uri): a real S3-compatible server (moto's, on 127.0.0.1, started by
the fixture) read through pyarrow.fs, the same code path as local folders after the scan."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imgclust import cluster_folder, uri
from imgclust.cli import app
from imgclust.config import RunConfig
from imgclust.decode import decode, thumb_relpath
from imgclust.exceptions import ConfigError, InputError, OutputError
from imgclust.models.spec import Preprocess
from imgclust.scan import check_roots, scan, stat_record

server_mod = pytest.importorskip("moto.server", reason="moto[server] is not installed (dev extra)")
boto3 = pytest.importorskip("boto3")

BUCKET = "photos"
K = 4
PRE = Preprocess(32, 0.875, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@dataclass
class S3:
    """The running server: its endpoint and a boto3 client to fill it."""

    endpoint: str
    client: Any

    def put_folder(self, folder: Path, prefix: str) -> None:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                key = f"{prefix}/{path.relative_to(folder).as_posix()}"
                self.client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())


def _s3_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookups offline
    }


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    """moto's S3 server on a free loopback port, the environment pointing pyarrow at it (as a
    user points it at MinIO), and a bucket; all undone after the module."""
    # Its request log goes through werkzeug's logger, which the CLI's logging would catch.
    logging.getLogger("werkzeug").disabled = True
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    patch = pytest.MonkeyPatch()
    for key, value in _s3_env(endpoint).items():
        patch.setenv(key, value)
    uri.filesystem.cache_clear()
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    try:
        yield S3(endpoint, client)
    finally:
        server.stop()
        patch.undo()
        uri.filesystem.cache_clear()


@pytest.fixture(scope="module")
def photos(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four of the demo's scenes (32 photos), its corrupt file and its README."""
    folder = tmp_path_factory.mktemp("uri") / "photos"
    for scene in ("coffee", "astronaut", "chelsea", "rocket"):
        shutil.copytree(demo_photos / scene, folder / scene)
    shutil.copy(demo_photos / "broken.jpg", folder / "broken.jpg")
    (folder / "README.txt").write_text("not a photo")
    return folder


def map_info(out: Path) -> list[str]:
    """The map's per-cluster scripts: ``imgclustMapInfo(id, hover, originals);``."""
    return [p.read_text() for p in sorted(out.glob("map-*.js")) if p.stem[4:].isdigit()]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# -- parsing, without a server --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("s3://b/k", True), ("gs://b", True), ("file:///x", True), ("/tmp/a://b", False),
     ("photos", False), ("C:\\x", False), ("3s://b", False), ("", False)],
)  # fmt: skip
def test_is_uri(text: str, expected: bool) -> None:
    assert uri.is_uri(text) is expected
    assert uri.is_uri(Path("s3://b")) is False  # a Path has already folded the slashes


def test_locate_splits_and_refuses_what_it_cannot_key() -> None:
    assert uri.locate("s3://bucket/a/b.jpg") == uri.Location("s3", "bucket/a/b.jpg")
    assert uri.locate("gcs://bucket/a/") == uri.Location("gs", "bucket/a")
    assert uri.locate("s3://bucket/a").uri("bucket/a/x.jpg") == "s3://bucket/a/x.jpg"
    for bad, message in [
        ("hdfs://nn/photos", "unsupported URI scheme 'hdfs://'"),
        ("s3://", "name a bucket"),
        ("s3://b/x?endpoint_override=h:1", "options in a URI are not supported"),
        ("s3://b/p//0.jpg", "an empty name between two slashes"),  # (pyarrow: ValueError)
    ]:
        with pytest.raises(InputError, match=message):
            uri.locate(bad)


def test_file_uris_are_local_paths(photos: Path) -> None:
    as_uri = photos.as_uri()
    assert uri.local_path(as_uri) == str(photos)
    assert uri.local_path("file:///a%20b") == "/a b"
    assert uri.local_path("s3://b/k") is None
    with pytest.raises(InputError, match="a path on this machine"):
        uri.local_path("file://otherhost/x")
    assert RunConfig(inputs=(as_uri, "s3://b/p"), out="o").inputs == (photos, "s3://b/p")
    assert scan([as_uri]).records == scan([photos]).records
    with pytest.raises(ConfigError, match="--out must be a folder on this machine"):
        RunConfig(inputs=("p",), out="s3://b/out")


# -- against the server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def uploaded(s3: S3, photos: Path) -> str:
    s3.put_folder(photos, "set")
    return f"s3://{BUCKET}/set"


def test_scan_lists_objects_like_files(uploaded: str, photos: Path, s3: S3) -> None:
    local = scan([photos])
    remote = scan([uploaded])
    strip = len(uploaded) + 1
    assert [r.path[strip:] for r in remote.records] == [
        os.path.relpath(r.path, photos) for r in local.records
    ]
    assert [r.size for r in remote.records] == [r.size for r in local.records]
    assert all(r.mtime_ns > 0 for r in remote.records) and remote.n_ignored == 1
    one = remote.records[0]
    assert scan([one.path]).records == [one]  # a single object as a root
    assert stat_record(one.path) == one
    # a copied output folder inside the prefix: its thumbnails are not photos
    s3.client.put_object(Bucket=BUCKET, Key="set/old-out/.imgclust/run.json", Body=b"{}")
    s3.client.put_object(Bucket=BUCKET, Key="set/old-out/thumbs/t.jpg", Body=b"x")
    try:
        again = scan([uploaded])
        assert again.records == remote.records
        assert again.skipped == [f"{uploaded}/old-out"]
    finally:
        s3.client.delete_objects(
            Bucket=BUCKET,
            Delete={"Objects": [{"Key": "set/old-out/.imgclust/run.json"},
                                {"Key": "set/old-out/thumbs/t.jpg"}]},
        )  # fmt: skip


def test_missing_bucket_empty_prefix_and_missing_key(s3: S3) -> None:
    with pytest.raises(InputError, match="the bucket 'no-such-bucket' does not exist"):
        check_roots(["s3://no-such-bucket/photos"])
    with pytest.raises(InputError, match="the bucket 'no-such-bucket' does not exist"):
        check_roots(["s3://no-such-bucket"])
    with pytest.raises(InputError, match="no object there, and none below it"):
        check_roots([f"s3://{BUCKET}/empty-prefix"])
    with pytest.raises(FileNotFoundError):
        stat_record(f"s3://{BUCKET}/set/gone.jpg")
    got = decode(f"s3://{BUCKET}/set/gone.jpg", PRE)
    assert got.array is None and got.reason == "object disappeared before it could be read"


def test_a_corrupt_and_an_empty_object_are_rejected_with_reasons(s3: S3, tmp_path: Path) -> None:
    for name, body in [("cut.jpg", b"\xff\xd8\xff\xe0 not a jpeg"), ("text.jpg", b"hello")]:
        s3.client.put_object(Bucket=BUCKET, Key=f"odd/{name}", Body=body)
        (tmp_path / name).write_bytes(body)
        got = decode(f"s3://{BUCKET}/odd/{name}", PRE)
        assert got.array is None and got.reason == decode(str(tmp_path / name), PRE).reason
    s3.client.put_object(Bucket=BUCKET, Key="odd/empty.png", Body=b"")
    empty = decode(f"s3://{BUCKET}/odd/empty.png", PRE)
    assert empty.array is None and empty.reason == "empty file (0 bytes)"


def test_unreachable_storage_is_one_clear_line(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{closed}")
    uri.filesystem.cache_clear()
    try:
        with pytest.raises(InputError, match="check the network and the endpoint") as info:
            check_roots([f"s3://{BUCKET}/set"])
        assert "\n" not in str(info.value)
    finally:
        uri.filesystem.cache_clear()


def test_failed_requests_name_what_to_check() -> None:
    denied = OSError("When getting information for key 'a' in bucket 'b': AWS Error "
                     "ACCESS_DENIED during HeadObject operation: (Request ID: X1)")  # fmt: skip
    assert "check the credentials" in uri.hint(denied)
    assert uri.short_error(denied).endswith("HeadObject operation:")  # no request id
    gcs = OSError("google::cloud::Status(UNAVAILABLE: Could not create a OAuth2 access token")
    assert "check the credentials" in uri.hint(gcs)
    forbidden = OSError("AWS Error UNKNOWN (HTTP status 403) during HeadObject operation")
    assert "check the credentials" in uri.hint(forbidden)
    for port in (44037, 40300, 4030):  # a refused port with 403 in it is the network's
        refused = OSError(f"AWS Error NETWORK_CONNECTION during HeadObject operation: Failed "
                          f"to connect to 127.0.0.1:{port} after 0 ms")  # fmt: skip
        assert "check the network and the endpoint" in uri.hint(refused), port


def test_the_cli_says_what_is_wrong_without_a_traceback(s3: S3, tmp_path: Path) -> None:
    for photos, message in [
        ("s3://no-such-bucket/x", "the bucket 'no-such-bucket' does not exist"),
        (f"s3://{BUCKET}/nothing-here", "no object there"),
        ("ftp://host/x", "unsupported URI scheme"),
    ]:
        result = CliRunner().invoke(app, ["run", photos, "--out", str(tmp_path / "o")])
        assert result.exit_code != 0
        assert message in result.output and "Traceback" not in result.output
        assert not (tmp_path / "o").exists()  # refused before anything was written


@pytest.mark.slow
def test_an_s3_run_clusters_as_the_local_run(uploaded: str, photos: Path, tmp_path: Path) -> None:
    options: dict[str, Any] = {"k": K, "algorithm": "kmeans", "seed": 1, "workers": 1}
    local = cluster_folder([photos], out=tmp_path / "local", **options)
    remote = cluster_folder([uploaded], out=tmp_path / "remote", **options)
    strip = len(uploaded) + 1
    assert {p[strip:]: c for p, c in remote.assignments().items()} == {
        os.path.relpath(p, photos): c for p, c in local.assignments().items()
    }
    assert all(p.startswith(uploaded + "/") for p in remote.paths)  # keyed by URI
    assert [r.path for r in remote.rejected] == [f"{uploaded}/broken.jpg"]
    assert remote.rejected[0].reason == local.rejected[0].reason
    out = tmp_path / "remote"
    # every photo's thumbnail was made from the decoded pixels; tiles link it, not s3://
    assert all((out / thumb_relpath(p, 160)).is_file() for p in remote.paths)
    pages = " ".join(p.read_text() for p in out.glob("cluster*.html"))
    assert 'href="s3://' not in pages and 'href="thumbs/160/' in pages
    assert 'href="s3://' not in (out / "rejected.html").read_text()
    maps = [json.loads("[" + t[t.index("(") + 1 : t.rindex(")")] + "]") for t in map_info(out)]
    originals = [o for _, _, links in maps for o in links]
    assert len(originals) == len(remote.paths) and all(o.startswith("thumbs/") for o in originals)
    assert sorted(r["path"] for r in _rows(out / "assignments.csv")) == remote.paths
    again = cluster_folder([uploaded], out=out, **options)  # the store keys by URI: no work
    assert again.n_embedded == 0 and again.assignments() == remote.assignments()


def test_an_s3_run_exports_by_copy_and_undoes(
    uploaded: str, photos: Path, s3: S3, tmp_path: Path
) -> None:
    """Photos in a bucket are downloaded into the export (fingerprints journalled as for local
    photos); a link or a move of them is refused before anything is written; undo removes
    the copies, except one whose object is gone since (then the only one left)."""
    from imgclust.export import export, plan_export, undo_export

    out = tmp_path / "run"
    run = cluster_folder([uploaded], out=out, k=K, algorithm="kmeans", seed=1, workers=1)
    dest = tmp_path / "sorted"
    for mode in ("symlink", "move"):
        with pytest.raises(OutputError, match="--mode copy only"):
            export(out, dest, mode=mode)  # type: ignore[arg-type]
        assert not dest.exists()
    result = CliRunner().invoke(app, ["export", str(out), "--to", str(dest), "--mode", "move"])
    assert result.exit_code != 0 and "--mode copy only" in result.output
    assert "Traceback" not in result.output and not dest.exists()

    plan = export(out, dest, mode="copy")
    assert not plan.missing and len(plan.steps) == len(run.paths)
    strip = len(uploaded) + 1
    for step in plan.steps:
        copy = Path(step.target)
        assert copy.read_bytes() == (photos / step.source[strip:]).read_bytes()
        assert copy.stat().st_mtime_ns == uri.stat(step.source).mtime_ns
    assert not list(dest.rglob("*.part"))
    reads: list[str] = []
    real_read = uri.read_file

    def read_file(path: str) -> Any:
        reads.append(path)
        return real_read(path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(uri, "read_file", read_file)
        again = plan_export(out, dest, mode="copy")  # unchanged objects: nothing to do
        assert not again.steps and len(again.already) == len(run.paths)
        assert reads == []  # each one HEAD: its size and mtime are the journal's

    gone = plan.steps[0]
    s3.client.delete_object(Bucket=BUCKET, Key=gone.source[len(f"s3://{BUCKET}/") :])
    try:
        undone = undo_export(dest)
        assert undone.removed == len(run.paths) - 1
        assert undone.kept_blocked == [gone.target] and Path(gone.target).is_file()
    finally:  # the module's other tests read the bucket as uploaded
        s3.client.put_object(
            Bucket=BUCKET, Key=gone.source[len(f"s3://{BUCKET}/") :],
            Body=(photos / gone.source[strip:]).read_bytes(),
        )  # fmt: skip


def test_a_copy_export_downloads_each_object_once_and_journals_those_bytes(
    uploaded: str, photos: Path, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One download an object: the copy is the very bytes fingerprinted, so an object that
    changes during the export still leaves a copy its journal describes (and undo removes);
    the download folder goes when the export ends, and those a killed export left are
    removed by the next export (which holds DEST: no other export is running)."""
    import hashlib

    from imgclust.export import JOURNAL_DIR, export, undo_export

    out = tmp_path / "run"
    run = cluster_folder([uploaded], out=out, k=K, algorithm="kmeans", seed=1, workers=0)
    dest = tmp_path / "sorted"
    spool = dest / JOURNAL_DIR
    spool.mkdir(parents=True)
    for name in ("downloads-ab12", "downloads-cd34"):  # killed exports' (a free DEST lock)
        (spool / name).mkdir()
        (spool / name / "00000000").write_bytes(b"half a photo")
    first = run.paths[0]
    key = first[len(f"s3://{BUCKET}/") :]
    reads: list[str] = []
    real = uri.read_file

    def read_file(path: str) -> Any:
        got = real(path)
        reads.append(path)
        if len(reads) == len(run.paths):  # all downloaded; the first one changes now
            s3.client.put_object(Bucket=BUCKET, Key=key, Body=b"changed meanwhile")
        return got

    monkeypatch.setattr(uri, "read_file", read_file)
    try:
        plan = export(out, dest, mode="copy")
        assert sorted(reads) == sorted(run.paths)  # each object once
        journal = [json.loads(line) for line in next(spool.glob("journal-*.jsonl")).open()][1:]
        for entry in journal[: len(plan.steps)]:
            data = Path(entry["target"]).read_bytes()
            assert (len(data), hashlib.sha256(data).hexdigest()) == (
                entry["size"], entry["sha256"],
            )  # fmt: skip
        assert not list(spool.glob("downloads-*"))  # the stale ones, and its own, gone
        undone = undo_export(dest)  # none taken for edited; the changed object's copy kept
        assert undone.removed == len(run.paths) - 1 and undone.kept_edited == []
        assert len(undone.kept_blocked) == 1  # (what it held before: the last of those bytes)
        with pytest.raises(InputError, match="no imgclust export to undo"):
            undo_export(dest)
    finally:
        s3.client.put_object(
            Bucket=BUCKET, Key=key, Body=(photos / first[len(uploaded) + 1 :]).read_bytes()
        )


def test_a_copy_export_of_objects_into_mounted_folders_and_one_that_fails_early(
    uploaded: str, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cluster folders on another file system than DEST's journal folder (a mount: links
    fail with EXDEV) get copies of the downloads; an export whose download fails before its
    journal is written says nothing changed and leaves no journal folder (which would make
    scans skip DEST)."""
    import errno

    import imgclust.export as export_mod
    from imgclust.export import export, undo_export

    out = tmp_path / "run"
    run = cluster_folder([uploaded], out=out, k=K, algorithm="kmeans", seed=1, workers=0)
    dest = tmp_path / "sorted"
    real_link = os.link

    def link(src: Any, dst: Any, **kw: Any) -> None:
        if f"{os.sep}downloads-" in str(src):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_link(src, dst, **kw)

    with monkeypatch.context() as patch:
        patch.setattr(export_mod.os, "link", link)
        plan = export(out, dest, mode="copy")
    strip = len(uploaded) + 1
    for step in plan.steps:
        assert Path(step.target).read_bytes() == (photos / step.source[strip:]).read_bytes()
    assert not list(dest.rglob("*.part")) and not list(dest.rglob("downloads-*"))
    assert undo_export(dest).removed == len(run.paths)

    fresh = tmp_path / "fresh"
    reads: list[str] = []
    real = uri.read_file

    def failing(path: str) -> Any:
        reads.append(path)
        if len(reads) == 3:
            raise OSError("connection reset by peer")
        return real(path)

    monkeypatch.setattr(uri, "read_file", failing)
    with pytest.raises(OutputError, match="before it placed any photo") as caught:
        export(out, fresh, mode="copy")
    assert "--undo" not in str(caught.value)
    assert not fresh.exists()  # (nor the journal folder in it, which scans skip)


def test_similar_and_assign_take_uris_and_a_later_run_scans_them(
    uploaded: str, photos: Path, demo_photos: Path, s3: S3, tmp_path: Path
) -> None:
    """`similar` and `assign` keep a URI whole (a Path folds s3://b into s3:/b): a photo of
    the collection is found by its URI, a new one is read from the bucket, and the inputs
    `assign` adds are remembered as URIs, so the next run scans them (not "gone")."""
    out = tmp_path / "run"
    cluster_folder([uploaded], out=out, k=K, algorithm="kmeans", seed=1, workers=1)
    from imgclust.similar import find_similar

    runner = CliRunner()
    member = f"{uploaded}/coffee/coffee-0.jpg"
    found = find_similar(member, out, n=3)
    assert found.in_collection and found.query == member
    assert find_similar(member.replace("s3://", "S3://") + "/", out, n=3).in_collection
    assert all(nb.path.startswith(f"{uploaded}/coffee/") for nb in found.neighbours)
    assert 'href="thumbs/' in found.page.read_text()  # not a broken file:// of s3://
    done = runner.invoke(app, ["similar", member, "--in", str(out), "-n", "3"])
    assert done.exit_code == 0 and f"{uploaded}/coffee/coffee-" in done.output, done.output

    s3.put_folder(demo_photos / "brick", "new")
    new = f"s3://{BUCKET}/new"
    assert not find_similar(f"{new}/brick-0.jpg", out, n=2).in_collection  # read, embedded
    done = runner.invoke(app, ["similar", f"{new}/nothing.jpg", "--in", str(out)])
    assert done.exit_code != 0 and "Traceback" not in done.output, done.output
    assert "nothing.jpg" in done.output

    done = runner.invoke(app, ["assign", new, "--into", str(out)])
    assert done.exit_code == 0 and "8 new images assigned" in done.output, done.output
    again = cluster_folder([uploaded], out=out, k=K, algorithm="kmeans", seed=1, workers=1)
    assert sum(p.startswith(new + "/") for p in again.paths) == 8
    assert again.n_embedded == 0  # the store has them all, keyed by URI
    assert not again.assigned_missing


def test_capture_dates_of_objects_are_read_from_their_headers(s3: S3, tmp_path: Path) -> None:
    """The `taken` column of a URI run is the local run's: each object's first bytes are
    read (one request), not the whole photo; a missing object has no date."""
    from PIL import Image

    from imgclust.clustering import capture_dates

    folder = tmp_path / "dated"
    folder.mkdir()
    for name, colour, taken in [("a.jpg", (200, 30, 30), "2024:06:01 12:34:56"),
                                ("b.jpg", (30, 200, 30), None)]:  # fmt: skip
        exif = Image.Exif()
        if taken is not None:
            exif.get_ifd(0x8769)[36867] = taken  # DateTimeOriginal
        Image.new("RGB", (640, 480), colour).save(folder / name, exif=exif.tobytes())
    s3.put_folder(folder, "dated")
    keys = [f"s3://{BUCKET}/dated/{n}" for n in ("a.jpg", "b.jpg", "gone.jpg")]
    assert list(capture_dates(keys)) == ["2024-06-01 12:34:56", "", ""]
    assert list(capture_dates(keys[:2])) == list(
        capture_dates([str(folder / "a.jpg"), str(folder / "b.jpg")])
    )


@contextlib.contextmanager
def _unreachable(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The S3 endpoint pointed at a port nothing listens on, for the block."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with monkeypatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{closed}")
        uri.filesystem.cache_clear()
        try:
            yield
        finally:
            uri.filesystem.cache_clear()


def test_unreachable_storage_is_never_taken_for_gone(
    uploaded: str, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage that cannot be reached says nothing of what is there: an export stops (it
    does not list every photo missing), an undo stops with its journal still live (it does
    not keep every copy as the only one left), and a remembered `assign` input is not
    forgotten as gone. A missing bucket is gone."""
    from imgclust.export import export, plan_export, undo_export
    from imgclust.steps import input_exists

    out = tmp_path / "run"
    cluster_folder([uploaded], out=out, k=K, algorithm="kmeans", seed=1, workers=1)
    dest = tmp_path / "sorted"
    plan = export(out, dest, mode="copy")
    assert input_exists(uploaded) and not input_exists(f"s3://no-such-bucket-{os.getpid()}/x")
    with _unreachable(monkeypatch):
        with pytest.raises(InputError, match="check the network and the endpoint"):
            plan_export(out, tmp_path / "other", mode="copy")
        with pytest.raises(InputError, match="check the network and the endpoint"):
            undo_export(dest)
        with pytest.raises(InputError, match="check the network and the endpoint"):
            input_exists(uploaded)
    assert all(Path(step.target).is_file() for step in plan.steps)
    assert undo_export(dest).removed == len(plan.steps)  # the journal was kept: undone now


def test_a_capture_date_behind_large_headers_is_read_whole(s3: S3, tmp_path: Path) -> None:
    """A JPEG whose segments before the image data pass the first bytes read (a large XMP
    or Photoshop block) is read whole: its date is the local file's."""
    from PIL import Image

    from imgclust.clustering import HEADER_BYTES, capture_dates

    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2024:06:01 12:34:56"
    path = tmp_path / "big" / "a.jpg"
    path.parent.mkdir()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(path, exif=exif.tobytes())
    data = path.read_bytes()
    block = b"\xff\xe3" + (60_000 + 2).to_bytes(2, "big") + bytes(60_000)  # APP3 segments
    n = HEADER_BYTES // 60_000 + 1
    path.write_bytes(data[:2] + data[2:].replace(b"\xff\xdb", block * n + b"\xff\xdb", 1))
    assert len(path.read_bytes()) > HEADER_BYTES
    s3.put_folder(path.parent, "big")
    local = capture_dates([str(path)])
    assert list(local) == ["2024-06-01 12:34:56"]
    assert list(capture_dates([f"s3://{BUCKET}/big/a.jpg"])) == list(local)
