"""`imgclust review`: edits through the HTTP API, the journal, persistence and what follows.

Most tests use a small synthetic output folder (real JPEGs, made-up features in three
well-separated clusters) written the way a run writes one; the last ones use a real run of
the demo photos, so ``assign`` and ``similar`` can be checked to follow an edit.
"""

from __future__ import annotations

import csv
import json
import shutil
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from imgclust.clustering import Clustering
from imgclust.describe import ClusterSummary, ClusterTree, ImageTopClasses
from imgclust.describe.groups import build_linkage, first_parents
from imgclust.models import imagenet_class_names
from imgclust.report import write_exports, write_report
from imgclust.state import feature_index, load_clustering, read_index, save_clustering
from imgclust.steps import output_folder

pytest.importorskip("starlette", reason="pip install 'imgclust[review]'")
from starlette.testclient import TestClient

from imgclust.review import EditError, Review
from imgclust.review.app import create_app
from imgclust.review.edits import EXCLUDED_REASON, JOURNAL, MAX_NAME, Editor, clean_name

PORT = 8765  # the port the TestClient's requests name (nothing listens on it)
BASE = f"http://127.0.0.1:{PORT}"
ORIGIN = {"origin": BASE}
NAMES = ("red things", "green things", "blue things")
COLOURS = ((200, 30, 30), (30, 200, 30), (30, 30, 200))
SIZES = (12, 10, 8)


def make_out(root: Path) -> tuple[Path, np.ndarray]:
    """A synthetic output folder: 30 small JPEGs in 3 clusters (12, 10, 8) of 16-d features,
    saved, exported and reported as a run would. Returns it and the features."""
    rng = np.random.default_rng(0)
    photos, out = root / "photos", root / "out"
    photos.mkdir(parents=True)
    centres = np.eye(3, 16, dtype=np.float32) * 4
    labels = np.repeat(np.arange(3), SIZES)
    feats = (centres[labels] + rng.normal(scale=0.3, size=(len(labels), 16))).astype(np.float16)
    paths = []
    for i, lab in enumerate(labels):
        p = photos / f"{['red', 'green', 'blue'][lab]}-{i:02d}.jpg"
        colour = tuple(min(255, c + int(rng.integers(0, 40))) for c in COLOURS[lab])
        Image.new("RGB", (40, 30), colour).save(p)
        paths.append(str(p))
    distances = np.linalg.norm(feats.astype(np.float32) - centres[labels], axis=1)
    class_ids = np.array([[lab * 10, lab * 10 + 1, 500] for lab in labels])
    scores = np.tile(np.array([0.6, 0.2, 0.1], np.float32), (len(labels), 1))
    tops = ImageTopClasses(class_ids, scores, imagenet_class_names())
    clusters = []
    for cid, name in enumerate(NAMES):
        idx = np.flatnonzero(labels == cid)
        idx = idx[np.argsort(distances[idx], kind="stable")]
        top = ((imagenet_class_names()[cid * 10], 0.6),)
        clusters.append(ClusterSummary(cid, name, top, idx, distances[idx], int(idx[0])))
    ranks = np.empty(len(labels), np.int64)
    for c in clusters:
        ranks[c.members] = np.arange(c.size)
    link = build_linkage(centres, method="ward")
    tree = ClusterTree(link, np.array([0, 0, 1]), first_parents(link, 3), ["warm", "cold"])
    clustering = Clustering(
        paths=paths, labels=labels, ranks=ranks, distances=distances.astype(np.float32),
        image_top_classes=tops, clusters=clusters, rejected=[], model="efficientnet_lite0",
        features="embedding", outliers=np.zeros(len(labels), bool),
        duplicate_of=np.full(len(labels), -1), store_dir=str(out / ".imgclust" / "store"),
        centroids=centres, fences=np.full(3, np.inf, np.float32), tree=tree,
    )  # fmt: skip
    with output_folder(out, "run") as marker:
        index, storage = feature_index(len(paths), 16)
        storage[:] = feats
        save_clustering(marker, clustering, index)
        write_exports(out, clustering)
        write_report(out, clustering, clustering.report, workers=0)
    return out, feats.astype(np.float32)


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[Path, np.ndarray]:
    return make_out(tmp_path)


