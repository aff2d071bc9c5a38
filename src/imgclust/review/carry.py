"""Carrying the edits of ``imgclust review`` over into a later ``imgclust run`` of the folder.

A run re-clusters a grown folder from scratch: its cluster ids mean nothing to the edits in
``OUT/.imgclust/edits.jsonl``. :func:`carry_review` replays the edits in effect over their
old base, step by step, and translates each into an edit of the run's clustering, matching
the cluster it names in the old state to a cluster of the new state *at that step*:

* **by the photos they share** (the rule whenever the old cluster still has photos in the
  run): an old cluster *lies in* the new cluster holding a strict majority (more than
  :data:`MAJORITY`) of its photos that the run clustered, and *is* that cluster when, in
  turn, a strict majority of the new cluster's photos that both clusterings hold were its
  photos. Only photos both clusterings hold count, so photos added to the folder (they join
  new clusters) and photos removed from it change nothing but the counts. A strict majority
  is the smallest share that makes a match unique without solving an assignment: no two
  clusters can each hold more than half of the same photos.
* **by centroid distance**, only for an old cluster none of whose photos the run clustered
  (all gone, or the folder's photos all new), and only when both runs clustered the same
  features of the same model: it lies in the new cluster whose centroid is nearest its own,
  if that is nearer than the old cluster's median member distance (the new centre lies
  inside the old cluster's core, where half its photos were; for a cluster of one or two
  photos, the median over all clusters), and is that cluster when its
  centroid is also the nearest old centroid to the new one (mutual nearest centres).

A rename and a split need the cluster it *is* (renaming a cluster that is mostly another one
would mislabel it); a merge merges the new clusters its clusters *lie in* (those that lie in
the same new cluster are together already); a move goes to the cluster its target lies in,
or, when that no longer matches, to a new cluster of the target's name, so the photos stay
together where the user put them; "not this cluster" and exclusions carry for every photo the
run clustered. What the journal's base holds from before the journal (photos excluded or
unsorted in an earlier review, when ``assign`` or ``--refine`` rewrote the folder and the
review started afresh) carries first, as if edits (:func:`standing_edits`). Every edit in
effect ends as one :class:`Outcome`: carried (with its new
record) or not, and either way a note that says so ("renamed 'Lisbon trip' carried to
cluster 4 (38 of 40 photos shared)"; "merge of 3 clusters: one no longer matches, merged the
other 2 into cluster 7"). Undone edits (the redo stack) are not carried, and a note says so.

How the journal goes on: the run's own clustering becomes the new review base (a fresh
``review-base-<time>/`` folder that the new journal's header names) and the carried edits are
written as a new journal over it, so ``imgclust review`` opens on the carried state with every
carried edit undoable one by one (undo them all to see the run's own clustering). The old
journal is kept as ``edits-<time>.jsonl``. :func:`save_carried` writes, in this order: the new
base, the journal, then ``index.faiss`` and ``model.npz`` (last, as every run); a kill before
the journal leaves the old journal and base in force; a kill after it leaves a journal whose
header names the CRC-32 of the ``model.npz`` it replaces, so ``imgclust review`` (or the
next run, which carries it over as any journal) finishes the job.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..clustering import Clustering
from ..exceptions import InputError
from ..state import INDEX_FILE, MODEL_FILE, save_clustering_meta, write_index
from ..store import Rows, file_crc32
from .edits import (
    BASE_DIR,
    EXCLUDED,
    EXCLUDED_REASON,
    JOURNAL,
    UNSORTED,
    EditError,
    Editor,
    Journal,
    State,
    link_or_copy,
)
from .session import Review, journal_header, kept_index, remove_other_bases

#: The share of photos a match needs, in each direction (strictly more than this).
MAJORITY = 0.5
#: Clusters smaller than this are matched by centroid within the median member distance of
#: all clusters, not their own.
_FEW = 3


@dataclass(frozen=True)
class Match:
    """An old cluster's counterpart in the new state.

    Attributes:
        cluster: its id in the new state, or ``None``.
        shared: photos the two share (0 for a match by centroid).
        of: the old cluster's photos the new clustering holds.
        by: ``"photos"`` or ``"centroid"`` (``""`` when there is no match).
        why: when there is none, why not (in words).
    """

    cluster: int | None
    shared: int = 0
    of: int = 0
    by: str = ""
    why: str = ""

    def detail(self) -> str:
        """``"38 of 40 photos shared"``, or how the centroid matched."""
        if self.by == "centroid":
            return "none of its photos are left; matched by its centre"
        return f"{self.shared} of {self.of} photos shared"


class Matcher:
    """Matches clusters of states over an old base to clusters of states over a new one."""

    def __init__(self, old: Editor, new: Editor) -> None:
        self.to_new = np.array([new.row_of.get(p, -1) for p in old.base.paths], np.int64)
        self.to_old = np.full(len(new.base.paths), -1, np.int64)
        hit = self.to_new >= 0
        self.to_old[self.to_new[hit]] = np.flatnonzero(hit)
        a, b = old.base, new.base
        self.same_space = (
            a.model == b.model
            and a.features == b.features
            and np.shape(a.centroids)[1:] == np.shape(b.centroids)[1:]
        )

    def lies_in(self, old: State, c: int, new: State) -> Match:
        """The new cluster holding most of old cluster ``c``'s photos (see the module)."""
        rows = np.flatnonzero(old.labels == c)
        there = self.to_new[rows]
        there = there[there >= 0]
        there = there[new.labels[there] != EXCLUDED]
        if not len(there):
            return self._by_centroid(old, c, rows, new)
        labs = new.labels[there]
        counts = np.bincount(labs[labs >= 0], minlength=len(new.slots))
        best = int(np.argmax(counts)) if counts.size else -1
        if best >= 0 and counts[best] > MAJORITY * len(there):
            return Match(best, int(counts[best]), len(there), "photos")
        shared = int(counts[best]) if best >= 0 else 0
        return Match(None, shared, len(there), why=_spread(counts, len(there), new))

    def owned(self, old: State, c: int, new: State) -> Match:
        """The new cluster old cluster ``c`` *is*: it lies there, and is most of it."""
        m = self.lies_in(old, c, new)
        if m.cluster is None:
            return m
        rows = np.flatnonzero(new.labels == m.cluster)
        back = self.to_old[rows]
        back = back[back >= 0]
        olds = old.labels[back]
        olds = olds[olds >= 0]
        counts = np.bincount(olds, minlength=len(old.slots))
        name = new.slots[m.cluster].name
        if m.by == "photos" and counts[c] > MAJORITY * len(olds):
            return m
        if m.by == "centroid" and (not len(olds) or counts.max() <= MAJORITY * len(olds)):
            centres = np.stack([s.centroid for s in old.slots])
            nearest = int(np.argmin(_dist(centres, new.slots[m.cluster].centroid)))
            if nearest == c:
                return m
            nearer = old.slots[nearest].name
            return Match(None, why=f"the nearest centre, '{name}', is nearer '{nearer}'")
        other = int(np.argmax(counts))
        why = f"'{name}' is mostly other photos"
        if other != c:
            why = (
                f"the cluster most of them are in, '{name}', is mostly the photos of "
                f"'{old.slots[other].name}'"
            )
        return Match(None, m.shared, m.of, why=why)

    def _by_centroid(self, old: State, c: int, rows: np.ndarray, new: State) -> Match:
        gone = "none of its photos are in this run's clustering"
        if not self.same_space:
            return Match(None, why=f"{gone}, and this run's features differ (model or kind)")
        if not new.slots:
            return Match(None, why=f"{gone}, and this run has no cluster")
        d = _dist(np.stack([s.centroid for s in new.slots]), old.slots[c].centroid)
        best = int(np.argmin(d))
        # The cluster's median member distance; a cluster of one or two photos has no telling
        # spread (one photo is its own centroid), so it gets the median over all clusters'.
        spread = rows if len(rows) >= _FEW else np.flatnonzero(old.labels >= 0)
        radius = float(np.median(old.distances[spread])) if len(spread) else 0.0
        if d[best] <= radius:
            return Match(best, by="centroid")
        return Match(
            None,
            why=f"{gone}, and no cluster's centre lies within its median distance, "
            f"{radius:.3g}: the nearest, '{new.slots[best].name}', is {d[best]:.3g} away",
        )


