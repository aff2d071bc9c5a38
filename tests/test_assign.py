"""Saved clustering, `assign` of new photos and `similar` search, on the demo photos."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from imgclust import InputError, cluster_folder
from imgclust.assign import assign_folder
from imgclust.similar import find_similar
from imgclust.state import feature_index, load_clustering, read_index

SCENES = ("coffee", "chelsea", "astronaut", "camera", "rocket")


def _build_index(features: np.ndarray) -> Any:
    """A similarity index filled with ``features`` (any float dtype), as a run makes it."""
    index, storage = feature_index(len(features), features.shape[1])
    storage[:] = features
    return index


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["path"]: r for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def clustered(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    photos = tmp_path_factory.mktemp("coll") / "photos"
    for scene in SCENES:
        shutil.copytree(demo_photos / scene, photos / scene)
    out = tmp_path_factory.mktemp("out")
    cluster_folder([photos], out=out, k=len(SCENES), workers=0)
    return out


def test_run_saves_model_and_index(clustered: Path) -> None:
    saved = load_clustering(clustered / ".imgclust")
    rows = _rows(clustered / "assignments.csv")
    assert sorted(saved.paths) == sorted(rows)
    assert saved.centroids.shape[0] == len(saved.names) == len(SCENES)
    for path, label, out in zip(saved.paths, saved.labels, saved.outliers, strict=True):
        assert rows[path]["cluster"] == str(label)
        assert rows[path]["outlier"] == str(int(out))
    assert read_index(clustered / ".imgclust", len(saved.paths)).ntotal == len(saved.paths)


def test_assign_adds_only_new_photos_to_their_scene(clustered: Path, tmp_path: Path) -> None:
    saved = load_clustering(clustered / ".imgclust")
    sources = [p for p in saved.paths if p.endswith("-2.jpg")][:3]
    for i, src in enumerate(sources):
        ImageOps.mirror(Image.open(src)).save(tmp_path / f"new-{i}.jpg", quality=85)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    shutil.copy(sources[0], tmp_path / "same-bytes-new-name.jpg")

    result = assign_folder([tmp_path], clustered, workers=0)

    assert len(result.paths) == 4 and [Path(r.path).name for r in result.rejected] == ["bad.jpg"]
    by_path = dict(zip(result.paths, result.labels.tolist(), strict=True))
    old = dict(zip(saved.paths, saved.labels.tolist(), strict=True))
    for i, src in enumerate(sources):
        assert by_path[str(tmp_path / f"new-{i}.jpg")] == old[src]
    rows = _rows(clustered / "assignments.csv")
    assert len(rows) == len(saved.paths) + 4
    assert rows[str(tmp_path / "new-0.jpg")]["outlier"] in ("0", "1")
    grown = load_clustering(clustered / ".imgclust")
    np.testing.assert_array_equal(grown.centroids, saved.centroids)  # not re-clustered
    assert list(grown.names) == list(saved.names)
    # Again: nothing new, nothing embedded, nothing duplicated.
    again = assign_folder([tmp_path], clustered, workers=0)
    assert again.paths == [] and again.n_known == 4 and again.n_changed == 0
    assert [Path(r.path).name for r in again.rejected] == ["bad.jpg"]  # (still: the store knew)
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere")  # rejected by the scan
    for _ in range(2):
        assign_folder([tmp_path], clustered, workers=0)
    assert len(_rows(clustered / "assignments.csv")) == len(rows)
    with open(clustered / "rejected.csv", newline="", encoding="utf-8") as fh:
        listed = [r["path"] for r in csv.DictReader(fh)]
    assert listed.count(str(tmp_path / "bad.jpg")) == 1
    assert listed.count(str(tmp_path / "dangling.jpg")) == 1  # each assign: listed once
    assert len(listed) == len(saved.rejected) + 2
    assert sorted(r.path for r in load_clustering(clustered / ".imgclust").rejected) == sorted(
        listed
    )
    (tmp_path / "dangling.jpg").unlink()

    # A rejected file mended in place is assigned; an assigned one edited is said, and kept.
    ImageOps.mirror(Image.open(sources[1])).save(tmp_path / "bad.jpg", quality=85)
    Image.new("RGB", (64, 48), "black").save(tmp_path / "new-2.jpg")
    mended = assign_folder([tmp_path], clustered, workers=0)
    assert mended.paths == [str(tmp_path / "bad.jpg")] and mended.rejected == []
    assert mended.n_known == 4 and mended.n_changed == 1
    rows = _rows(clustered / "assignments.csv")
    assert str(tmp_path / "bad.jpg") in rows and len(rows) == len(saved.paths) + 5
    assert str(tmp_path / "bad.jpg") not in _rows(clustered / "rejected.csv")
    assert str(tmp_path / "dangling.jpg") not in _rows(clustered / "rejected.csv")  # (deleted)
    assert rows[str(tmp_path / "new-2.jpg")]["cluster"] == str(old[sources[2]])  # as clustered


def test_similar_in_collection_and_new_file(clustered: Path, tmp_path: Path) -> None:
    saved = load_clustering(clustered / ".imgclust")
    query = next(p for p in saved.paths if "/coffee/" in p)
    result = find_similar(Path(query), clustered, n=5, device="cpu")
    assert result.in_collection and len(result.neighbours) == 5
    assert query not in [nb.path for nb in result.neighbours]
    assert all("/coffee/" in nb.path for nb in result.neighbours[:3])
    dists = [nb.distance for nb in result.neighbours]
    assert dists == sorted(dists)
    html = result.page.read_text("utf-8")
    assert "coffee" in html and html.count("<script") == 1  # gallery.js only

    outside = tmp_path / "<b>cat&.jpg"
    shutil.copy(next(p for p in saved.paths if "/chelsea/" in p), outside)
    new = find_similar(outside, clustered, n=3, device="cpu")
    assert not new.in_collection and new.neighbours[0].distance < 1e-3
    assert "&lt;b&gt;cat&amp;.jpg" in new.page.read_text("utf-8")
    with pytest.raises(InputError):
        find_similar(tmp_path / "missing.jpg", clustered, device="cpu")


def test_run_on_grown_folder_says_it_reclustered(demo_photos: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(demo_photos / "coffee", photos / "coffee")
    shutil.copytree(demo_photos / "chelsea", photos / "chelsea")
    first = cluster_folder([photos], out=tmp_path / "out", k=2, workers=0)
    assert first.n_new is None
    shutil.copytree(demo_photos / "rocket", photos / "rocket")
    second = cluster_folder([photos], out=tmp_path / "out", k=3, workers=0)
    assert second.n_new == len(list((photos / "rocket").glob("*.jpg")))


def test_index_storage_is_the_feature_matrix_and_search_is_exact() -> None:
    rng = np.random.default_rng(0)
    feats = rng.random((500, 16), dtype=np.float32).astype(np.float16)
    index, storage = feature_index(len(feats), 16)
    storage[:] = feats  # what a run does: the store's rows go straight into the index
    queries = feats[[3, 77, 499]].astype(np.float32)
    dist, rows = index.search(queries, 5)
    exact = ((queries[:, None, :] - feats[None].astype(np.float32)) ** 2).sum(-1)
    assert (rows == np.argsort(exact, axis=1, kind="stable")[:, :5]).all()
    assert np.allclose(dist, np.sort(exact, axis=1)[:, :5], atol=1e-3)
    assert (index.reconstruct(77) == feats[77].astype(np.float32)).all()
    assert _build_index(feats).ntotal == 500


def test_assign_without_a_run_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="imgclust run"):
        assign_folder([tmp_path], tmp_path)


def test_centred_features_keep_the_collections_centre(demo_photos: Path, tmp_path: Path) -> None:
    # `--features embedding-centred`: new photos are centred on the clustered collection's
    # mean (saved with the clustering), not on their own: one query alone would otherwise
    # be centred to nothing, and a batch of new photos would move into another space.
    photos = tmp_path / "photos"
    for scene in SCENES[:3]:
        shutil.copytree(demo_photos / scene, photos / scene)
    out = tmp_path / "out"
    cluster_folder([photos], out=out, k=3, workers=0, features="embedding-centred")
    saved = load_clustering(out / ".imgclust")
    assert saved.feature_centre is not None and saved.feature_centre.shape == (1280,)
    original = next(p for p in saved.paths if "/chelsea/" in p)
    copy = tmp_path / "copy.jpg"
    shutil.copy(original, copy)
    found = find_similar(copy, out, n=2, device="cpu")
    assert found.neighbours[0].path == original and found.neighbours[0].distance < 1e-2
    new = tmp_path / "new"
    new.mkdir()
    shutil.copy(original, new / "a.jpg")
    result = assign_folder([new], out, workers=0)
    row = saved.paths.index(original)
    assert result.labels.tolist() == [saved.labels[row]]
    assert abs(float(result.distances[0]) - float(saved.distances[row])) < 1e-2


def test_assign_into_a_clustering_with_no_cluster_says_so(
    demo_photos: Path, tmp_path: Path
) -> None:
    """hdbscan on a few unlike photos finds no dense group: new photos join the unclustered,
    with no distance to a centre that is not there; a bracket in a name is printed as is."""
    from typer.testing import CliRunner

    from imgclust.cli import app

    photos, new, out = tmp_path / "photos", tmp_path / "new", tmp_path / "o[red]x"
    photos.mkdir(), new.mkdir()
    for i, scene in enumerate(SCENES[:3]):
        shutil.copy(sorted((demo_photos / scene).glob("*.jpg"))[0], photos / f"{i}.jpg")
    shutil.copy(sorted((demo_photos / SCENES[3]).glob("*.jpg"))[0], new / "IMG[1].jpg")
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(photos), "--out", str(out), "--algorithm", "hdbscan",
                              "--workers", "0", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["assign", str(new), "--into", str(out), "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert "1 new image added, unclustered: this clustering has no clusters" in res.output
    assert "assigned to existing clusters" not in res.output
    assert f"unclustered  {new / 'IMG[1].jpg'}" in res.output
    assert f"remembered in {out}:" in res.output and f"report: {out / 'index.html'}" in res.output
    assert _rows(out / "assignments.csv")[str(new / "IMG[1].jpg")]["cluster"] == "-1"


def test_a_photo_excluded_in_review_stays_excluded_whatever_its_file(
    demo_photos: Path, tmp_path: Path
) -> None:
    """assign reads rejected files again, but never one the review excluded: not when it
    is still there, nor when the scan now rejects it (a dangling link in its place)."""
    from imgclust.review.edits import EXCLUDED_REASON
    from imgclust.review.session import Review
    from imgclust.steps import output_folder

    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    for i, scene in enumerate(SCENES[:3]):
        shutil.copy(sorted((demo_photos / scene).glob("*.jpg"))[0], photos / f"{i}.jpg")
    cluster_folder([photos], out=out, k=2, workers=0)
    gone = str(photos / "0.jpg")
    with output_folder(out, "review", create=False) as marker:
        review = Review.open(marker)
        review.edit({"op": "exclude", "paths": [gone]}, seen=0)
        review.close()
    for state in ("there", "dangling"):
        if state == "dangling":
            os.unlink(gone)
            os.symlink(tmp_path / "nowhere", gone)
        result = assign_folder([photos], out, workers=0)
        assert result.paths == [] and gone not in [r.path for r in result.rejected]
        with open(out / "rejected.csv", newline="", encoding="utf-8") as fh:
            listed = [(r["path"], r["reason"]) for r in csv.DictReader(fh)]
        assert listed == [(gone, EXCLUDED_REASON)], state
        assert gone not in _rows(out / "assignments.csv")