class Session:
    """A review of ``out`` behind the app, as the server runs it (lock held), via TestClient."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._lock = output_folder(out, "review", create=False)
        marker = self._lock.__enter__()
        self.review = Review.open(marker)
        self.client = TestClient(create_app(self.review, token="t0k", port=PORT), base_url=BASE)
        assert self.client.get("/?token=t0k").status_code == 200  # the cookie is set

    def state(self) -> dict[str, Any]:
        return self.client.get("/api/state").json()

    def edit(self, status: int = 200, **body: Any) -> dict[str, Any]:
        body.setdefault("seen", self.review.version)
        r = self.client.post("/api/edit", json=body, headers=ORIGIN)
        assert r.status_code == status, r.text
        return r.json()

    def cluster_of(self, name: str) -> dict[str, Any]:
        return next(c for c in self.state()["clusters"] if c["name"] == name)

    def close(self) -> None:
        if self.review is not None:
            self.review.close()  # writes the last state
            self._lock.__exit__(None, None, None)
            self.review = None  # type: ignore[assignment]


@pytest.fixture
def session(synthetic: tuple[Path, np.ndarray]) -> Iterator[Session]:
    s = Session(synthetic[0])
    yield s
    s.close()


def rows(out: Path, name: str = "assignments.csv") -> list[dict[str, str]]:
    with open(out / name, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def by_path(out: Path) -> dict[str, dict[str, str]]:
    return {r["path"]: r for r in rows(out)}


def photos_of(out: Path, colour: str) -> list[str]:
    return sorted(p for p in by_path(out) if Path(p).name.startswith(colour))


def test_rename_reaches_every_output_and_survives_a_restart(
    synthetic: tuple[Path, np.ndarray],
) -> None:
    session = Session(synthetic[0])
    red = session.cluster_of("red things")["id"]
    state = session.edit(op="rename", cluster=red, name="Lisbon trip")
    assert state["clusters"][red]["name"] == "Lisbon trip" and state["version"] == 1
    session.review.publish()
    out = session.out
    assert {r["cluster_name"] for r in rows(out) if r["cluster"] == str(red)} == {"Lisbon trip"}
    assert [r["name"] for r in rows(out, "clusters.csv")][red] == "Lisbon trip"
    assert "Lisbon trip" in (out / "index.html").read_text("utf-8")
    assert load_clustering(out / ".imgclust").names[red] == "Lisbon trip"
    session.close()
    again = Session(out)  # a new app on the same folder
    assert again.state()["clusters"][red]["name"] == "Lisbon trip"
    assert again.state()["version"] == 1 and again.state()["can_undo"]
    again.close()


def test_merge_recomputes_the_centroid_from_the_members(
    session: Session, synthetic: tuple[Path, np.ndarray]
) -> None:
    out, feats = synthetic
    state = session.edit(op="merge", clusters=[1, 2])
    assert [c["size"] for c in state["clusters"]] == [12, 18]
    assert state["clusters"][1]["name"] == "green things"  # the larger keeps its name
    session.review.publish()
    saved = load_clustering(out / ".imgclust")
    members = np.flatnonzero(saved.labels == 1)
    np.testing.assert_allclose(saved.centroids[1], feats[members].mean(axis=0), atol=1e-5)
    dist = np.linalg.norm(feats[members] - saved.centroids[1], axis=1)
    np.testing.assert_allclose(saved.distances[members], dist, atol=1e-5)
    assert saved.tree is not None and list(saved.tree.groups) == [0, 0]
    assert {r["cluster"] for r in rows(out)} == {"0", "1"}
    assert len(rows(out, "clusters.csv")) == 2
    assert "cluster-2-1.html" not in {p.name for p in out.iterdir()}  # stale page removed


def test_move_unsort_exclude_undo_redo_persist(synthetic: tuple[Path, np.ndarray]) -> None:
    out = synthetic[0]
    session = Session(out)
    red, blue = photos_of(out, "red"), photos_of(out, "blue")
    session.edit(op="move", paths=red[:3], to=2)
    session.edit(op="move", paths=red[3:5], to="new", name="odd ones")
    session.edit(op="unsort", paths=[blue[0]])
    state = session.edit(op="exclude", paths=[blue[1]])
    assert [c["size"] for c in state["clusters"]] == [7, 10, 9, 2, 1]
    assert [c["name"] for c in state["clusters"]][3:] == ["odd ones", "unsorted"]
    session.review.publish()
    now = by_path(out)
    assert all(now[p]["cluster"] == "2" for p in red[:3])
    assert {now[p]["cluster_name"] for p in red[3:5]} == {"odd ones"}
    assert now[blue[0]]["cluster"] == "-2" and now[blue[0]]["cluster_name"] == "unsorted"
    assert blue[1] not in now
    assert rows(out, "rejected.csv") == [{"path": blue[1], "reason": EXCLUDED_REASON}]
    saved = load_clustering(out / ".imgclust")
    assert blue[1] not in saved.paths and len(saved.paths) == 29
    assert read_index(out / ".imgclust", 29, saved=saved).ntotal == 29  # written, not rebuilt
    # The photo page serves only the clustering's photos: the excluded one is gone.
    assert session.client.get("/photo", params={"path": blue[1]}).status_code == 404
    assert session.client.get("/photo", params={"path": blue[0]}).status_code == 200

    state = session.edit(op="undo")
    state = session.edit(op="undo")
    assert [c["size"] for c in state["clusters"]] == [7, 10, 11, 2] and state["can_redo"]
    state = session.edit(op="redo")
    assert state["clusters"][-1] == {**state["clusters"][-1], "id": -2, "size": 1}
    session.review.publish()
    assert by_path(out)[blue[0]]["cluster"] == "-2" and blue[1] in by_path(out)
    assert len(load_clustering(out / ".imgclust").paths) == 30
    html = (out / "index.html").read_text("utf-8")
    assert "odd ones" in html
    session.close()
    again = Session(out)
    assert again.state()["clusters"] == state["clusters"]
    assert again.state()["version"] == 7 and again.state()["can_redo"]
    again.edit(op="redo")
    again.review.publish()
    assert blue[1] not in by_path(out)
    again.close()


def test_split_in_two_and_search(session: Session) -> None:
    out = session.out
    session.edit(op="merge", clusters=[0, 2])  # red + blue: two clear halves
    state = session.edit(op="split", cluster=0, k=2)
    assert sorted(c["size"] for c in state["clusters"]) == [8, 10, 12]
    session.review.publish()
    groups = {}
    for r in rows(out):
        groups.setdefault(r["cluster"], set()).add(Path(r["path"]).name.split("-")[0])
    assert sorted(map(sorted, groups.values())) == [["blue"], ["green"], ["red"]]
    found = session.client.get("/api/search", params={"q": "green-1"}).json()
    assert {Path(p["path"]).name for p in found["photos"]} == {
        f"green-{i:02d}.jpg" for i in range(12, 20)
    }
    assert session.client.get("/api/search", params={"q": "GREEN th"}).json()["clusters"] == [1]
    cls = imagenet_class_names()[10].split(",")[0].lower()  # green's top class
    assert 1 in session.client.get("/api/search", params={"q": cls}).json()["clusters"]


def test_bad_and_stale_edits_are_refused_and_not_journalled(session: Session) -> None:
    session.edit(400, op="rename", cluster=9, name="x")
    session.edit(400, op="move", paths=["/etc/passwd"], to=0)
    session.edit(400, op="merge", clusters=[0])
    session.edit(400, op="undo")
    session.edit(400, op="frobnicate")
    # Malformed values are said for what they are, never as a Python error.
    for body, said in [
        ({"op": "merge", "clusters": None}, "a list of two cluster ids"),
        ({"op": "merge", "clusters": "0,1"}, "a list of two cluster ids"),
        ({"op": "rename", "cluster": 0, "name": 123}, "a cluster's name is text, not 123"),
        ({"op": "rename", "cluster": 0, "name": "\n\x00 "}, "name cannot be empty"),
        ({"op": "split", "cluster": 0, "k": 100}, "split it in"),
    ]:
        error = session.edit(400, **body)["error"]
        assert said in error and "Error(" not in error, error
    session.edit(op="rename", cluster=0, name="first")
    stale = session.edit(409, op="rename", cluster=1, name="second", seen=0)  # another tab
    assert "reload" in stale["error"] and stale["version"] == 1
    assert session.state()["clusters"][1]["name"] == "green things"
    lines = (session.out / ".imgclust" / JOURNAL).read_text("utf-8").splitlines()
    assert [json.loads(line).get("op") for line in lines[1:]] == ["rename"]
    missing = session.client.get("/api/cluster/x")
    assert missing.status_code == 404 and missing.json()["error"] == "no cluster 'x'"


def test_a_name_is_one_line_of_text(session: Session, synthetic: tuple[Path, np.ndarray]) -> None:
    """Line breaks, NUL and the C1 controls in a name given in review (a rename, or a move
    to a new cluster) become spaces: never raw in the CSVs or a terminal."""
    session.edit(op="rename", cluster=0, name=" two\nlines\x00 and\ttab\x9b ")
    assert session.state()["clusters"][0]["name"] == "two lines and tab"
    red = photos_of(synthetic[0], "red")
    session.edit(op="move", paths=red[:1], to="new", name="evil\nline\x00two" + "x" * 500)
    named = session.state()["clusters"][-1]["name"]
    assert named.startswith("evil line two") and len(named) == MAX_NAME
    for bad, said in [(5, "a cluster's name is text, not 5"), ("\x1b\n", "cannot be empty")]:
        error = session.edit(400, op="move", paths=red[1:2], to="new", name=bad)["error"]
        assert said in error, error
    session.edit(op="move", paths=red[1:2], to="new", name="")  # (no name: its classes')
    # JSON carries lone surrogates (as json.dumps writes them, ASCII escapes)
    edit = {"op": "rename", "cluster": 0, "name": "a\ud800b", "seen": session.review.version}
    body = json.dumps(edit).encode()
    headers = {**ORIGIN, "content-type": "application/json"}
    sent = session.client.post("/api/edit", content=body, headers=headers)
    assert sent.status_code == 200, sent.text
    assert session.state()["clusters"][0]["name"] == "a\ufffdb"


@given(st.text(st.characters(codec=None, exclude_categories=[]), max_size=300))
def test_a_kept_name_is_one_short_line(name: str) -> None:
    """Any text (lone surrogates too, which JSON carries): a name every file takes."""
    try:
        kept = clean_name(name)
    except EditError:
        assert not "".join(ch for ch in name if unicodedata.category(ch)[0] not in "CZ")
        return
    assert 0 < len(kept) <= MAX_NAME and kept == kept.strip() and "  " not in kept
    assert not any(unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cs") for ch in kept)
    kept.encode("utf-8")  # (the CSVs, the report, the review's JSON)


def test_the_history_counts_each_photo_once(
    session: Session, synthetic: tuple[Path, np.ndarray]
) -> None:
    red = photos_of(synthetic[0], "red")
    session.edit(op="exclude", paths=[red[0], red[0]])
    assert session.state()["history"][-1] == "exclude 1 photo"


def test_a_kill_mid_write_loses_at_most_that_edit(synthetic: tuple[Path, np.ndarray]) -> None:
    out = synthetic[0]
    s = Session(out)
    s.edit(op="rename", cluster=0, name="kept")
    s.review.publish()
    s.close()
    journal = out / ".imgclust" / JOURNAL
    # Killed after an edit was journalled but before the outputs caught up, then killed
    # again half-way through writing the next record.
    with open(journal, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"op": "rename", "cluster": 1, "name": "journalled"}) + "\n")
        fh.write('{"op": "rename", "clus')
    s = Session(out)
    assert [c["name"] for c in s.state()["clusters"]] == ["kept", "journalled", "blue things"]
    assert "written again" in " ".join(s.review.notes)
    s.review.publish()
    assert load_clustering(out / ".imgclust").names[1] == "journalled"
    s.edit(op="rename", cluster=2, name="after")  # the torn line is cut, the journal whole
    s.close()
    lines = journal.read_text("utf-8").splitlines()
    assert [json.loads(line).get("name") for line in lines[1:]] == ["kept", "journalled", "after"]


def test_a_rewrite_since_the_review_carries_the_edits_onto_it(
    synthetic: tuple[Path, np.ndarray],
) -> None:
    out, feats = synthetic
    s = Session(out)
    s.edit(op="merge", clusters=[0, 1])
    s.close()
    s = Session(out)  # nothing else wrote the folder: the journal stands
    assert s.state()["version"] == 1 and len(s.state()["clusters"]) == 2
    s.close()
    # Another command (as `assign` does; a run carries the edits itself) rewrites the
    # folder: three clusters again, one photo elsewhere.
    base = load_clustering(out / ".imgclust" / "review-base")
    editor = Editor(base, feats)
    moved = editor.apply(editor.initial, {"op": "move", "paths": [base.paths[0]], "to": 1})
    with output_folder(out, "run", create=False) as marker:
        index = read_index(marker, len(base.paths), saved=base)
        save_clustering(marker, editor.clustering(moved), index)
    s = Session(out)  # the merge is carried onto the folder as it is now, and undoable
    state = s.state()
    assert state["version"] == 1 and [c["size"] for c in state["clusters"]] == [22, 8]
    notes = " ".join(s.review.notes)
    assert "rewritten since the last review" in notes and "merge of 2 clusters carried" in notes
    assert [c["size"] for c in s.edit(op="undo")["clusters"]] == [11, 11, 8]
    s.close()
    assert len(list((out / ".imgclust").glob("edits-*.jsonl"))) == 1


def test_editor_refuses_what_it_cannot_do(synthetic: tuple[Path, np.ndarray]) -> None:
    with output_folder(synthetic[0], "review", create=False) as marker:
        review = Review.open(marker)
        assert review.current.k == 3
        with pytest.raises(EditError, match="nothing to split"):
            red = photos_of(synthetic[0], "red")
            review.edit({"op": "move", "paths": red[1:], "to": 1}, seen=0)
            review.edit({"op": "split", "cluster": 0}, seen=1)
        with pytest.raises(EditError, match="not a photo"):
            review.edit({"op": "exclude", "paths": ["nope.jpg"]}, seen=1)
        review.close()


# -- a real run: assign and similar follow the edits ---------------------------------------

SCENES = ("coffee", "chelsea", "rocket")


@pytest.fixture(scope="module")
def real_run(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from imgclust import cluster_folder

    photos = tmp_path_factory.mktemp("real") / "photos"
    for scene in SCENES:
        shutil.copytree(demo_photos / scene, photos / scene)
    out = tmp_path_factory.mktemp("real-out")
    cluster_folder([photos], out=out, k=len(SCENES), workers=0)
    return out


def _cluster_of_scene(saved: Clustering, scene: str) -> int:
    labels = [
        int(lab) for p, lab in zip(saved.paths, saved.labels, strict=True) if f"/{scene}/" in p
    ]
    assert len(set(labels)) == 1, "each scene is one cluster in this run"
    return labels[0]


@pytest.mark.slow
def test_assign_and_similar_follow_the_edits(real_run: Path, tmp_path: Path) -> None:
    from PIL import ImageOps

    from imgclust.assign import assign_folder
    from imgclust.export import plan_export
    from imgclust.similar import find_similar

    saved = load_clustering(real_run / ".imgclust")
    coffee, cat = _cluster_of_scene(saved, "coffee"), _cluster_of_scene(saved, "chelsea")
    rockets = [p for p in saved.paths if "/rocket/" in p]
    moved, unsorted = rockets[0], rockets[-1]
    s = Session(real_run)
    s.edit(op="rename", cluster=coffee, name="Morning coffee")
    s.edit(op="move", paths=[moved], to=cat)
    s.edit(op="unsort", paths=[unsorted])
    s.close()  # publishes, releases the lock

    near = find_similar(Path(rockets[1]), real_run, n=len(rockets) - 1)  # its own scene
    it = next(nb for nb in near.neighbours if nb.path == moved)
    assert it.cluster == cat and it.cluster_name == saved.names[cat]
    it = next(nb for nb in near.neighbours if nb.path == unsorted)
    assert it.cluster == -2 and it.cluster_name == "unsorted"
    others = {nb.cluster for nb in near.neighbours if nb.path not in (moved, unsorted)}
    assert others == {_cluster_of_scene(saved, "rocket")}
    plan = plan_export(real_run, tmp_path / "export")  # an "unsorted" folder of its own
    assert {Path(st.target).parent.name for st in plan.steps if st.source == unsorted} == {
        "-02 unsorted"
    }
    src = next(p for p in saved.paths if "/coffee/" in p)
    ImageOps.mirror(Image.open(src)).save(tmp_path / "new-coffee.jpg", quality=85)
    result = assign_folder([tmp_path], real_run, workers=0)
    assert result.names[int(result.labels[0])] == "Morning coffee"
    row = by_path(real_run)[str(tmp_path / "new-coffee.jpg")]
    assert row["cluster_name"] == "Morning coffee"
    assert by_path(real_run)[moved]["cluster"] == str(cat)  # assign kept the edit
    # assign rewrote the folder: the next review carries the edits onto it (undoable, and
    # carried on by a later run), the old journal kept.
    s = Session(real_run)
    state = s.state()
    assert state["version"] == 3 and state["n_photos"] == len(saved.paths) + 1
    assert state["clusters"][coffee]["name"] == "Morning coffee" and state["can_undo"]
    s.close()


def test_without_starlette_it_says_how_to_install(
    synthetic: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from imgclust.exceptions import ConfigError
    from imgclust.review.app import ReviewServer

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # an import of it fails
    with pytest.raises(ConfigError, match=r"pip install 'imgclust\[review\]'"):
        ReviewServer(synthetic[0])
    assert not (synthetic[0] / ".imgclust" / JOURNAL).exists()  # refused before anything


def test_a_kill_between_the_index_and_model_npz_is_repaired(
    synthetic: tuple[Path, np.ndarray],
) -> None:
    out = synthetic[0]
    blue = photos_of(out, "blue")
    s = Session(out)
    s.edit(op="exclude", paths=blue[:2])
    s.edit(op="undo")
    s.close()
    # As if killed after writing a 28-row index.faiss for the exclusion, before model.npz.
    marker = out / ".imgclust"
    saved = load_clustering(marker)
    index, storage = feature_index(28, 16)
    storage[:] = synthetic[1][:28]
    from imgclust.state import write_index

    write_index(marker, index)
    s = Session(out)
    assert "written again" in " ".join(s.review.notes)
    s.close()
    again = load_clustering(marker)
    assert again.paths == saved.paths
    assert read_index(marker, 30, saved=again).ntotal == 30  # checked against its CRC
    assert again.index_crc32 is not None


def test_unsorted_is_its_own_group_in_the_index_and_the_exports(
    synthetic: tuple[Path, np.ndarray],
) -> None:
    out = synthetic[0]
    s = Session(out)
    s.edit(op="unsort", paths=photos_of(out, "blue")[:2])
    s.close()
    clusters = {r["name"]: r for r in rows(out, "clusters.csv")}
    assert clusters["unsorted"]["cluster"] == "-2" and clusters["unsorted"]["size"] == "2"
    assert clusters["unsorted"]["group_name"] == "unsorted"
    html = (out / "index.html").read_text("utf-8")
    assert "unsorted" in html and "unclustered" not in html  # no HDBSCAN noise here
    assert (out / "cluster--2-1.html").is_file()
    saved = load_clustering(out / ".imgclust")  # assign and similar read it as it is
    assert saved.cluster_name(-2) == "unsorted" and saved.k == 3
    s = Session(out)
    s.edit(op="undo")
    s.close()
    assert not (out / "cluster--2-1.html").exists()  # a stale page is removed


@pytest.mark.slow
def test_moved_photos_land_on_their_new_clusters_map_disc(
    demo_photos: Path, tmp_path: Path
) -> None:
    from PIL import ImageOps

    from imgclust import cluster_folder
    from imgclust.assign import assign_folder

    photos = tmp_path / "photos"
    for scene in SCENES:
        shutil.copytree(demo_photos / scene, photos / scene)
    out = tmp_path / "out"
    cluster_folder([photos], out=out, k=len(SCENES), workers=0)
    saved = load_clustering(out / ".imgclust")
    assert saved.layout is not None and saved.coords is not None
    coffee, cat, rocket = (_cluster_of_scene(saved, s) for s in SCENES)
    moved = next(p for p in saved.paths if "/rocket/" in p)

    def disc_distance(path: str, disc: int) -> float:
        row = by_path(out)[path]
        centre = saved.layout.centres[disc]
        return float(np.hypot(float(row["x"]) - centre[0], float(row["y"]) - centre[1]))

    assert disc_distance(moved, rocket) <= saved.layout.radii[rocket] + 1
    s = Session(out)
    s.edit(op="move", paths=[moved], to=coffee)
    s.close()
    # Near coffee's disc now (settle may push it a few cells out of a full disc).
    assert disc_distance(moved, coffee) <= saved.layout.radii[coffee] + 3
    assert disc_distance(moved, rocket) > saved.layout.radii[rocket] + 2

    # A merge renumbers the clusters: the saved layout follows, so assign still places a
    # new rocket photo on the rocket disc.
    s = Session(out)
    s.edit(op="merge", clusters=[coffee, cat])
    s.close()
    edited = load_clustering(out / ".imgclust")
    assert edited.k == 2 and edited.layout is not None and len(edited.layout.radii) == 2
    src = next(p for p in saved.paths if "/rocket/" in p and p != moved)
    new = tmp_path / "new"
    new.mkdir()
    ImageOps.mirror(Image.open(src)).save(new / "new-rocket.jpg", quality=90)
    assign_folder([new], out, workers=0)
    assert disc_distance(str(new / "new-rocket.jpg"), rocket) <= saved.layout.radii[rocket] + 3


def test_a_run_killed_before_its_model_npz_is_finished_by_the_review(
    synthetic: tuple[Path, np.ndarray],
) -> None:
    from imgclust.review.carry import carry_review, save_carried

    out, feats = synthetic
    s = Session(out)
    s.edit(op="rename", cluster=2, name="kept name")
    s.close()
    marker = out / ".imgclust"
    base = load_clustering(marker / "review-base")
    editor = Editor(base, feats)  # a run that clusters one photo elsewhere
    run = editor.clustering(
        editor.apply(editor.initial, {"op": "move", "paths": [base.paths[0]], "to": 1})
    )
    before = (marker / "model.npz").read_bytes()
    carry = carry_review(marker, run, feats)
    assert carry is not None and carry.carried is not None
    with output_folder(out, "run", create=False) as m:
        save_carried(m, carry.carried, read_index(marker / "review-base", 30, saved=base))
    assert load_clustering(marker).names[2] == "kept name"
    (marker / "model.npz").write_bytes(before)  # as if killed just before its last write
    s = Session(out)
    assert "stopped before saving its clustering" in " ".join(s.review.notes)
    assert s.state()["clusters"][2]["name"] == "kept name" and s.state()["can_undo"]
    s.close()
    saved = load_clustering(marker)
    assert saved.names[2] == "kept name"
    assert read_index(marker, 30, saved=saved).ntotal == 30  # written, checked by its CRC
    s = Session(out)  # and now it is the journal's state, as after any finished run
    assert "stopped before" not in " ".join(s.review.notes) and s.state()["version"] == 1
    s.close()


@pytest.mark.parametrize("port", ["-1", "65536", "99999", "http"])
def test_a_port_that_cannot_be_one_is_an_option_error(tmp_path: Path, port: str) -> None:
    """`review --port` outside 0-65535 is the option's error (exit 2), not a crash report."""
    from typer.testing import CliRunner

    from imgclust.cli import app

    res = CliRunner().invoke(app, ["review", str(tmp_path), "--port", port, "--no-browser"])
    assert res.exit_code == 2, res.output
    assert "Invalid value for '--port'" in res.output and "unexpectedly" not in res.output


def test_a_port_in_use_is_refused_before_the_review_writes_anything(
    synthetic: tuple[Path, np.ndarray],
) -> None:
    import socket

    from typer.testing import CliRunner

    from imgclust.cli import app

    out = synthetic[0]
    marker = out / ".imgclust"
    before = sorted(p.name for p in marker.iterdir())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        res = CliRunner().invoke(app, ["review", str(out), "--port", port, "--no-browser"])
    assert res.exit_code != 0 and "Traceback" not in res.output, res.output
    assert port in res.output
    assert sorted(p.name for p in marker.iterdir()) == before  # no journal, no review base