def _dist(centres: np.ndarray, centre: np.ndarray) -> np.ndarray:
    return np.sqrt(((np.asarray(centres, np.float32) - centre) ** 2).sum(axis=1))


def _spread(counts: np.ndarray, n: int, new: State) -> str:
    in_clusters = int(counts.sum())
    if not in_clusters:
        return f"its {n} photos are in no cluster of this run"
    top = np.argsort(-counts, kind="stable")[:3]
    parts = ", ".join(f"'{new.slots[t].name}' ({counts[t]})" for t in top if counts[t])
    return f"its {n} photos are spread over {parts}" + (
        f" and {int((counts > 0).sum()) - 3} more" if (counts > 0).sum() > 3 else ""
    )


# -- carrying -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What became of one edit in effect.

    Attributes:
        edit: the old journal record.
        record: the carried record (over the run's clustering), or ``None``: not carried.
        note: what happened, in words, the cluster named by its id in the final state.
        held: the run's clustering does what the edit did already (no record needed).
    """

    edit: dict[str, Any]
    record: dict[str, Any] | None
    note: str
    held: bool = False

    @property
    def carried(self) -> bool:
        """Whether the edit holds in the carried state (by its record, or already)."""
        return self.record is not None or self.held


@dataclass(frozen=True)
class Carried:
    """The edits carried onto a run's clustering.

    Attributes:
        editor: the run's clustering, as a review base.
        state: the state the carried records lead to.
        records: the carried records, in journal order.
        outcomes: one per edit in effect, in order.
        notes: what the run's summary says (the outcomes' notes, and the rest).
        standing: one per :func:`standing_edits` of the journal's base (carried first).
    """

    editor: Editor
    state: State
    records: list[dict[str, Any]]
    outcomes: list[Outcome]
    notes: list[str] = field(default_factory=list)
    standing: list[Outcome] = field(default_factory=list)

    @property
    def clustering(self) -> Clustering:
        """The run's clustering with the edits carried."""
        return self.editor.clustering(self.state)


