"""The edits of ``imgclust review``: a journal in the output folder, replayed over a base.

On disk, under ``OUT/.imgclust/``::

    review-base/model.npz, index.faiss   the clustering the edits apply to (hard links of the
                                         run's files, taken when the journal starts: a later
                                         rewrite of model.npz replaces the file by rename, so
                                         the link keeps the old bytes; a copy where links fail)
    edits.jsonl                          a header line, then one JSON record an edit, appended
                                         and fsynced before the edit is answered
    review-base-<time>/                  the base of a journal ``imgclust run`` wrote, carrying
                                         the edits over (the header's ``base_dir``; :mod:`.carry`)

A record is an edit (``rename``, ``merge``, ``split``, ``move``, ``unsort``, ``exclude``) or
``undo`` / ``redo``. Replaying them in order over the base gives the current state: edits
push onto the active stack (clearing the redo stack), ``undo`` pops one onto the redo stack,
``redo`` pushes it back. Every edit is deterministic (a split's k-means has a fixed seed), so
a replay gives the same clustering as the session did. A kill while a line is written leaves
a torn last line, which is ignored (and cut off before the next append): at most that edit is
lost.

What the other commands read (``model.npz``, ``index.faiss`` when photos were excluded, the
CSV/Parquet exports, the static report) is then written from the current state
(:meth:`Review.publish`), ``model.npz`` last. On opening, ``model.npz`` is compared with the
states the journal passes through: equal to the last, nothing to do; equal to an earlier one
(a kill before the outputs caught up), they are written again; equal to none (``assign``
rewrote the folder since; ``imgclust run`` writes a journal of its own, :mod:`.carry`), the
journal is set aside as ``edits-<time>.jsonl`` and a new one starts from the folder as it is
now, with the old one's edits carried onto it as a run carries them (still undoable, and
carried on by the next run).

Edits change only labels, names and membership: a photo keeps its features; a changed
cluster's centroid becomes the mean of its members' stored features (the base similarity
index holds them), its members' distances, ranks, outlier fence and medoid (the member
nearest the centroid) follow. Photos marked "not this cluster" go to the "unsorted" group
(label -2, :data:`~imgclust.clustering.UNSORTED_LABEL`: in no cluster, like HDBSCAN's noise
at -1, but listed apart from it); excluded photos leave the clustering and are listed as
rejected with the reason ``excluded in imgclust review``.

The map: every cluster keeps the disc of the base's map layout it came from (``Slot.disc``: a
merge keeps the larger one's, a split's parts their parent's, a new cluster the disc most of
its photos came from). Photos moved into a cluster with a disc take cells there, placed by the
saved layout's anchors as ``assign`` places new photos (no refit); the edited clustering's
layout lists the discs by the edited cluster ids, so ``assign`` keeps placing by them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._fs import atomic_write
from ..clustering import UNSORTED_LABEL, Clustering, ranks_by_cluster, regroup
from ..describe import ClusterSummary, ClusterTree, ImageTopClasses, outlier_thresholds, short_name
from ..exceptions import InputError, OutputError
from ..report.layout import MapLayout
from ..scan import Rejection

JOURNAL = "edits.jsonl"
BASE_DIR = "review-base"
UNSORTED = UNSORTED_LABEL  # "not this cluster": the unsorted group
EXCLUDED = -3  # label of an excluded photo (in the state only; it leaves the clustering)
EXCLUDED_REASON = "excluded in imgclust review"
EDIT_OPS = ("rename", "merge", "split", "move", "unsort", "exclude")
_FORMAT = 1
_CHUNK = 8192  # rows converted to float32 at a time


class EditError(InputError):
    """An edit that cannot be applied (unknown cluster or photo, nothing to undo)."""


class EditConflict(EditError):
    """An edit made on a state that is no longer the current one (another tab edited)."""


# -- the journal ----------------------------------------------------------------------------


class Journal:
    """``edits.jsonl``: a header, then one record a line, each appended and fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: After a lenient :meth:`read`: the damaged line the records stop before, if any.
        self.damaged_at: int | None = None

    def read(self, *, lenient: bool = False) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The header and the records; a torn (unterminated or undecodable) last line is
        left out. ``lenient``: a damaged line further up ends the records there
        (:attr:`damaged_at` says which), where it is otherwise an error.

        Raises:
            InputError: the journal is damaged (a line that is not a record; no whole
                header line, which only damage makes: the header is written whole).
        """
        self.damaged_at = None
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None, []
        lines = data.split(b"\n")
        whole = lines[:-1]  # the last piece has no newline: torn, or empty
        out = []
        for i, line in enumerate(whole):
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a record")
                out.append(record)
            except ValueError:
                # (A line that ends in its newline was written whole: a record cut short by
                # a kill has none, and is the unterminated last piece, left out above. So a
                # bad whole line is damage, the last one too: skipping it would let the next
                # edit be appended after it.)
                if lenient and i:
                    self.damaged_at = i + 1
                    break
                raise InputError(
                    f"{self.path} is damaged at line {i + 1}; move it away to start afresh"
                ) from None
        if not out and data.strip():
            raise InputError(
                f"{self.path} is damaged (its header line is cut short); move it away to "
                "start afresh"
            )
        if not out:
            return None, []
        return out[0], out[1:]

    def start(self, header: dict[str, Any]) -> None:
        """A new journal holding only ``header`` (written atomically)."""
        line = (json.dumps(header) + "\n").encode()
        atomic_write(self.path, lambda fh: fh.write(line))

    def rewrite(self, header: dict[str, Any], records: list[dict[str, Any]]) -> None:
        """A new journal of ``header`` and ``records`` (written atomically, whole)."""
        lines = [json.dumps(header)] + [json.dumps(r, ensure_ascii=True) for r in records]
        data = ("\n".join(lines) + "\n").encode()
        atomic_write(self.path, lambda fh: fh.write(data))

    def append(self, record: dict[str, Any]) -> None:
        """Append ``record`` durably (cutting off a torn last line first)."""
        line = (json.dumps(record, ensure_ascii=True) + "\n").encode()
        try:
            with open(self.path, "rb+") as fh:
                data_end = fh.seek(0, os.SEEK_END)
                if data_end:
                    fh.seek(max(0, data_end - 1))
                    if fh.read(1) != b"\n":  # a torn record: drop it
                        fh.seek(0)
                        whole = fh.read().rsplit(b"\n", 1)[0] + b"\n"
                        fh.truncate(len(whole))
                fh.seek(0, os.SEEK_END)
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def set_aside(self) -> Path | None:
        """Rename the journal to ``edits-<time>.jsonl`` (kept, no longer replayed)."""
        if not self.path.exists():
            return None
        dest = self.path.with_name(f"edits-{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
        os.replace(self.path, dest)
        return dest


# -- the state ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One cluster of an edited state (its id is its position)."""

    name: str
    top_classes: tuple[tuple[str, float], ...]
    distinctive: tuple[tuple[str, float], ...]
    group: int
    centroid: np.ndarray
    fence: float
    medoid: int  # base row
    disc: int = -1  # the base map layout's disc it is drawn in (-1: none)


