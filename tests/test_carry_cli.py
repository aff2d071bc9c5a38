"""Review edits carried into a later `imgclust run` of a grown folder, end to end through the
CLI: run, edit through the review session's API, add photos, run again, and read what the
exports, the summary, run.json and the review app then say."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgclust.cli import app
from imgclust.exceptions import InputError
from imgclust.review.edits import EXCLUDED_REASON, JOURNAL
from imgclust.review.session import Review

pytest.importorskip("starlette", reason="pip install 'imgclust[review]'")
from test_review import Session

runner = CliRunner()
SCENES = ("coffee", "chelsea", "rocket", "moon")


def _rows(out: Path, name: str) -> list[dict[str, str]]:
    with open(out / name, newline="") as fh:
        return list(csv.DictReader(fh))


def _cluster_of(out: Path, scene: str) -> int:
    labels = {int(r["cluster"]) for r in _rows(out, "assignments.csv") if f"/{scene}/" in r["path"]}
    assert len(labels) == 1, f"{scene} is one cluster in this run"
    return labels.pop()


def _run(photos: Path, out: Path, k: int) -> str:
    return _run_args(photos, out, "--k", str(k))


def _run_args(photos: Path, out: Path, *options: str) -> str:
    args = ["run", str(photos), "--out", str(out), *options, "--quiet", "--workers", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


@pytest.mark.slow
def test_names_merges_moves_and_exclusions_survive_a_run_on_a_grown_folder(
    demo_photos: Path, tmp_path: Path
) -> None:
    photos, out = tmp_path / "photos", tmp_path / "out"
    for scene in SCENES[:3]:
        shutil.copytree(demo_photos / scene, photos / scene)
    _run(photos, out, 3)
    coffee, cat, rocket = (_cluster_of(out, s) for s in SCENES[:3])
    rockets = sorted(str(p) for p in (photos / "rocket").glob("*.jpg"))
    cats = sorted(str(p) for p in (photos / "chelsea").glob("*.jpg"))

    s = Session(out)
    s.edit(op="rename", cluster=coffee, name="Morning coffee")
    s.edit(op="move", paths=rockets[:1], to=coffee)  # a rocket among the coffee, on purpose
    s.edit(op="exclude", paths=rockets[1:2])
    s.edit(op="unsort", paths=rockets[2:3])
    state = s.edit(op="merge", clusters=[cat, rocket], name="Cat and rocket")
    assert len(state["clusters"]) == 3  # two clusters and the unsorted group
    s.close()

    # The folder grows: a new scene, and two more coffee photos.
    shutil.copytree(demo_photos / "moon", photos / "moon")
    for src in sorted((demo_photos / "coffee").glob("*.jpg"))[:2]:
        shutil.copy(src, photos / "coffee" / f"again-{src.name}")
    text = _run(photos, out, 4)

    by_path = {r["path"]: r for r in _rows(out, "assignments.csv")}
    coffees = [r for p, r in by_path.items() if "/coffee/" in p]
    assert len(coffees) == 10 and {r["cluster_name"] for r in coffees} == {"Morning coffee"}
    named = coffees[0]["cluster"]
    assert by_path[rockets[0]]["cluster"] == named  # the moved photo stayed where it was put
    assert rockets[1] not in by_path  # excluded, still
    assert {"path": rockets[1], "reason": EXCLUDED_REASON} in _rows(out, "rejected.csv")
    assert by_path[rockets[2]]["cluster"] == "-2"
    assert by_path[rockets[2]]["cluster_name"] == "unsorted"
    merged = {by_path[p]["cluster"] for p in [*cats, *rockets[3:]]}
    assert len(merged) == 1 and by_path[cats[0]]["cluster_name"] == "Cat and rocket"
    moons = {by_path[p]["cluster"] for p in by_path if "/moon/" in p}
    assert len(moons) == 1 and moons != merged and moons != {named}
    clusters = {r["name"]: r for r in _rows(out, "clusters.csv")}
    assert {"Morning coffee", "Cat and rocket", "unsorted"} <= set(clusters)
    assert clusters["unsorted"]["cluster"] == "-2" and clusters["unsorted"]["size"] == "1"

    # The summary says what carried over; run.json keeps the same notes.
    assert "review edits carried over: 5 of 5" in text
    assert f"renamed 'Morning coffee' carried to cluster {named} (8 of 8 photos shared)" in text
    assert "merge of 2 clusters carried" in text
    info = json.loads((out / ".imgclust" / "run.json").read_text())
    assert info["n_unsorted"] == 1 and info["n_unclustered"] == 0
    notes = info["notes"]
    assert any(n.startswith("1 photo excluded stays excluded") for n in notes)

    # The static report shows it; the review opens on the carried state, each edit undoable.
    index = (out / "index.html").read_text("utf-8")
    assert "Morning coffee" in index and "unsorted" in index
    assert len(list((out / ".imgclust").glob("edits-*.jsonl"))) == 1  # the old journal, kept
    again = Session(out)
    state = again.state()
    assert state["version"] == 5 and state["can_undo"]
    assert "5 of these edits were carried over by `imgclust run`" in " ".join(state["notes"])
    assert {"Morning coffee", "Cat and rocket", "unsorted"} <= {
        c["name"] for c in state["clusters"]
    }
    for _ in range(5):
        state = again.edit(op="undo")
    assert not state["can_undo"] and "Morning coffee" not in {c["name"] for c in state["clusters"]}
    for _ in range(5):
        state = again.edit(op="redo")
    again.close()
    lines = (out / ".imgclust" / JOURNAL).read_text("utf-8").splitlines()
    assert len(lines) == 1 + 5 + 5 + 5

    # --refine splits a cluster of what OUT shows (the carried state): the excluded photo
    # stays out and the names stay; the next plain run still keeps the photo excluded.
    s = Session(out)
    s.edit(op="rename", cluster=int(named), name="Coffee and a rocket")
    s.close()
    refined = _run_args(photos, out, "--refine", named)
    assert "renamed 'Coffee and a rocket' carried" in refined
    assert "1 photo excluded stays excluded" in refined
    assert rockets[1] not in {r["path"] for r in _rows(out, "assignments.csv")}
    again = Session(out)
    assert again.state()["version"] >= 1  # the carried journal, not a fresh one
    again.close()
    plain = _run(photos, out, 4)
    # (the refined run holds it as excluded, so the review's new base does: carried first)
    assert "from before the review's journal: 1 photo excluded stays excluded" in plain
    assert rockets[1] not in {r["path"] for r in _rows(out, "assignments.csv")}
    assert "Cat and rocket" in {r["name"] for r in _rows(out, "clusters.csv")}


@pytest.mark.parametrize(
    "damage",
    ["torn-header", "bad-line", "bad-record", "bad-move-name", "bad-first-record",
     "bad-last-line", "undone"],
)  # fmt: skip
def test_a_damaged_journal_carries_what_comes_before_the_damage_and_says_so(
    demo_photos: Path, tmp_path: Path, damage: str
) -> None:
    """A journal damaged on disk, or holding a record that cannot be replayed, never drops
    its edits silently: those before the damage carry, the run says where it stopped, and
    the journal's bytes are kept."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    for scene in SCENES[:3]:
        shutil.copytree(demo_photos / scene, photos / scene)
    _run(photos, out, 3)
    coffee, cat, rocket = (_cluster_of(out, s) for s in SCENES[:3])
    s = Session(out)
    for cluster, name in ((coffee, "Coffee"), (cat, "Cat"), (rocket, "Rocket")):
        s.edit(op="rename", cluster=cluster, name=name)
    s.close()
    journal = out / ".imgclust" / JOURNAL
    lines = journal.read_bytes().split(b"\n")  # header, 3 records, ""
    bad = json.dumps({"op": "rename", "cluster": 77, "name": "Nowhere"}).encode()
    if damage == "torn-header":
        journal.write_bytes(lines[0][:30])
    elif damage == "bad-line":
        journal.write_bytes(b"\n".join([lines[0], lines[1], b"{not json", *lines[3:]]))
    elif damage == "bad-record":
        journal.write_bytes(b"\n".join([lines[0], lines[1], bad, *lines[3:]]))
    elif damage == "bad-move-name":  # (journalled by a version that let any name through)
        photo = _rows(out, "assignments.csv")[0]["path"]
        move = {"op": "move", "paths": [photo], "to": "new", "name": 5}
        journal.write_bytes(b"\n".join([lines[0], lines[1], json.dumps(move).encode(), *lines[3:]]))
    elif damage == "bad-first-record":
        journal.write_bytes(b"\n".join([lines[0], bad, *lines[2:]]))
    elif damage == "bad-last-line":  # a whole line, but no record (JSON, not an object)
        journal.write_bytes(journal.read_bytes() + b"[1]\n")
        with pytest.raises(InputError, match="damaged at line 5"):
            Review.open(out / ".imgclust")  # (never opened, to append after it)
    else:  # the edits before the damage were undone: none is in effect
        undo = json.dumps({"op": "undo"}).encode()
        journal.write_bytes(b"\n".join([lines[0], lines[1], undo, b"garbage", *lines[2:]]))
    damaged = journal.read_bytes()

    text = _run(photos, out, 3)
    names = {r["name"] for r in _rows(out, "clusters.csv")}
    kept = [p.read_bytes() for p in (out / ".imgclust").glob("edits*.jsonl")]
    assert damaged in kept  # the journal as it was: in place, or set aside beside it
    if damage == "torn-header":
        assert "review edits not carried" in text and "header line is cut short" in text
        assert not names & {"Coffee", "Cat", "Rocket"}
        return
    if damage == "bad-first-record":
        assert "record 1 cannot be replayed" in text and "no edit is carried" in text
        assert not names & {"Coffee", "Cat", "Rocket"}
        return
    if damage == "undone":
        assert "line 4 is damaged; no edit is carried (none before it is in effect)" in text
        assert "left as it is" in text and "edits-<time>" not in text
        assert journal.read_bytes() == damaged
        return
    if damage == "bad-last-line":
        assert "line 5 is damaged" in text and "review edits carried over: 3 of 3" in text
        assert {"Coffee", "Cat", "Rocket"} <= names
        return
    where = "line 3 is damaged" if damage == "bad-line" else "record 2 cannot be replayed"
    assert where in text and "the edits from there on are not carried" in text
    assert "review edits carried over: 1 of 1" in text
    assert "Coffee" in names and not names & {"Cat", "Rocket", "Nowhere"}
    again = Session(out)  # the review opens on what was carried
    assert again.state()["version"] == 1
    again.close()