#: The cluster's final id (``None``: later edits emptied it) and the final state → the note.
_Note = Callable[[str | None, State], str]


def carry_edits(previous: Review, new: Editor) -> Carried:
    """Carry the edits in effect of ``previous`` (a replayed review) onto ``new``'s base,
    after what its base holds from before its journal (:func:`standing_edits`)."""
    old_states = previous.states
    matcher = Matcher(previous.editor, new)
    state = new.initial
    standing = standing_edits(previous.editor.base)
    steps = [(e, old_states[0], old_states[0]) for e in standing]
    steps += [(e, old_states[i], old_states[i + 1]) for i, e in enumerate(previous.history)]
    pending: list[tuple[dict[str, Any], dict[str, Any] | None, _Note, np.ndarray, str]] = []
    held: set[int] = set()  # edits the new state does already (nothing to journal)
    records: list[dict[str, Any]] = []
    given: set[str] = set()  # names the user gave (a merge keeps one over the run's own)
    for i, (edit, before, after_old) in enumerate(steps):
        asked = _with_kept_name(edit, before, after_old, given)
        if isinstance(edit.get("name"), str):
            given.add(edit["name"].strip())
        try:
            record, note, witness, after = _translate(asked, before, state, matcher, new)
        except EditError as exc:  # not expected (the records are checked first): reported
            record, after, witness = None, state, np.zeros(0, np.int64)
            note = _fixed(f"{_what(edit, before)} not carried: {exc}")
        if record == {}:
            held.add(i)
        if record:
            records.append(record)
        state = after
        pending.append((edit, record or None, note, witness, _holder(state, witness)[1]))
    done = [
        Outcome(edit, record, note(_final_id(state, witness, name), state), i in held)
        for i, (edit, record, note, witness, name) in enumerate(pending)
    ]
    earlier, outcomes = done[: len(standing)], done[len(standing) :]
    n_carried = sum(o.carried for o in outcomes)
    notes = [f"review edits carried over: {n_carried} of {len(outcomes)}"]
    notes += [f"from before the review's journal: {o.note}" for o in earlier]
    notes += [o.note for o in outcomes]
    if previous.undone:
        notes.append(
            f"{_count(len(previous.undone), 'undone review edit')} not carried (redo starts afresh)"
        )
    return Carried(new, state, records, outcomes, notes, earlier)


