"""Solid at every size: one test per defect fixed in "Solid at every size, part 1".

Every test goes through a public surface (the CLI, ``imgclust.run``/``cluster_folder``), uses
only names the code before that commit also had (so each fails there on behaviour, not on an
import), and works on a few of the demo photos with one feature store shared by the module.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import imgclust
import imgclust.cli as cli
import imgclust.embed
import imgclust.pipeline
from imgclust import ClusterConfig, ConfigError, EmbedConfig, RunConfig, StoreConfig
from imgclust.state import load_clustering

runner = CliRunner()


# -- helpers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One feature store for the module: photos at the same path are embedded once."""
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def six(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six photos of two scenes (never changed by a test)."""
    return copy_photos(demo_photos, tmp_path_factory.mktemp("six"), {"astronaut": 3, "coffee": 3})


def copy_photos(demo: Path, dest: Path, picks: dict[str, int | Iterable[int]]) -> Path:
    """Copy variants of the demo's scenes into ``dest``: ``{"coffee": 3}`` is coffee-0..2."""
    dest.mkdir(parents=True, exist_ok=True)
    for scene, which in picks.items():
        for i in range(which) if isinstance(which, int) else which:
            shutil.copy2(demo / scene / f"{scene}-{i}.jpg", dest / f"{scene}-{i}.jpg")
    return dest


def invoke(*args: object) -> Result:
    return runner.invoke(cli.app, [str(a) for a in args])


def ok(result: Result) -> str:
    """The output of a command that must have succeeded (or a failure that says why)."""
    assert result.exit_code == 0, (result.exit_code, result.output, repr(result.exception))
    return result.output


def run_cli(inputs: Path | list[Path], out: Path, store: Path, *extra: object) -> Result:
    paths = inputs if isinstance(inputs, list) else [inputs]
    return invoke("run", *paths, "--out", out, "--cache", store, "--workers", 0, "-q", *extra)


def rows(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def n_clusters_said(output: str) -> int:
    match = re.search(r"clustered into (\d+) clusters?\b", output)
    assert match, output
    return int(match[1])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def similar_rows(output: str) -> list[list[str]]:
    """The neighbour rows `imgclust similar` prints when piped: "rank, distance, cluster, path"
    separated by tabs."""
    return [line.split("\t") for line in output.splitlines() if re.match(r"\d+\t", line)]


def jpgs(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*.jpg"))


# -- 1: k above the number of photos --------------------------------------------------------


def test_default_k_and_k_at_or_above_the_photo_count_are_lowered(
    demo_photos: Path, tmp_path: Path, store: Path
) -> None:
    scenes = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left")
    photos = copy_photos(demo_photos, tmp_path / "photos", dict.fromkeys(scenes, 3))
    # The default k (100, lowered for small collections) on 15 photos; k at and above the count.
    for out, extra, note in (
        (tmp_path / "default", (), "note: k = 6 for 15 photos: the default below 3,900"),
        (tmp_path / "k15", ("--k", 15), None),
        (tmp_path / "k40", ("--k", 40), "note: k lowered from 40 to 15: 15 photos"),
    ):
        output = ok(run_cli(photos, out, store, *extra))
        if note:
            assert note in output
        n = n_clusters_said(output)
        assert 1 <= n <= 15
        assert len(rows(out / "clusters.csv")) == n
        assert len(rows(out / "assignments.csv")) == 15


# -- 2: HDBSCAN and its unclustered photos --------------------------------------------------


def test_hdbscan_lists_unclustered_photos_and_assign_and_similar_work(
    demo_photos: Path, tmp_path: Path, store: Path
) -> None:
    photos = copy_photos(demo_photos, tmp_path / "photos", {"astronaut": 6, "coffee": 6})
    copy_photos(demo_photos, photos, {"rocket": [0], "moon": [0], "page": [0]})  # loners
    out = tmp_path / "out"
    summary = ok(run_cli(photos, out, store, "--algorithm", "hdbscan"))
    # No word on a k nobody gave: hdbscan finds its own number.
    assert "k is not used" not in summary and "k = " not in summary
    labels = {r["path"]: int(r["cluster"]) for r in rows(out / "assignments.csv")}
    assert sorted(labels) == jpgs(photos)  # every photo, clustered or not
    noise = [p for p, c in labels.items() if c == -1]
    assert noise, labels
    assert {r["cluster"] for r in rows(out / "clusters.csv")} >= {"0"}
    html = "".join(p.read_text(encoding="utf-8") for p in out.glob("*.html"))
    assert "unclustered" in (out / "index.html").read_text(encoding="utf-8")
    assert all(Path(p).name in html for p in noise)

    new = copy_photos(demo_photos, tmp_path / "new", {"chelsea": [0]})
    ok(invoke("assign", new, "--into", out, "--workers", 0, "-q"))
    assert str(new / "chelsea-0.jpg") in {r["path"] for r in rows(out / "assignments.csv")}
    output = ok(invoke("similar", noise[0], "--in", out, "-n", 3))  # an unclustered photo
    assert len(similar_rows(output)) == 3
    assert {row[-1] for row in similar_rows(output)} <= set(labels) | {str(new / "chelsea-0.jpg")}

    # One image: all noise, still a report.
    single = tmp_path / "single"
    given = ok(run_cli(photos / "rocket-0.jpg", single, store, "--algorithm", "hdbscan", "--k", 3))
    assert "k is not used by hdbscan" in given
    assert [(r["path"], r["cluster"]) for r in rows(single / "assignments.csv")] == [
        (str(photos / "rocket-0.jpg"), "-1")
    ]


# -- 3: small k on a handful of photos ------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3])
def test_small_k_on_a_few_photos_gives_exactly_k_clusters(
    demo_photos: Path, tmp_path: Path, store: Path, k: int
) -> None:
    scenes = ("astronaut", "coffee", "rocket", "moon", "page")
    photos = copy_photos(demo_photos, tmp_path / "photos", {scene: [0] for scene in scenes})
    out = tmp_path / "out"
    output = ok(run_cli(photos, out, store, "--k", k))
    assert n_clusters_said(output) == k
    assert len(rows(out / "clusters.csv")) == k
    assert len({r["cluster"] for r in rows(out / "assignments.csv")}) == k


# -- 4: a damaged clusters.csv ---------------------------------------------------------------


def test_export_with_a_non_numeric_cluster_id_names_the_file(
    six: Path, tmp_path: Path, store: Path
) -> None:
    out = tmp_path / "out"
    ok(run_cli(six, out, store, "--k", 2))
    clusters_csv = out / "clusters.csv"
    lines = clusters_csv.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = "x" + lines[1][lines[1].index(",") :]
    clusters_csv.write_text("".join(lines), encoding="utf-8")
    result = invoke("export", out, "--to", tmp_path / "sorted")
    assert result.exit_code == 2, (result.output, repr(result.exception))
    assert str(clusters_csv) in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "sorted").exists() or not any((tmp_path / "sorted").rglob("*.jpg"))


# -- 5: two commands on one output folder ---------------------------------------------------

HOLDER = r"""
import contextlib, sys
from pathlib import Path

marker = Path(sys.argv[1])
try:
    from imgclust._fs import OutputLock
    lock = OutputLock(marker, "run")
except ImportError:  # code without OutputLock: the same OS lock (flock) on the same file
    import fcntl

    @contextlib.contextmanager
    def _flock():
        with open(marker / "lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield

    lock = _flock()
with lock:
    print("locked", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.slow
def test_a_second_command_on_a_busy_output_folder_is_refused(
    six: Path, demo_photos: Path, tmp_path: Path, store: Path
) -> None:
    out = tmp_path / "out"
    ok(run_cli(six, out, store, "--k", 2))
    new = copy_photos(demo_photos, tmp_path / "new", {"chelsea": [0]})
    commands = {
        "run": lambda: run_cli(six, out, store, "--k", 2),
        "assign": lambda: invoke("assign", new, "--into", out, "--workers", 0, "-q"),
        "similar": lambda: invoke("similar", six / "coffee-0.jpg", "--in", out, "-n", 2),
    }
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out / ".imgclust")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(out)
        for name, command in commands.items():
            result = command()
            assert result.exit_code == 2, (name, result.output, repr(result.exception))
            assert "in use by `imgclust run`" in result.output, (name, result.output)
            assert snapshot(out) == before, name
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=60) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    for command in commands.values():
        ok(command())
    assert str(new / "chelsea-0.jpg") in {r["path"] for r in rows(out / "assignments.csv")}


# -- 6: an earlier output or an export folder inside the input ------------------------------


def test_earlier_output_and_export_folders_inside_an_input_are_skipped(
    demo_photos: Path, tmp_path: Path, store: Path
) -> None:
    lib = tmp_path / "lib"
    photos = copy_photos(demo_photos, lib / "photos", {"astronaut": 3, "coffee": 3})
    earlier, exported = lib / "earlier", lib / "sorted"
    ok(run_cli(photos, earlier, store, "--k", 2))
    ok(invoke("export", earlier, "--to", exported))  # symlinks, one folder per cluster
    assert any(exported.rglob("*.jpg"))
    out = tmp_path / "out"
    output = ok(run_cli(lib, out, store, "--k", 2))
    assert sorted(r["path"] for r in rows(out / "assignments.csv")) == jpgs(photos)
    assert re.search(r"6 good images of 6\b", output), output
    for folder in (earlier, exported):
        assert f"skipped {folder}: an imgclust output or export folder" in output


def test_an_input_inside_an_output_folder_is_skipped_and_never_remembered(
    six: Path, tmp_path: Path, store: Path
) -> None:
    """``OUT/thumbs`` is the report's own pictures: given to `assign` or `run` (or reached
    through a link) it is skipped, said, and not remembered, so later runs never cluster
    thumbnails of thumbnails (each run once added the last one's)."""
    out = tmp_path / "out"
    ok(run_cli(six, out, store, "--k", 2))
    thumbs = out / "thumbs"
    link = tmp_path / "link"
    link.symlink_to(thumbs, target_is_directory=True)
    for given in (thumbs, link, thumbs / next(thumbs.iterdir()).name, out):
        said = ok(invoke("assign", given, "--into", out, "--workers", 0))
        assert "skipped" in said and "(or inside one)" in said, said
        assert "0 new images" in said and "remembered in" not in said, said
    saved = load_clustering(out / ".imgclust")
    assert saved.assigned_inputs == [] and len(saved.paths) == 6
    for _ in range(2):
        again = ok(run_cli(six, out, store))
        assert re.search(r"\b6 good images of 6\b", again), again
        assert len(rows(out / "assignments.csv")) == 6
    failed = run_cli(thumbs, tmp_path / "other", store)
    assert failed.exit_code == 2 and "not scanned" in failed.output, failed.output
    assert "or inside one" in failed.output, failed.output


# -- 7: --out inside an input reached through a symlink -------------------------------------


@pytest.mark.slow
def test_out_inside_a_symlinked_input_is_never_clustered(
    six: Path, tmp_path: Path, store: Path
) -> None:
    real = tmp_path / "real"
    shutil.copytree(six, real)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    for _ in range(3):
        output = ok(run_cli(link, link / "out", store, "--k", 2))
        assert re.search(r"\b6 good images of 6\b", output), output
        assert len(rows(real / "out" / "assignments.csv")) == 6


# -- 8: a file that changes while it is read ------------------------------------------------


def test_a_file_changed_while_embedded_ends_in_exactly_one_csv(
    six: Path, tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(six, photos)
    target = str(photos / "coffee-1.jpg")
    real_decode = imgclust.embed.decode
    calls: list[str] = []

    def decode_while_it_grows(path: str, *args: object, **kwargs: object) -> object:
        calls.append(path)
        if path == target and calls.count(path) == 1:
            with open(path, "ab") as fh:  # bytes after the JPEG's end: still decodable
                fh.write(b"\0" * 4096)
            st = Path(path).stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        return real_decode(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(imgclust.embed, "decode", decode_while_it_grows)
    out = tmp_path / "out"
    ok(run_cli(photos, out, store, "--k", 2))  # --workers 0: the decode runs in this process
    assert target in calls
    clustered = [r["path"] for r in rows(out / "assignments.csv")]
    rejected = [r["path"] for r in rows(out / "rejected.csv")]
    for path in jpgs(photos):
        assert clustered.count(path) + rejected.count(path) == 1, path
    assert target in clustered


# -- 9: the Python API takes str paths and validates k --------------------------------------


@pytest.mark.slow
def test_api_accepts_str_and_path_and_validates_k(
    six: Path, tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(six, tmp_path / "photos")

    def config(inputs: object, out: object, k: object = 2) -> RunConfig:
        return RunConfig(
            inputs=inputs,  # type: ignore[arg-type]  # what users write: str or Path
            out=out,  # type: ignore[arg-type]
            embed=EmbedConfig(workers=0),
            store=StoreConfig(cache_dir=store),
            cluster=ClusterConfig(k=k),  # type: ignore[arg-type]
        )

    by_str = imgclust.run(config(["photos"], "out"))
    assert by_str.k == 2 and len(by_str.paths) == 6
    assert (tmp_path / "out" / "index.html").is_file()
    by_path = imgclust.run(config((Path("photos"),), Path("out2")))
    assert by_path.assignments() == by_str.assignments()

    # k=0 is refused by the API as by the CLI.
    with pytest.raises(ConfigError):
        ClusterConfig(k=0)
    with pytest.raises(ConfigError):
        imgclust.cluster_folder(["photos"], out="out0", k=0, cache_dir=store, workers=0)
    assert not (tmp_path / "out0").exists()
    result = invoke("run", "photos", "--out", "out0", "--k", 0, "-q")
    assert result.exit_code == 2, (result.output, repr(result.exception))

    # "auto" and None: chosen from the data (2 scenes), not 100 lowered to the 6 photos.
    auto = imgclust.cluster_folder(["photos"], out="auto", k="auto", cache_dir=store, workers=0)
    assert 1 <= auto.k < 6
    assert imgclust.run(config(["photos"], "auto2", "auto")).assignments() == auto.assignments()
    assert imgclust.run(config(["photos"], "none", None)).assignments() == auto.assignments()


def test_cluster_folder_k_none_means_auto(six: Path, tmp_path: Path, store: Path) -> None:
    auto = imgclust.cluster_folder(
        [six], out=tmp_path / "auto", k="auto", cache_dir=store, workers=0
    )
    none = imgclust.cluster_folder([six], out=tmp_path / "none", k=None, cache_dir=store, workers=0)
    assert none.k == auto.k
    assert none.assignments() == auto.assignments()


# -- 10: a copied output folder writes its own store: tests/test_integrity.py::
#    test_copied_output_folder_uses_its_own_store (not repeated here).


# -- 11: a run that fails before any work leaves no output folder ---------------------------


def test_a_run_failing_before_any_work_leaves_out_as_it_was(
    six: Path, tmp_path: Path, store: Path
) -> None:
    empty = tmp_path / "no-images"
    empty.mkdir()
    (empty / "README.txt").write_text("not a photo\n")
    missing = tmp_path / "does-not-exist"
    for photos in (missing, empty):
        # The default store (in OUT) on purpose: that is what a plain run makes.
        out = tmp_path / f"new-out-{photos.name}"
        result = invoke("run", photos, "--out", out, "-q")
        assert result.exit_code == 2, (result.output, repr(result.exception))
        assert not out.exists(), sorted(map(str, out.rglob("*")))
        existing = tmp_path / f"empty-out-{photos.name}"
        existing.mkdir()
        result = invoke("run", photos, "--out", existing, "-q")
        assert result.exit_code == 2, (result.output, repr(result.exception))
        assert list(existing.iterdir()) == []
    earlier = tmp_path / "earlier"
    ok(run_cli(six, earlier, store, "--k", 2))
    before = snapshot(earlier)
    for photos in (missing, empty):
        result = run_cli(photos, earlier, store, "--k", 2)
        assert result.exit_code == 2, (result.output, repr(result.exception))
        assert snapshot(earlier) == before


def test_no_clusterable_image_says_where_the_reasons_are(
    demo_photos: Path, tmp_path: Path, store: Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy2(demo_photos / "broken.jpg", photos / "broken.jpg")
    out = tmp_path / "out"
    result = run_cli(photos, out, store)
    assert result.exit_code == 2, (result.output, repr(result.exception))
    broken = str(photos / "broken.jpg")
    if "rejected.csv" in result.output:  # the message sends the user there: it must exist
        listed = out / "rejected.csv"
        assert listed.is_file() and broken in listed.read_text(encoding="utf-8"), result.output
    else:  # or the message itself names the file
        assert broken in result.output, result.output


# -- 12: what the CLI prints ----------------------------------------------------------------


def test_run_help_shows_defaults_and_reads_cleanly() -> None:
    output = ok(invoke("run", "--help"))
    flat = " ".join(output.split())
    assert re.search(r"--k\b(?:(?!--algorithm).)*\[default: \(?100\b", flat), output
    assert re.search(r"--algorithm\b(?:(?!--features).)*\[default: \(?auto\b", flat), output
    assert not re.findall(r"\S \.(?=\s|$)", output), output  # no space before a full stop
    assert not re.search(r"\b1 clusters\b", output)


def test_one_cluster_is_singular(six: Path, tmp_path: Path, store: Path) -> None:
    output = ok(run_cli(six, tmp_path / "out", store, "--k", 1))
    assert re.search(r"clustered into 1 cluster\b(?!s)", output), output
    assert not re.search(r"\b1 clusters\b", output), output


def test_one_cluster_is_singular_in_the_report(six: Path, tmp_path: Path, store: Path) -> None:
    out = tmp_path / "out"
    ok(run_cli(six, out, store, "--k", 1))
    html = (out / "index.html").read_text(encoding="utf-8")
    assert re.search(r"\b1 cluster\b(?!s)", html)
    assert not re.search(r"\b1 clusters\b", html)


def test_long_paths_are_printed_whole_when_piped(
    demo_photos: Path, tmp_path: Path, store: Path
) -> None:
    base = tmp_path / ("a-rather-long-folder-name-" * 3) / ("and-a-second-long-one-" * 3)
    photos = copy_photos(demo_photos, base / "photos", {"coffee": 3})
    new = copy_photos(demo_photos, base / "new", {"coffee": [3]})
    out = base / "out"
    assert len(str(out / "assignments.csv")) > 120
    lines = ok(run_cli(photos, out, store, "--k", 1)).splitlines()
    assert f"  assignments: {out / 'assignments.csv'}" in lines, lines
    assert f"  report: {out / 'index.html'}" in lines, lines
    lines = ok(invoke("assign", new, "--into", out, "--workers", 0, "-q")).splitlines()
    assert any(line.endswith(f"  {new / 'coffee-3.jpg'}") for line in lines), lines
    output = ok(invoke("similar", photos / "coffee-0.jpg", "--in", out, "-n", 2))
    found = similar_rows(output)  # tab-separated: one line per neighbour, its path last
    assert len(found) == 2, output
    assert {row[-1] for row in found} <= {*jpgs(photos), *jpgs(new)}, output


# -- 13: an unexpected error ----------------------------------------------------------------


def test_an_unexpected_error_is_one_message_and_a_log_file(
    six: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(imgclust.pipeline, "scan", boom)  # deep inside the run
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the log file goes
    monkeypatch.setattr(cli, "_DEBUG", False, raising=False)  # restored after the test
    # The `imgclust` console script's entry point (the app itself before it had main()).
    entry = getattr(cli, "main", None) or cli.app
    args = ["run", str(six), "--out", str(tmp_path / "out"), "-q", "--workers", "0"]
    monkeypatch.setattr(sys, "argv", ["imgclust", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc_info:
        entry()
    assert exc_info.value.code == 1
    captured = capsys.readouterr()
    console = captured.err + captured.out
    assert "Traceback" not in console, console
    message = [line for line in console.splitlines() if line.strip()]
    assert len(message) <= 2, console
    assert sum("RuntimeError: boom" in line for line in message) == 1, console
    logs = [Path(p) for p in re.findall(re.escape(str(tmp_path)) + r"\S*\.log", console)]
    assert len(logs) == 1 and logs[0].is_file(), console
    log = logs[0].read_text(encoding="utf-8")
    assert "Traceback" in log and "RuntimeError: boom" in log

    monkeypatch.setattr(sys, "argv", ["imgclust", "--debug", *args])
    with pytest.raises(RuntimeError, match="boom"):
        entry()
