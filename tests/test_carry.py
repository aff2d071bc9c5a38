"""Carrying review edits onto a later run (:mod:`imgclust.review.carry`): the matching and
the translation of every edit, on made-up clusterings (well-separated 8-d clusters, each
photo a path), swept with hypothesis over how the folder changed between the two runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgclust.clustering import Clustering, regroup
from imgclust.describe import ClusterSummary, ImageTopClasses
from imgclust.models import imagenet_class_names
from imgclust.review import Review
from imgclust.review.carry import Matcher, carry_edits
from imgclust.review.edits import EXCLUDED, UNSORTED, Editor, Journal, state_fingerprint

D = 8
CENTRES = np.eye(6, D, dtype=np.float32) * 4


def clustering(
    paths: list[str], truth: np.ndarray, seed: int, perm: np.ndarray
) -> tuple[Clustering, np.ndarray]:
    """A run's clustering of ``paths`` whose true groups are ``truth``: features around
    ``CENTRES[truth]``, cluster ids ``perm[truth]`` (renumbered densely)."""
    rng = np.random.default_rng(seed)
    feats = (CENTRES[truth] + rng.normal(scale=0.3, size=(len(truth), D))).astype(np.float16)
    used = sorted({int(perm[t]) for t in truth})
    dense = {c: i for i, c in enumerate(used)}
    labels = np.array([dense[int(perm[t])] for t in truth], np.int64)
    k = len(used)
    f32 = feats.astype(np.float32)
    centroids = np.stack([f32[labels == c].mean(axis=0) for c in range(k)]).astype(np.float32)
    distances = np.linalg.norm(f32 - centroids[labels], axis=1).astype(np.float32)
    truth_of = {dense[int(perm[t])]: int(t) for t in truth}
    names = imagenet_class_names()
    ids = np.array([[truth_of[int(c)] * 10, 500, 501] for c in labels], np.int64)
    tops = ImageTopClasses(ids, np.tile(np.float32([0.6, 0.2, 0.1]), (len(labels), 1)), names)
    template = [
        ClusterSummary(c, f"auto {truth_of[c]}", ((names[truth_of[c] * 10], 0.6),),
                       np.zeros(0, np.int64), np.zeros(0), int(np.flatnonzero(labels == c)[0]))
        for c in range(k)
    ]  # fmt: skip
    c = Clustering(
        paths=paths, labels=labels, ranks=np.zeros(len(labels), np.int64), distances=distances,
        image_top_classes=tops, clusters=regroup(template, labels, distances), rejected=[],
        model="m", features="embedding", centroids=centroids, fences=np.full(k, np.inf, np.float32),
    )  # fmt: skip
    return c, feats


def review_of(tmp: Path, base: Clustering, feats: np.ndarray) -> Review:
    marker = tmp / ".imgclust"
    marker.mkdir(parents=True, exist_ok=True)
    journal = Journal(marker / "edits.jsonl")
    journal.start({"format": 1})
    return Review(marker, Editor(base, feats), journal, None)


def partition(editor: Editor, state: Any, only: set[str] | None = None) -> set[frozenset[str]]:
    """The clusters of ``state`` as sets of paths (of ``only``, if given), plus the unsorted
    and excluded photos as their own sets."""
    paths = editor.base.paths
    groups: dict[int, set[str]] = {}
    for p, lab in zip(paths, state.labels.tolist(), strict=True):
        if only is None or p in only:
            groups.setdefault(int(lab) if lab in (EXCLUDED, UNSORTED, -1) else 1000 + lab, set())
            groups[int(lab) if lab in (EXCLUDED, UNSORTED, -1) else 1000 + lab].add(p)
    return {frozenset(g) for g in groups.values()}


def random_edit(data: st.DataObject, review: Review) -> dict[str, Any] | None:
    """An edit the review can make now (``None``: every photo was excluded)."""
    c = review.current
    k = c.k
    paths = list(c.paths)
    if not paths:
        return None
    ops = ["rename", "merge", "move", "move-new", "unsort", "exclude"] if k else ["move-new"]
    op = data.draw(st.sampled_from(ops))
    if op == "rename" or (op == "merge" and k < 2):
        return {"op": "rename", "cluster": data.draw(st.integers(0, k - 1)), "name": "named"}
    if op == "merge":
        ids = data.draw(st.lists(st.integers(0, k - 1), min_size=2, max_size=3, unique=True))
        return {"op": "merge", "clusters": ids}
    chosen = data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3, unique=True))
    if op == "move":
        return {"op": "move", "paths": chosen, "to": data.draw(st.integers(0, k - 1))}
    if op == "move-new":
        return {"op": "move", "paths": chosen, "to": "new", "name": "picked"}
    return {"op": op, "paths": chosen}


CHANGES = ("same", "grown by one", "grown by many", "photos removed", "a cluster vanished",
           "all photos new", "two clusters joined")  # fmt: skip


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), change=st.sampled_from(CHANGES), sizes=st.lists(st.integers(1, 7),
       min_size=2, max_size=5), n_edits=st.integers(1, 6), seed=st.integers(0, 2**16))  # fmt: skip
def test_every_edit_is_carried_or_reported(
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
    change: str,
    sizes: list[int],
    n_edits: int,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    paths = [f"/p/{t}-{i}.jpg" for i, t in enumerate(truth)]
    old, old_feats = clustering(paths, truth, seed, np.arange(len(sizes)))
    review = review_of(tmp_path_factory.mktemp("carry"), old, old_feats)
    for _ in range(n_edits):
        edit = random_edit(data, review)
        if edit is None:
            break
        review.edit(edit, seen=review.version)

    # The folder as the second run finds it, clustered with its ids permuted.
    new_paths, new_truth = list(paths), truth.copy()
    if change.startswith("grown"):
        n_new = 1 if change == "grown by one" else int(rng.integers(2, 12))
        extra = rng.integers(0, len(sizes), n_new)
        new_paths += [f"/p/new-{t}-{i}.jpg" for i, t in enumerate(extra)]
        new_truth = np.concatenate([truth, extra])
    elif change == "photos removed":
        keep = rng.random(len(paths)) > 0.3
        keep[0] = True
        new_paths = [p for p, k in zip(paths, keep, strict=True) if k]
        new_truth = truth[keep]
    elif change == "a cluster vanished":
        gone = int(rng.integers(0, len(sizes)))
        new_paths = [p for p, t in zip(paths, truth, strict=True) if t != gone]
        new_truth = truth[truth != gone]
    elif change == "all photos new":
        new_paths = [p.replace("/p/", "/q/") for p in paths]
    perm = rng.permutation(len(sizes))
    if change == "two clusters joined":  # the second run puts two true groups in one cluster
        perm[perm == perm.max()] = perm.min()
    new, new_feats = clustering(new_paths, new_truth, seed + 1, perm)
    editor = Editor(new, new_feats)
    carried = carry_edits(review, editor)

    # One outcome per edit in effect, each with its note; the records are the carried ones.
    assert len(carried.outcomes) == len(review.history)
    assert all(o.note for o in carried.outcomes)
    assert carried.records == [o.record for o in carried.outcomes if o.record is not None]
    n_carried = sum(o.carried for o in carried.outcomes)
    assert carried.notes[0] == f"review edits carried over: {n_carried} of {len(review.history)}"
    assert all(("not carried" in o.note) != o.carried for o in carried.outcomes)
    # The journal they become replays to the same state (what `imgclust review` opens on).
    state = editor.initial
    for record in carried.records:
        state = editor.apply(state, record)
    assert state_fingerprint(state) == state_fingerprint(carried.state)

    # Photo edits hold for every photo both runs have.
    final = review.states[-1]
    old_row = review.editor.row_of
    for p, row in editor.row_of.items():
        if p not in old_row:
            continue
        was, now = final.labels[old_row[p]], carried.state.labels[row]
        if was == EXCLUDED:
            assert now == EXCLUDED, p
        elif was == UNSORTED:
            assert now == UNSORTED, p
    last_move: dict[str, int] = {}
    for number, edit in enumerate(review.history):
        for p in edit.get("paths", ()):
            last_move[p] = number if edit["op"] == "move" else -1
    together: dict[int, set[int]] = {}
    for p, number in last_move.items():
        if number >= 0 and p in editor.row_of:
            together.setdefault(number, set()).add(int(carried.state.labels[editor.row_of[p]]))
    merged_later = any(e["op"] == "merge" for e in review.history)
    for labels in together.values():
        assert min(labels) >= 0  # in a cluster, never unsorted or excluded
        if not merged_later:
            assert len(labels) == 1  # photos moved together stay together

    if change in ("same", "grown by one", "grown by many"):
        # Nothing the edits touched changed: every edit carries, and the old photos end in
        # the same clusters as the user left them.
        assert all(o.carried for o in carried.outcomes), carried.notes
        assert partition(editor, carried.state, set(paths)) == partition(review.editor, final)
        renamed = {e["name"] for e in review.history if e["op"] == "rename"}
        finals = {s.name for s in final.slots}
        assert renamed & finals <= {s.name for s in carried.state.slots}


def _pair(
    tmp: Path, new_truth: np.ndarray, new_paths: list[str], perm: list[int]
) -> tuple[Review, Editor]:
    truth = np.repeat(np.arange(3), (10, 8, 6))
    paths = [f"/p/{t}-{i}.jpg" for i, t in enumerate(truth)]
    old, feats = clustering(paths, truth, 0, np.arange(3))
    new, new_feats = clustering(new_paths, new_truth, 1, np.array(perm))
    return review_of(tmp, old, feats), Editor(new, new_feats)


def test_a_rename_names_the_cluster_most_of_its_photos_went_to(tmp_path: Path) -> None:
    truth = np.repeat(np.arange(3), (10, 8, 6))
    paths = [f"/p/{t}-{i}.jpg" for i, t in enumerate(truth)]
    grown_truth = np.concatenate([truth, [1, 1]])
    grown = [*paths, "/p/new-a.jpg", "/p/new-b.jpg"]
    review, editor = _pair(tmp_path, grown_truth, grown, [2, 0, 1])
    review.edit({"op": "rename", "cluster": 1, "name": "Lisbon trip"}, seen=0)
    carried = carry_edits(review, editor)
    target = int(carried.state.labels[editor.row_of["/p/new-a.jpg"]])
    assert carried.state.slots[target].name == "Lisbon trip"
    assert carried.notes[1] == (
        f"renamed 'Lisbon trip' carried to cluster {target} (8 of 8 photos shared)"
    )
    assert Matcher(review.editor, editor).same_space


def test_a_merge_whose_cluster_vanished_merges_the_rest(tmp_path: Path) -> None:
    truth = np.repeat(np.arange(3), (10, 8, 6))
    paths = [f"/p/{t}-{i}.jpg" for i, t in enumerate(truth)]
    keep = truth != 2
    # The vanished cluster's photos are gone and its centre is far from every new one.
    review, editor = _pair(
        tmp_path, truth[keep], [p for p, k in zip(paths, keep, strict=True) if k], [1, 0, 2]
    )
    review.edit({"op": "merge", "clusters": [0, 1, 2], "name": "all"}, seen=0)
    carried = carry_edits(review, editor)
    assert carried.records == [{"op": "merge", "clusters": [1, 0], "name": "all"}]
    note = carried.notes[1]
    assert note.startswith("merge of 3 clusters: one no longer matches (none of its photos")
    assert note.endswith("merged the other 2 into cluster 0")
    assert [s.name for s in carried.state.slots] == ["all"]


def test_all_photos_new_match_by_centroid(tmp_path: Path) -> None:
    truth = np.repeat(np.arange(3), (10, 8, 6))
    new_paths = [f"/q/{t}-{i}.jpg" for i, t in enumerate(truth)]
    review, editor = _pair(tmp_path, truth, new_paths, [2, 1, 0])
    review.edit({"op": "rename", "cluster": 0, "name": "beach"}, seen=0)
    review.edit({"op": "exclude", "paths": ["/p/1-10.jpg"]}, seen=1)
    carried = carry_edits(review, editor)
    assert carried.state.slots[2].name == "beach"  # truth 0 is cluster 2 now
    assert "matched by its centre" in carried.notes[1]
    assert (
        carried.notes[2]
        == "exclude of 1 photo not carried: none of them is in this run's clustering"
    )


def test_a_move_to_a_cluster_that_no_longer_matches_makes_a_new_one(tmp_path: Path) -> None:
    truth = np.repeat(np.arange(3), (10, 8, 6))
    paths = [f"/p/{t}-{i}.jpg" for i, t in enumerate(truth)]
    # The second run puts truth 1 and 2 together: cluster 1's photos are no longer its own.
    merged = np.where(truth == 2, 1, truth)
    review, editor = _pair(tmp_path, merged, paths, [0, 1, 1])
    moved = ["/p/0-0.jpg", "/p/0-1.jpg"]
    review.edit({"op": "rename", "cluster": 2, "name": "sixes"}, seen=0)
    review.edit({"op": "move", "paths": moved, "to": 1}, seen=1)
    carried = carry_edits(review, editor)
    rename, move = carried.outcomes
    assert rename.record is None and "not carried" in rename.note and "mostly" in rename.note
    # Cluster 1 (8 photos) lies in the joint cluster: the photos go there, with it.
    labels = {int(carried.state.labels[editor.row_of[p]]) for p in moved}
    assert labels == {int(carried.state.labels[editor.row_of["/p/1-10.jpg"]])}
    assert "stay with it" in move.note


def test_undone_edits_are_said_not_carried(tmp_path: Path) -> None:
    truth = np.repeat(np.arange(3), (10, 8, 6))
    paths = [f"/p/{t}-{i}.jpg" for i, t in enumerate(truth)]
    review, editor = _pair(tmp_path, truth, paths, [0, 1, 2])
    review.edit({"op": "rename", "cluster": 0, "name": "a"}, seen=0)
    review.edit({"op": "rename", "cluster": 1, "name": "b"}, seen=1)
    review.edit({"op": "undo"}, seen=2)
    carried = carry_edits(review, editor)
    assert len(carried.outcomes) == 1
    assert carried.notes[-1] == "1 undone review edit not carried (redo starts afresh)"


def test_what_the_base_holds_from_an_earlier_review_carries_first(tmp_path: Path) -> None:
    from dataclasses import replace

    from imgclust.review.edits import EXCLUDED_REASON
    from imgclust.scan import Rejection

    truth = np.repeat(np.arange(3), (10, 8, 6))
    paths = [f"/p/{t}-{i}.jpg" for i, t in enumerate(truth)]
    old, feats = clustering(paths[1:], truth[1:], 0, np.arange(3))
    labels = old.labels.copy()
    labels[0] = UNSORTED  # /p/0-1.jpg was unsorted by a review before this journal
    old = replace(
        old, labels=labels, clusters=regroup(old.clusters, labels, old.distances),
        rejected=[Rejection(paths[0], EXCLUDED_REASON)],  # and /p/0-0.jpg excluded
    )  # fmt: skip
    new, new_feats = clustering(paths, truth, 1, np.array([1, 2, 0]))
    review = review_of(tmp_path, old, feats.astype(np.float16))
    editor = Editor(new, new_feats)
    carried = carry_edits(review, editor)
    assert carried.outcomes == [] and len(carried.standing) == 2
    assert carried.state.labels[editor.row_of[paths[0]]] == EXCLUDED
    assert carried.state.labels[editor.row_of[paths[1]]] == UNSORTED
    assert carried.notes[1:] == [
        "from before the review's journal: 1 photo excluded stays excluded",
        "from before the review's journal: 1 photo marked 'not this cluster' carried: 1 unsorted "
        "now",
    ]


def test_the_notes_say_what_later_edits_made_of_an_edit(tmp_path: Path) -> None:
    """A move to a new cluster that later edits emptied, and an unsort some of whose photos
    were then excluded: each note says so (they said "stays there: cluster (none now...)"
    and "3 photos ... stay unsorted" with 2 unsorted)."""
    truth = np.repeat(np.arange(3), (10, 8, 6))
    paths = [f"/p/{t}-{i}.jpg" for i, t in enumerate(truth)]
    review, editor = _pair(tmp_path, truth, paths, [0, 1, 2])
    moved, unsorted = ["/p/0-0.jpg", "/p/0-1.jpg"], ["/p/1-10.jpg", "/p/1-11.jpg", "/p/1-12.jpg"]
    review.edit({"op": "move", "paths": moved, "to": "new"}, seen=0)
    review.edit({"op": "exclude", "paths": moved}, seen=1)  # the new cluster: emptied
    review.edit({"op": "unsort", "paths": unsorted}, seen=2)
    review.edit({"op": "exclude", "paths": unsorted[:1]}, seen=3)
    move, _, unsort, _ = carry_edits(review, editor).outcomes
    assert move.note == "move of 2 photos carried; later edits emptied the cluster it made"
    assert unsort.note == (
        "3 photos marked 'not this cluster' carried: 2 unsorted now (1 moved or excluded by "
        "later edits)"
    )
