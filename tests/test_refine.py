"""`imgclust run --refine CLUSTER`: split one cluster of a report again, at the CLI seam."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imgclust.cli import app
from imgclust.state import load_clustering, read_index

runner = CliRunner()
SCENES = ("coffee", "moon", "astronaut")


def _clusters(out: Path) -> dict[str, int]:
    with open(out / "assignments.csv", newline="", encoding="utf-8") as fh:
        return {r["path"]: int(r["cluster"]) for r in csv.DictReader(fh)}


def _text(output: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(output.split())


def _run(*args: str) -> str:
    result = runner.invoke(app, ["run", *args, "--quiet", "--workers", "0"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def two_clusters(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three scenes clustered into two: one cluster holds two scenes."""
    root = tmp_path_factory.mktemp("refine")
    photos = root / "photos"
    for scene in SCENES:
        shutil.copytree(demo_photos / scene, photos / scene)
    out = root / "out"
    _run(str(photos), "--out", str(out), "--k", "2", "--cache", str(root / "store"))
    return photos, out


@pytest.fixture
def clustered(two_clusters: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A fresh copy of the two-cluster output folder (refining changes it)."""
    photos, out = two_clusters
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    return photos, copy


def _mixed_cluster(assigned: dict[str, int]) -> int:
    scenes: dict[int, set[str]] = {}
    for path, cid in assigned.items():
        scenes.setdefault(cid, set()).add(Path(path).parent.name)
    return max(scenes, key=lambda c: len(scenes[c]))


def test_refine_splits_only_the_chosen_cluster(clustered: tuple[Path, Path]) -> None:
    photos, out = clustered
    before = _clusters(out)
    mixed = _mixed_cluster(before)
    output = _run(str(photos), "--out", str(out), "--refine", str(mixed), "--refine-k", "2")

    after = _clusters(out)
    assert sorted(after) == sorted(before)
    assert sorted(set(after.values())) == [0, 1, 2]
    # The refined cluster's scenes are one cluster each now (a variant the first run put in
    # the other cluster, as a grey astronaut beside the moon, stays there); the cluster that
    # was not refined kept its members.
    by_scene: dict[str, set[int]] = {}
    for path, cid in after.items():
        if before[path] == mixed:
            by_scene.setdefault(Path(path).parent.name, set()).add(cid)
    assert len(by_scene) >= 2
    assert all(len(ids) == 1 for ids in by_scene.values()), by_scene
    kept = {p for p, c in before.items() if c != mixed}
    assert len({after[p] for p in kept}) == 1
    assert {p for p, c in after.items() if c == after[next(iter(kept))]} == kept
    assert f"cluster #{mixed} of the last report is now clusters" in _text(output)

    # The saved state (assign/similar) and the report follow the new clustering.
    saved = load_clustering(out / ".imgclust")
    assert [after[p] for p in saved.paths] == saved.labels.tolist()
    assert len(saved.names) == len(saved.centroids) == len(saved.fences) == 3
    sizes = np.bincount(saved.labels)
    assert list(sizes) == sorted(sizes, reverse=True)  # ids still follow size
    assert read_index(out / ".imgclust", len(saved.paths)).ntotal == len(saved.paths)
    assert (out / "clusters-001.html").is_file()
    html = "".join(p.read_text(encoding="utf-8") for p in out.glob("clusters-*.html"))
    for name in saved.names:
        assert name.split(" / ")[0] in html


def test_refine_k_auto_splits_the_cluster(clustered: tuple[Path, Path]) -> None:
    photos, out = clustered
    mixed = _mixed_cluster(_clusters(out))
    _run(str(photos), "--out", str(out), "--refine", str(mixed))
    assert len(set(_clusters(out).values())) >= 3


def test_refine_refuses_a_grown_folder(clustered: tuple[Path, Path], demo_photos: Path) -> None:
    photos, out = clustered
    before = (out / "assignments.csv").read_bytes()
    shutil.copytree(demo_photos / "rocket", photos / "rocket")
    try:
        args = ["run", str(photos), "--out", str(out), "--refine", "0", "--quiet"]
        result = runner.invoke(app, args)
    finally:
        shutil.rmtree(photos / "rocket")
    assert result.exit_code == 2
    text = _text(result.output)
    assert "8 new" in text and "run `imgclust run" in text
    assert (out / "assignments.csv").read_bytes() == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--refine", "5"], "has clusters 0 to 1"),
        (["--refine", "0", "--k", "4"], "drop --k"),
        (["--refine-k", "3"], "--refine-k needs --refine"),
        (["--refine", "0", "--refine-k", "1"], "--refine-k (refine_k) must be at least 2"),
        (["--refine", "0", "--refine-k", "0"], "--refine-k (refine_k) must be at least 2"),
    ],
)
def test_refine_mistakes_are_clear_errors(
    clustered: tuple[Path, Path], extra: list[str], message: str
) -> None:
    photos, out = clustered
    result = runner.invoke(app, ["run", str(photos), "--out", str(out), *extra, "--quiet"])
    assert result.exit_code == 2
    assert message in _text(result.output)


def test_refine_needs_an_earlier_run(demo_photos: Path, tmp_path: Path) -> None:
    args = ["run", str(demo_photos / "moon"), "--out", str(tmp_path / "o"), "--refine", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "holds no saved clustering" in _text(result.output)
    assert not (tmp_path / "o").exists()  # nothing made for a refinement that cannot happen


def test_a_refine_k_above_the_clusters_size_is_lowered_and_said(
    clustered: tuple[Path, Path],
) -> None:
    photos, out = clustered
    assigned = _clusters(out)
    cid = _mixed_cluster(assigned)
    n = sum(c == cid for c in assigned.values())
    text = _text(_run(str(photos), "--out", str(out), "--refine", str(cid), "--refine-k", "500"))
    assert f"cluster #{cid} has {n} photos: split in at most {n}, not 500" in text
    assert len(set(_clusters(out).values())) <= n + 1


def test_refine_with_the_feature_store_gone_says_so(demo_photos: Path, tmp_path: Path) -> None:
    """The photos are unchanged but the store that held their features is gone: that is
    said, not "15 changed images" (which sent the user looking at their photos)."""
    out = tmp_path / "o"
    _run(str(demo_photos / "moon"), "--out", str(out), "--k", "2", "--workers", "0")
    shutil.rmtree(out / ".imgclust" / "store")
    args = ["run", str(demo_photos / "moon"), "--out", str(out), "--refine", "0", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    said = _text(result.output)
    assert "holds none of the photos" in said and "changed images" not in said, said


def test_refine_of_a_clustering_without_clusters_says_so(demo_photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    photos = tmp_path / "p"
    photos.mkdir()
    shutil.copy2(demo_photos / "moon" / "moon-0.jpg", photos / "a.jpg")
    _run(str(photos), "--out", str(out), "--algorithm", "hdbscan", "--workers", "0")
    assert set(_clusters(out).values()) == {-1}  # (one photo: no dense group)
    result = runner.invoke(app, ["run", str(photos), "--out", str(out), "--refine", "0", "-q"])
    assert result.exit_code == 2, result.output
    assert "has no clusters (every photo is unclustered)" in _text(result.output)
    assert "clusters 0 to -1" not in _text(result.output)