@dataclass(frozen=True)
class State:
    """The edited clustering over the base's rows."""

    labels: np.ndarray  # int32 per base row: cluster id, -1 unclustered, UNSORTED, EXCLUDED
    distances: np.ndarray  # float32 per base row
    slots: tuple[Slot, ...]
    coords: np.ndarray | None = None  # float32 (n, 2) map cells per base row

    def sizes(self) -> np.ndarray:
        """Photos per cluster id."""
        lab = self.labels[self.labels >= 0]
        return np.bincount(lab, minlength=len(self.slots))


def base_state(base: Clustering) -> State:
    """The state of the unedited base clustering."""
    groups = base.tree.groups if base.tree is not None else np.full(base.k, -1)
    slots = tuple(
        Slot(c.name, tuple(c.top_classes), tuple(c.distinctive), int(groups[c.cluster_id]),
             np.asarray(base.centroids[c.cluster_id], np.float32), float(base.fences[c.cluster_id]),
             int(c.medoid), c.cluster_id if base.layout is not None else -1)
        for c in base.named
    )  # fmt: skip
    coords = None if base.coords is None else np.asarray(base.coords, np.float32)
    return State(
        np.asarray(base.labels, np.int32), np.asarray(base.distances, np.float32), slots, coords
    )


#: The longest name a cluster keeps (characters).
MAX_NAME = 200