def _with_kept_name(
    edit: dict[str, Any], before: State, after: State, given: set[str]
) -> dict[str, Any]:
    """``edit``, a merge given the name its cluster kept when that name was the user's: the
    merged cluster keeps the largest one's name, and the largest may differ in the run."""
    if edit.get("op") != "merge" or edit.get("name"):
        return edit
    rows = np.flatnonzero(before.labels == int(edit["clusters"][0]))
    merged = int(after.labels[rows[0]]) if len(rows) else -1
    kept = after.slots[merged].name if merged >= 0 else ""
    return {**edit, "name": kept} if kept in given else edit


def _translate(
    edit: dict[str, Any],
    old: State,
    new_state: State,
    m: Matcher,
    new: Editor,
) -> tuple[dict[str, Any] | None, _Note, np.ndarray, State]:
    """One edit of the old state as an edit of the new state: (its record, ``None`` when it
    cannot carry or ``{}`` when the new state does what it did already; its note; the new
    rows that find its cluster at the end; the new state)."""
    op = edit.get("op")
    what = _what(edit, old)
    if op in ("rename", "split"):
        c = int(edit["cluster"])
        match = m.owned(old, c, new_state)
        if match.cluster is None:
            return None, _fixed(f"{what} not carried: {match.why}"), _none(), new_state
        t = match.cluster
        witness = np.flatnonzero(new_state.labels == t)
        if op == "rename":
            record: dict[str, Any] = {"op": "rename", "cluster": t, "name": edit["name"]}
            done = f"renamed '{edit['name']}' carried to cluster {{}} ({match.detail()})"
        else:
            record = {"op": "split", "cluster": t, "k": edit.get("k")}
            done = f"{what} carried: cluster {{}} split again on this run's photos"
        after = new.apply(new_state, record)
        return record, _late(done, what), witness, after
    if op == "merge":
        return _merge(edit, old, new_state, m, new, what)
    if op in ("move", "unsort", "exclude"):
        return _move(edit, old, new_state, m, new, what)
    return None, _fixed(f"{what} not carried: unknown edit"), _none(), new_state


def _merge(
    edit: dict[str, Any], old: State, new_state: State, m: Matcher, new: Editor, what: str
) -> tuple[dict[str, Any] | None, _Note, np.ndarray, State]:
    ids = list(dict.fromkeys(int(c) for c in edit["clusters"]))
    matches = [m.lies_in(old, c, new_state) for c in ids]
    targets = list(dict.fromkeys(x.cluster for x in matches if x.cluster is not None))
    lost = [x for x in matches if x.cluster is None]
    name = edit.get("name")
    witness = np.flatnonzero(np.isin(new_state.labels, targets)) if targets else _none()
    lost_words = (
        f"{_number(len(lost))} no longer {'matches' if len(lost) == 1 else 'match'} ({lost[0].why})"
        if lost
        else ""
    )
    if len(targets) >= 2:
        record: dict[str, Any] = {"op": "merge", "clusters": targets}
        if name:
            record["name"] = name
        together = len(ids) - len(lost) - len(targets)
        also = f" ({_number(together)} already together in this run)" if together else ""
        if lost:
            text = f"{what}: {lost_words}, merged the other {len(ids) - len(lost)}{also}"
        else:
            text = f"{what} carried{also}"
        after = new.apply(new_state, record)
        return record, _late(text + " into cluster {}", what), witness, after
    if len(targets) == 1:
        text = f"{what}: this run has them in one cluster already ({{}})"
        if lost:
            text = f"{what}: {lost_words}; the others are in one cluster already ({{}})"
        if not name:
            return {}, _late(text, what), witness, new_state  # holds without an edit
        record = {"op": "rename", "cluster": targets[0], "name": name}
        text += f", named '{name}'"
        return record, _late(text, what), witness, new.apply(new_state, record)
    return (
        None,
        _fixed(f"{what} not carried: none of them matches ({lost[0].why})"),
        witness,
        (new_state),
    )