def clean_name(name: Any) -> str:
    """A cluster name a user gave, as kept: one line of text in the CSVs, the report and a
    folder name, so control characters (NUL, ESC, the C1 set) and line or paragraph breaks
    become spaces, runs of spaces one, and a lone surrogate U+FFFD; at most
    :data:`MAX_NAME` characters.

    Raises:
        EditError: ``name`` is not text, or nothing is left of it.
    """
    if not isinstance(name, str):
        raise EditError(f"a cluster's name is text, not {name!r}")
    # (a lone surrogate, which JSON can carry, is no text any file takes: U+FFFD, as
    # export.safe_name makes it)
    spaced = "".join(
        " " if (cat := unicodedata.category(ch)) in ("Cc", "Zl", "Zp") else
        "\ufffd" if cat == "Cs" else ch
        for ch in name
    )  # fmt: skip
    kept = " ".join(spaced.split())[:MAX_NAME].rstrip()
    if not kept:
        raise EditError("a cluster's name cannot be empty")
    return kept


class Editor:
    """Applies edit records to states of one base clustering.

    Args:
        base: the clustering the journal's edits apply to.
        features: ``(n, d)`` the base rows' clustered features (float16 is fine), or a
            callable giving them when first needed (only structural edits need them).
    """

    def __init__(self, base: Clustering, features: Any) -> None:
        self.base = base
        self._features = features
        self.row_of = {p: i for i, p in enumerate(base.paths)}
        self.initial = base_state(base)

    @property
    def features(self) -> np.ndarray:
        """The base rows' features (loaded on first use)."""
        if callable(self._features):
            self._features = self._features()
        if hasattr(self._features, "shape"):  # (also StoredRows: rows read when indexed)
            return self._features
        return np.asarray(self._features)

    def apply(self, state: State, edit: dict[str, Any]) -> State:
        """``state`` after ``edit``.

        Raises:
            EditError: the edit names an unknown cluster or photo, or is malformed.
        """
        op = edit.get("op")
        try:
            if op == "rename":
                return self._rename(state, self._cluster(state, edit["cluster"]), edit["name"])
            if op == "merge":
                clusters = edit["clusters"]
                if isinstance(clusters, (str, dict)) or not isinstance(clusters, Sequence):
                    raise EditError("merge needs 'clusters': a list of two cluster ids or more")
                ids = [self._cluster(state, c) for c in clusters]
                return self._merge(state, ids, edit.get("name"))
            if op == "split":
                k = edit.get("k")
                return self._split(state, self._cluster(state, edit["cluster"]), k)
            if op == "move":
                to = edit.get("to")
                target = None if to is None or to == "new" else self._cluster(state, to)
                return self._move(state, self._rows(state, edit["paths"]), target, edit.get("name"))
            if op == "unsort":
                return self._move(state, self._rows(state, edit["paths"]), UNSORTED, None)
            if op == "exclude":
                return self._move(state, self._rows(state, edit["paths"]), EXCLUDED, None)
        except (KeyError, TypeError) as exc:
            raise EditError(f"malformed {op} edit: {exc!r} missing or wrong") from exc
        raise EditError(f"unknown edit {op!r}; one of {', '.join(EDIT_OPS)}")

    # -- the edits --

    def _cluster(self, state: State, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EditError(f"cluster must be an id, not {value!r}")
        if not state.slots:
            raise EditError(f"no cluster {value}: this clustering has no clusters")
        if not 0 <= value < len(state.slots):
            raise EditError(f"no cluster {value}: the clusters are 0 to {len(state.slots) - 1}")
        return value

    def _rows(self, state: State, paths: Sequence[str]) -> np.ndarray:
        if isinstance(paths, str) or not paths:
            raise EditError("give the photos as a non-empty list of paths")
        rows = []
        for p in paths:
            row = self.row_of.get(p)
            if row is None or state.labels[row] == EXCLUDED:
                raise EditError(f"{p} is not a photo of this clustering")
            rows.append(row)
        return np.unique(np.array(rows, np.int64))

    def _rename(self, state: State, cid: int, name: Any) -> State:
        slots = list(state.slots)
        slots[cid] = replace(slots[cid], name=clean_name(name))
        return replace(state, slots=tuple(slots))

    def _merge(self, state: State, ids: list[int], name: str | None) -> State:
        ids = list(dict.fromkeys(ids))
        if len(ids) < 2:
            raise EditError("merge needs two clusters or more")
        sizes = state.sizes()
        target = max(ids, key=lambda c: (sizes[c], -c))  # the largest keeps its name
        labels = state.labels.copy()
        labels[np.isin(labels, ids)] = target
        merged = replace(state, labels=labels)
        if name:
            merged = self._rename(merged, target, name)
        return self._finish(merged, {target})

    def _move(self, state: State, rows: np.ndarray, target: int | None, name: str | None) -> State:
        sources = {int(c) for c in np.unique(state.labels[rows]) if c >= 0}
        labels = state.labels.copy()
        slots = list(state.slots)
        coords = state.coords
        if target is None:  # a new cluster
            target = len(slots)
            group, disc = -1, -1
            if sources:  # the group (and map disc) of the cluster most of them come from
                counts = {c: int((state.labels[rows] == c).sum()) for c in sources}
                most = slots[max(counts, key=lambda c: (counts[c], -c))]
                group, disc = most.group, most.disc
            tops = self._top_classes(rows)
            default = " / ".join(short_name(d) for d, _ in tops[:2]) or "new cluster"
            named = default if name is None or name == "" else clean_name(name)
            slots.append(
                Slot(self._unique(named, slots), tops, (), group,
                     np.zeros(0, np.float32), float("inf"), int(rows[0]), disc)
            )  # fmt: skip
        elif target >= 0:
            coords = self._placed(coords, rows, slots[target].disc)
        labels[rows] = target
        dirty = sources | ({target} if target >= 0 else set())
        return self._finish(State(labels, state.distances, tuple(slots), coords), dirty)

    def _placed(self, coords: np.ndarray | None, rows: np.ndarray, disc: int) -> np.ndarray | None:
        """``coords`` with ``rows`` moved onto map disc ``disc``, where the base layout's
        anchors put photos like them (as ``assign`` places new photos); unchanged without a
        layout or disc. Photos may share a cell: the report's ``settle`` parts them."""
        layout = self.base.layout
        if coords is None or layout is None or disc < 0 or disc >= len(self.base.centroids):
            return coords
        centroids = np.asarray(self.base.centroids, np.float32)
        feats = self.features[rows].astype(np.float32)
        dist = np.sqrt(((feats - centroids[disc]) ** 2).sum(axis=1))
        cells = layout.place(feats, centroids, np.full(len(rows), disc), dist)
        out = coords.copy()
        out[rows] = cells
        return out

    def _split(self, state: State, cid: int, k: Any) -> State:
        from ..cluster import SplitClusters

        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 2):
            raise EditError(f"split needs k of 2 or more (or none, to choose it), not {k!r}")
        members = np.flatnonzero(state.labels == cid)
        if len(members) < 2:
            raise EditError(f"cluster {cid} has {len(members)} photo; nothing to split")
        if k is not None and k > len(members):
            raise EditError(
                f"cluster {cid} has {len(members)} photos: split it in {len(members)} at most"
            )
        centres = np.stack([s.centroid for s in state.slots]).astype(np.float32)
        model = SplitClusters(
            state.labels, centres, state.distances, [cid], n_clusters=k, random_state=0
        ).fit(self.features)
        labels = np.asarray(model.labels_, np.int32)
        distances = np.asarray(model.distances_, np.float32)
        slots = list(state.slots)
        parent = slots[cid]
        parts = model.parts_[cid]
        for n, part in enumerate(parts):
            rows = np.flatnonzero(labels == part)
            centroid = np.asarray(model.cluster_centers_[part], np.float32)
            tops = self._top_classes(rows)
            slot = Slot(
                f"{parent.name} ({n + 1})", tops, (), parent.group, centroid,
                self._fence(distances[rows]), int(rows[np.argmin(distances[rows])]), parent.disc,
            )  # fmt: skip
            if part < len(slots):
                slots[part] = slot
            else:
                slots.append(slot)
        return self._compact(State(labels, distances, tuple(slots), state.coords))

    # -- helpers --

    def _finish(self, state: State, dirty: set[int]) -> State:
        """Centroids, distances, fences and medoids of the ``dirty`` clusters again, from
        their members' features; empty clusters dropped."""
        distances = state.distances.copy()
        slots = list(state.slots)
        for cid in sorted(dirty):
            rows = np.flatnonzero(state.labels == cid)
            if not len(rows):
                continue
            centroid, dist = self._centre(rows)
            distances[rows] = dist
            slots[cid] = replace(
                slots[cid], centroid=centroid, fence=self._fence(dist),
                medoid=int(rows[np.argmin(dist)]),
            )  # fmt: skip
        return self._compact(State(state.labels, distances, tuple(slots), state.coords))

    def _centre(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feats = self.features
        total = np.zeros(feats.shape[1], np.float64)
        for start in range(0, len(rows), _CHUNK):
            total += feats[rows[start : start + _CHUNK]].astype(np.float32).sum(axis=0)
        centroid = (total / len(rows)).astype(np.float32)
        dist = np.empty(len(rows), np.float32)
        for start in range(0, len(rows), _CHUNK):
            part = feats[rows[start : start + _CHUNK]].astype(np.float32) - centroid
            dist[start : start + len(part)] = np.sqrt((part * part).sum(axis=1))
        return centroid, dist

    @staticmethod
    def _fence(dist: np.ndarray) -> float:
        return float(outlier_thresholds(np.zeros(len(dist), np.int64), dist, 1)[0])

    @staticmethod
    def _compact(state: State) -> State:
        """Drop clusters left without photos; the others keep their order."""
        sizes = state.sizes()
        keep = np.flatnonzero(sizes > 0)
        if len(keep) == len(state.slots):
            return state
        new_id = np.full(len(state.slots) + 3, -1, np.int32)  # [-3]..[-1] map to themselves
        new_id[keep] = np.arange(len(keep), dtype=np.int32)
        new_id[-1], new_id[UNSORTED], new_id[EXCLUDED] = -1, UNSORTED, EXCLUDED
        slots = tuple(state.slots[i] for i in keep)
        return State(new_id[state.labels], state.distances, slots, state.coords)

    def _top_classes(self, rows: np.ndarray) -> tuple[tuple[str, float], ...]:
        """The strongest classes of these photos: their top-3 scores summed by class."""
        ids, scores = self.base.top_class_arrays()
        names = self.base.image_top_classes.class_names  # type: ignore[attr-defined]
        totals = np.bincount(ids[rows].ravel(), weights=scores[rows].ravel())
        best = np.argsort(-totals, kind="stable")[:3]
        return tuple((names[i], float(totals[i] / len(rows))) for i in best if totals[i] > 0)

    @staticmethod
    def _unique(name: str, slots: Sequence[Slot]) -> str:
        taken = {s.name for s in slots}
        out, n = name, 2
        while out in taken:
            out, n = f"{name} {n}", n + 1
        return out

    # -- the record --

    def clustering(self, state: State) -> Clustering:
        """The :class:`Clustering` of ``state``: the base with its labels, names and members
        changed and excluded photos listed as rejected."""
        from ..describe.groups import build_linkage, first_parents

        base = self.base
        n = len(base.paths)
        keep = np.flatnonzero(state.labels != EXCLUDED)
        whole = len(keep) == n
        new_row = np.full(n, -1, np.int64)
        new_row[keep] = np.arange(len(keep))
        labels = state.labels[keep].astype(np.int64)
        distances = state.distances[keep]
        fences = np.array([s.fence for s in state.slots], np.float32)
        outliers = np.zeros(len(labels), bool)
        if len(fences):
            outliers = (labels >= 0) & (distances > fences[np.maximum(labels, 0)])
        ids, scores = base.top_class_arrays()
        class_names = base.image_top_classes.class_names  # type: ignore[attr-defined]
        dup = None
        if base.duplicate_of is not None:
            d = np.asarray(base.duplicate_of)[keep]
            leader = np.where(d >= 0, new_row[np.maximum(d, 0)], -1)
            same = (leader >= 0) & (labels[np.maximum(leader, 0)] == labels)
            dup = np.where(same, leader, -1)
        template = [
            ClusterSummary(i, s.name, s.top_classes, np.zeros(0, np.int64), np.zeros(0),
                           int(new_row[s.medoid]), s.distinctive)
            for i, s in enumerate(state.slots)
        ]  # fmt: skip
        centroids = (
            np.stack([s.centroid for s in state.slots]).astype(np.float32)
            if state.slots
            else base.centroids[:0]
        )
        excluded = [
            Rejection(base.paths[i], EXCLUDED_REASON)
            for i in np.flatnonzero(state.labels == EXCLUDED).tolist()
        ]
        tree = base.tree
        if tree is not None:
            groups = np.array([s.group for s in state.slots], np.int64)
            same_shape = len(state.slots) == base.k and all(
                s.centroid is b.centroid
                for s, b in zip(state.slots, self.initial.slots, strict=True)
            )
            used = sorted({int(g) for g in groups if g >= 0})
            new_group = {g: i for i, g in enumerate(used)}
            groups = np.array([new_group.get(int(g), -1) for g in groups], np.int64)
            if same_shape:
                link, parents = tree.linkage, tree.parents
            else:
                link = build_linkage(centroids, method="ward")
                parents = first_parents(link, len(centroids))
            tree = ClusterTree(link, groups, parents, [tree.names[g] for g in used])
        return replace(
            base,
            paths=base.paths if whole else [base.paths[i] for i in keep.tolist()],
            labels=labels,
            ranks=ranks_by_cluster(labels, distances),
            distances=distances,
            image_top_classes=ImageTopClasses(ids[keep], scores[keep], class_names),
            clusters=regroup(template, labels, distances),
            rejected=sorted([*base.rejected, *excluded], key=lambda r: r.path),
            outliers=outliers,
            coords=None if state.coords is None else state.coords[keep],
            layout=self._layout(state, centroids),
            duplicate_of=dup,
            columns={k: np.asarray(v)[keep] for k, v in base.columns.items()},
            centroids=centroids,
            fences=fences,
            tree=tree,
        )

    def _layout(self, state: State, centroids: np.ndarray) -> MapLayout | None:
        """The base's map layout with its discs listed by the edited cluster ids (a cluster
        without a disc gets the disc of the base centroid nearest its own), and the
        unclustered photos' disc, if the base had one, last: what ``assign`` places by."""
        layout = self.base.layout
        if layout is None:
            return None
        k_base = len(self.base.centroids)
        discs = np.array([s.disc for s in state.slots], np.int64)
        lost = np.flatnonzero((discs < 0) | (discs >= k_base))
        if len(lost) and k_base:
            base_c = np.asarray(self.base.centroids, np.float32)
            d2 = ((centroids[lost, None, :] - base_c[None, :, :]) ** 2).sum(axis=2)
            discs[lost] = np.argmin(d2, axis=1)
        elif len(lost):
            return None
        if len(layout.radii) > k_base:  # the unclustered photos' disc
            discs = np.append(discs, k_base)
        return MapLayout(
            np.asarray(layout.centres)[discs],
            np.asarray(layout.radii)[discs],
            layout.basis,
            np.asarray(layout.scale)[discs],
            None if layout.anchors is None else np.asarray(layout.anchors)[discs],
        )


def fingerprint(kept: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> int:
    """CRC-32 of which base rows are kept, their labels and the cluster names: what decides
    whether ``model.npz`` shows a state."""
    crc = zlib.crc32(np.ascontiguousarray(kept, np.uint8).data)
    crc = zlib.crc32(np.ascontiguousarray(labels, np.int64).data, crc)
    return zlib.crc32(json.dumps(list(names)).encode(), crc)


def state_fingerprint(state: State) -> int:
    """:func:`fingerprint` of a state."""
    kept = state.labels != EXCLUDED
    return fingerprint(kept, state.labels[kept], [s.name for s in state.slots])


def clustering_fingerprint(base: Clustering, row_of: dict[str, int], c: Clustering) -> int | None:
    """:func:`fingerprint` of a saved clustering over ``base``'s rows; ``None`` when its photos
    are not base photos in base order (a run or assign rewrote the folder)."""
    rows = np.array([row_of.get(p, -1) for p in c.paths], np.int64)
    if (rows < 0).any() or (np.diff(rows) <= 0).any():
        return None
    kept = np.zeros(len(base.paths), bool)
    kept[rows] = True
    return fingerprint(kept, np.asarray(c.labels), c.names)


def link_or_copy(src: Path, dest: Path) -> None:
    """``dest`` as a hard link of ``src`` (a copy where links are not possible)."""
    with contextlib.suppress(FileNotFoundError):
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        atomic_write(dest, write_path=lambda tmp: shutil.copyfile(src, tmp))