def _move(
    edit: dict[str, Any], old: State, new_state: State, m: Matcher, new: Editor, what: str
) -> tuple[dict[str, Any] | None, _Note, np.ndarray, State]:
    op = edit["op"]
    asked = list(dict.fromkeys(edit["paths"]))
    rows = [new.row_of.get(p, -1) for p in asked]
    paths = [p for p, r in zip(asked, rows, strict=True) if r >= 0]
    paths = [p for p in paths if new_state.labels[new.row_of[p]] != EXCLUDED]
    # (a --refine run keeps photos excluded in review out, as rejected: excluded already)
    already = _excluded_by_run(new) & set(asked) if op == "exclude" else set()
    gone = len(asked) - len(paths) - len(already)
    left = f" ({_count(gone, 'photo')} of them not in this run's clustering)" if gone else ""
    if not paths and already:
        return (
            {},
            _fixed(
                f"{_count(len(already), 'photo')} excluded {_stay(list(already))} excluded{left}"
            ),
            (_none()),
            new_state,
        )
    if not paths:
        return (
            None,
            _fixed(f"{what} not carried: none of them is in this run's clustering"),
            (_none()),
            new_state,
        )
    witness = np.array(sorted(new.row_of[p] for p in paths), np.int64)
    n = _count(len(paths), "photo")
    if op == "unsort":
        record: dict[str, Any] = {"op": "unsort", "paths": paths}
        return record, _unsorted(paths, witness, left), witness, new.apply(new_state, record)
    if op == "exclude":
        record = {"op": "exclude", "paths": paths}
        n = _count(len(paths) + len(already), "photo")
        return (
            record,
            _fixed(f"{n} excluded {_stay([*paths, *already])} excluded{left}"),
            witness,
            (new.apply(new_state, record)),
        )
    to = edit.get("to")
    if to is None or to == "new":
        record = {"op": "move", "paths": paths, "to": "new"}
        if edit.get("name"):
            record["name"] = edit["name"]
        text = f"{n} moved to a new cluster {_stay(paths)} there: cluster {{}}{left}"
        return record, _late(text, what), witness, new.apply(new_state, record)
    c = int(to)
    target = old.slots[c].name
    match = m.lies_in(old, c, new_state)
    if match.cluster is not None:
        record = {"op": "move", "paths": paths, "to": match.cluster}
        text = f"{n} moved to '{target}' {_stay(paths)} with it in cluster {{}}{left}"
    else:
        record = {"op": "move", "paths": paths, "to": "new", "name": target}
        text = (
            f"{n} moved to '{target}': that cluster no longer matches ({match.why}), so they "
            f"form a new cluster {{}} of its name{left}"
        )
    return record, _late(text, what), witness, new.apply(new_state, record)


def _excluded_by_run(new: Editor) -> set[str]:
    return {r.path for r in new.base.rejected if r.reason == EXCLUDED_REASON}


def standing_edits(base: Clustering) -> list[dict[str, Any]]:
    """What a journal's base holds from edits before the journal began (a review that started
    afresh after ``assign`` or ``--refine`` rewrote the folder): its photos excluded in review
    and its unsorted photos, as edits to carry before the journal's own."""
    excluded = [r.path for r in base.rejected if r.reason == EXCLUDED_REASON]
    labels = np.asarray(base.labels)
    unsorted = [base.paths[i] for i in np.flatnonzero(labels == UNSORTED).tolist()]
    return [
        *([{"op": "exclude", "paths": excluded}] if excluded else []),
        *([{"op": "unsort", "paths": unsorted}] if unsorted else []),
    ]


def _what(edit: dict[str, Any], old: State) -> str:
    """The edit in words, its clusters by their names then."""
    op = edit.get("op")

    def name(c: Any) -> str:
        ok = isinstance(c, int) and 0 <= c < len(old.slots)
        return f"'{old.slots[c].name}'" if ok else f"#{c}"

    if op == "rename":
        return f"rename of {name(edit.get('cluster'))} to '{edit.get('name')}'"
    if op == "split":
        return f"split of {name(edit.get('cluster'))}"
    if op == "merge":
        return f"merge of {len(set(edit.get('clusters') or ()))} clusters"
    n = len(edit.get("paths") or ())
    return f"{op} of {_count(n, 'photo')}"


def _holder(state: State, witness: np.ndarray, among: np.ndarray | None = None) -> tuple[int, str]:
    """The cluster (of ``among``, if given) most ``witness`` rows are in, and its name;
    ``(-1, "")`` when they are in none."""
    labs = state.labels[witness] if len(witness) else np.zeros(0, np.int32)
    labs = labs[labs >= 0]
    if among is not None:
        labs = labs[np.isin(labs, among)]
    if not len(labs):
        return -1, ""
    best = int(np.bincount(labs).argmax())
    return best, state.slots[best].name


def _final_id(state: State, witness: np.ndarray, name: str) -> str | None:
    """The id at the end of the cluster an edit made (``name`` just after it, ``witness``
    rows in it then): the one of that name most of them are in still, else the one most of
    them are in (later edits may have moved or renamed them)."""
    named = np.array([i for i, s in enumerate(state.slots) if s.name == name], np.int64)
    if len(named) == 1:
        return str(int(named[0]))
    cid, _ = _holder(state, witness, named if len(named) else None)
    if cid < 0 and len(named):
        cid, _ = _holder(state, witness)
    return str(cid) if cid >= 0 else None


def _stay(paths: list[str]) -> str:
    return "stays" if len(paths) == 1 else "stay"


def _fixed(text: str) -> _Note:
    return lambda _cid, _state: text


def _late(template: str, what: str) -> _Note:
    """A note whose ``{}`` is filled with the final cluster id (user text is not formatted);
    where later edits emptied that cluster, a note that says so (``what``: the edit)."""
    head, _, tail = template.partition("{}")

    def note(cid: str | None, _state: State) -> str:
        if cid is None:
            return f"{what} carried; later edits emptied the cluster it made"
        return f"{head}{cid}{tail}"

    return note


def _unsorted(paths: list[str], witness: np.ndarray, left: str) -> _Note:
    """How many of the photos an unsort carried are unsorted at the end (later edits may
    have moved or excluded some)."""

    def note(_cid: str | None, state: State) -> str:
        still = int((state.labels[witness] == UNSORTED).sum())
        moved = len(paths) - still
        later = f" ({moved:,} moved or excluded by later edits)" if moved else ""
        n = _count(len(paths), "photo")
        return f"{n} marked 'not this cluster' carried: {still:,} unsorted now{later}{left}"

    return note


def _none() -> np.ndarray:
    return np.zeros(0, np.int64)


def _number(n: int) -> str:
    return ("one", "two", "three", "four")[n - 1] if 1 <= n <= 4 else str(n)


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


# -- the output folder ----------------------------------------------------------------------


@dataclass(frozen=True)
class CarryOver:
    """What :func:`carry_review` found: the carried edits (``None`` when they could not be
    read) and the notes for the run's summary."""

    carried: Carried | None
    notes: list[str]


def carry_review(marker: Path, run: Clustering, features: Rows) -> CarryOver | None:
    """The edits in effect in ``marker``'s review journal, carried onto ``run`` (a run's new
    clustering, ``features`` its rows' clustered features); ``None`` when there are none.

    Never raises for a journal it cannot use: the notes say why nothing was carried.
    """
    journal = Journal(marker / JOURNAL)
    try:
        # Lenient: a damaged line, or a record that cannot be replayed, ends the edits
        # carried there (those before it still are; the journal is kept as it was).
        header, records = journal.read(lenient=True)
        if header is None:
            return None
        previous = Review.replay(
            marker, journal, header, records, store_dir=run.store_dir, lenient=True
        )
    except InputError as exc:
        return CarryOver(None, [f"review edits not carried: {exc}"])
    if previous is None:
        return CarryOver(None, ["review edits not carried: the journal's base clustering is gone"])
    if not previous.history and not standing_edits(previous.editor.base):
        cut = _cut_short(journal, previous, len(records), kept=False)
        return CarryOver(None, cut) if cut else None
    cut = _cut_short(journal, previous, len(records), kept=True)
    carried = carry_edits(previous, Editor(run, features))
    return CarryOver(carried, carried.notes + cut)


def _cut_short(journal: Journal, previous: Review, n_read: int, *, kept: bool) -> list[str]:
    """The note for a journal whose edits stop short of its end, if they do. ``kept``: the
    run carries edits, and so keeps the journal as ``edits-<time>.jsonl``; otherwise it is
    left in place."""
    if journal.damaged_at is None and previous.stopped is None:
        return []
    if previous.stopped is not None:
        number, why = previous.stopped
        where = f"record {number} cannot be replayed ({why})"
    else:
        number, where = n_read + 1, f"line {journal.damaged_at} is damaged"
    what = (
        "the edits from there on are not carried, those before it are"
        if kept
        else "no edit is carried (none before it is in effect)"
        if number > 1
        else "no edit is carried"
    )
    where_kept = (
        "kept as edits-<time>.jsonl" if kept else "left as it is; move it away to review afresh"
    )
    return [f"review journal {journal.path.name}: {where}; {what} (the journal is {where_kept})"]


def save_carried(marker: Path, carried: Carried, index: Any) -> None:
    """Write the run's clustering as the new review base, the carried journal over it, then
    ``index.faiss`` and, last, ``model.npz`` of the carried state (see the module).

    Args:
        marker: the output folder's ``.imgclust``.
        carried: what :func:`carry_edits` made.
        index: the run's similarity index (rows aligned with the run's clustering), or
            ``None`` where the run never held the matrix (then written by no one here).
    """
    run = carried.editor.base
    name = f"{BASE_DIR}-{time.time_ns():x}"
    base_dir = marker / name
    base_dir.mkdir()
    kept = carried.state.labels != EXCLUDED
    if index is None:  # (a run that never held the matrix: built when first needed)
        write_index(marker, None)
    elif kept.all():  # the same index for both: written once, linked
        write_index(marker, index)
        link_or_copy(marker / INDEX_FILE, base_dir / INDEX_FILE)
    else:
        write_index(base_dir, index)
    save_clustering_meta(base_dir, run)
    journal = Journal(marker / JOURNAL)
    if journal.path.exists():
        link_or_copy(journal.path, _free(marker, f"edits-{time.strftime('%Y%m%d-%H%M%S')}"))
    header = {**journal_header(carried.editor, name), "carried": len(carried.records)}
    with contextlib.suppress(OSError):  # which model.npz this replaces (a kill is mended)
        header["replaces"] = file_crc32(marker / MODEL_FILE)
    journal.rewrite(header, carried.records)
    if index is not None and not kept.all():
        write_index(marker, kept_index(carried.editor.features, kept))
    save_clustering_meta(marker, carried.clustering)  # last: assign/similar follow it
    remove_other_bases(marker, name)


def _free(marker: Path, stem: str) -> Path:
    path, n = marker / f"{stem}.jsonl", 2
    while path.exists():
        path, n = marker / f"{stem}-{n}.jsonl", n + 1
    return path


__all__ = [
    "MAJORITY",
    "Carried",
    "CarryOver",
    "Match",
    "Matcher",
    "Outcome",
    "carry_edits",
    "carry_review",
    "save_carried",
]
