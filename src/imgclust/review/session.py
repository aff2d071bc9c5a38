"""One output folder under review: its base, its journal, the current state, and publishing.

:class:`Review` is what the web app drives (and what tests drive without it): ``edit``,
``undo`` and ``redo`` check that the caller saw the latest state (its journal length), apply
the edit in memory, append it to the journal (fsynced) and only then make it current;
``publish`` writes what the other commands read from the current state, in a background
thread that always writes the newest state (a 100k-photo report takes seconds to write, and
edits made meanwhile are written together). See :mod:`.edits` for the files and the replay.
The caller holds the output folder's lock for the whole session.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..clustering import Clustering
from ..exceptions import InputError
from ..report import write_exports, write_report
from ..state import (
    INDEX_FILE,
    MODEL_FILE,
    feature_index,
    load_clustering,
    read_index,
    save_clustering_meta,
    write_index,
)
from .edits import (
    BASE_DIR,
    EXCLUDED,
    JOURNAL,
    EditConflict,
    EditError,
    Editor,
    Journal,
    State,
    clustering_fingerprint,
    link_or_copy,
    state_fingerprint,
)

logger = logging.getLogger(__name__)
_FORMAT = 1


class Review:
    """The edit session of one output folder (open it with :meth:`open`).

    Attributes:
        out: the output folder.
        notes: what opening found (a journal replayed, outputs rewritten, one set aside).
        published: the journal length whose state the outputs on disk show.
        error: the last publishing failure, if any (shown by the app).
    """

    def __init__(self, marker: Path, editor: Editor, journal: Journal, index: Any) -> None:
        self.marker = marker
        self.out = marker.parent
        self.editor = editor
        self.journal = journal
        self.notes: list[str] = []
        self.published = 0
        self.error: str | None = None
        self._index = index  # the base index; its storage is the editor's features
        self._states: list[State] = [editor.initial]
        self._done: list[dict[str, Any]] = []
        self._undone: list[dict[str, Any]] = []
        self._n_records = 0
        self._lock = threading.RLock()
        self._publish_lock = threading.Lock()
        self._cache: tuple[State, Clustering] | None = None
        self._index_kept = np.ones(len(editor.base.paths), bool)
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._states_seen: list[State] = []  # every state a replay passed through
        self.stopped: tuple[int, str] | None = None  # (record, why): where a replay stopped

    # -- opening --

    @classmethod
    def open(cls, marker: Path) -> Review:
        """Open the review of the output folder whose ``.imgclust`` folder is ``marker``.

        Raises:
            InputError: no saved clustering, or a journal that cannot be replayed.
        """
        marker = Path(marker)
        current = load_clustering(marker)
        journal = Journal(marker / JOURNAL)
        header, records = journal.read()
        notes = []
        previous = None
        if header is not None and (base_dir_of(marker, header) / MODEL_FILE).is_file():
            previous = cls.replay(marker, journal, header, records, store_dir=current.store_dir)
            review = cls._resume(marker, current, previous, header)
            if review is not None:
                return review
            notes.append(
                f"{marker.parent} was rewritten since the last review (`imgclust assign`, or "
                "a run that could not carry the edits over)"
            )
        review = cls._fresh(marker, current, journal)
        aside = journal.set_aside() if header is not None else None
        if aside is not None:
            notes.append(f"the earlier edit journal is kept as {aside.name}")
        carried = _carry_onto(previous, review.editor)
        if carried is None:
            journal.start(review._header())
            review.notes = notes
            return review
        # The edits carried onto the folder as it is now, as a run carries them: a journal
        # over it, so they stay undoable and a later run carries them on.
        header = {**review._header(), "carried": len(carried.records)}
        journal.rewrite(header, carried.records)
        replayed = cls.replay(marker, journal, header, carried.records, store_dir=current.store_dir)
        resumed = cls._resume(marker, current, replayed, header)
        if resumed is None:  # not expected: the base is the folder itself
            raise InputError(f"{journal.path} cannot be replayed; move it away to start afresh")
        resumed.notes[:0] = [*notes, *carried.notes]
        return resumed

    @classmethod
    def _fresh(cls, marker: Path, current: Clustering, journal: Journal) -> Review:
        """A session whose base is the folder as it is now."""
        index = read_index(marker, len(current.paths), saved=current)  # checked (or rebuilt)
        base_dir = marker / BASE_DIR
        base_dir.mkdir(exist_ok=True)
        for name in (INDEX_FILE, MODEL_FILE):  # the index first: model.npz names its CRC
            link_or_copy(marker / name, base_dir / name)
        remove_other_bases(marker, BASE_DIR)  # a carried journal's, set aside with it
        return cls(marker, Editor(current, _storage(index)), journal, index)

    @classmethod
    def _resume(
        cls,
        marker: Path,
        current: Clustering,
        review: Review | None,
        header: dict[str, Any],
    ) -> Review | None:
        """``review`` (the journal replayed) as the session of the folder, or ``None`` when
        the journal no longer describes it (another command rewrote ``model.npz``)."""
        if review is None:
            return None
        editor = review.editor
        base = editor.base
        seen = {state_fingerprint(state) for state in review._states_seen}
        now = clustering_fingerprint(base, editor.row_of, current)
        if now != state_fingerprint(review._states[-1]) and _run_unfinished(marker, header):
            # `imgclust run` wrote this journal and was killed before its model.npz: what it
            # was writing is the journal's state, so write it now.
            review.published = -1
            review._index_kept = np.zeros(0, bool)
            review.notes.append(
                "the last `imgclust run` stopped before saving its clustering: saved now, with "
                "the edits it carried over"
            )
            return review
        if now is None or now not in seen:
            return None
        rows = np.array([editor.row_of[p] for p in current.paths], np.int64)
        review._index_kept = np.zeros(len(base.paths), bool)
        review._index_kept[rows] = True
        index_ok = _index_matches(marker, current)  # not after a kill between the two
        if not index_ok:
            review._index_kept = np.zeros(0, bool)  # written again whatever the state
        if index_ok and now == state_fingerprint(review._states[-1]):
            review.published = review._n_records
        else:
            review.published = -1
            review.notes.append("the outputs lagged behind the edit journal: written again")
        if review._n_records:
            review.notes.append(f"{review._n_records} journal records replayed")
        if header.get("carried"):
            review.notes.append(
                f"{header['carried']} of these edits were carried over by `imgclust run` from the "
                "review before it (undo them to see that run's own clustering)"
            )
        return review

    @classmethod
    def replay(
        cls,
        marker: Path,
        journal: Journal,
        header: dict[str, Any],
        records: list[dict[str, Any]],
        *,
        store_dir: str | None = None,
        lenient: bool = False,
    ) -> Review | None:
        """The session ``journal`` describes, replayed over its base (nothing is written and
        ``model.npz`` is not looked at); ``None`` when its base is missing or is not the one
        the header names. ``lenient``: a record that cannot be replayed ends the replay
        there (:attr:`stopped` says which and why), where it is otherwise an error.

        Raises:
            InputError: a record cannot be replayed.
        """
        base_dir = base_dir_of(marker, header)
        try:
            base = load_clustering(base_dir)
        except InputError:
            return None
        if store_dir is not None:
            base = replace(base, store_dir=store_dir)
        holder: dict[str, Any] = {}

        def features() -> np.ndarray:
            holder["index"] = read_index(base_dir, len(base.paths), saved=base)
            return _storage(holder["index"])

        editor = Editor(base, features)
        if header.get("format") != _FORMAT or header.get("base") != state_fingerprint(
            editor.initial
        ):
            return None
        review = cls(marker, editor, journal, holder)  # keeps the base index alive once loaded
        review._states_seen = [editor.initial]
        for number, record in enumerate(records, start=1):
            try:
                review._step(record)
            except EditError as exc:
                if lenient:
                    review.stopped = (number, str(exc))
                    records = records[: number - 1]
                    break
                raise InputError(
                    f"{journal.path} record {number} cannot be replayed ({exc}); move the "
                    "journal away to start the review afresh"
                ) from exc
            review._states_seen.append(review._states[-1])
        review._n_records = len(records)
        return review

    def _header(self) -> dict[str, Any]:
        return journal_header(self.editor, BASE_DIR)

    # -- reading --

    @property
    def version(self) -> int:
        """The journal's length: what an edit must say it saw."""
        return self._n_records

    @property
    def can_undo(self) -> bool:
        """Whether an edit is in effect."""
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        """Whether an undone edit can be made again."""
        return bool(self._undone)

    @property
    def history(self) -> list[dict[str, Any]]:
        """The edits in effect, oldest first."""
        return list(self._done)

    @property
    def undone(self) -> list[dict[str, Any]]:
        """The edits undone and not redone (what redo would make again, next first)."""
        return self._undone[::-1]

    @property
    def states(self) -> list[State]:
        """The base's state, then the state after each edit in effect."""
        return list(self._states)

    @property
    def current(self) -> Clustering:
        """The clustering as edited now."""
        with self._lock:
            state = self._states[-1]
            if self._cache is None or self._cache[0] is not state:
                self._cache = (state, self.editor.clustering(state))
            return self._cache[1]

    # -- editing --

    def edit(self, edit: dict[str, Any], *, seen: int) -> int:
        """Apply ``edit`` (or ``{"op": "undo"}`` / ``{"op": "redo"}``) made on the state of
        journal length ``seen``; returns the new journal length.

        Raises:
            EditConflict: ``seen`` is not the current journal length.
            EditError: the edit cannot be applied.
        """
        record = {k: v for k, v in edit.items() if k != "seen"}
        with self._lock:
            if seen != self._n_records:
                raise EditConflict(
                    f"the clustering changed since this page loaded it (edit {seen} seen, "
                    f"{self._n_records} made): reload to see the other edits"
                )
            undo = self._plan(record)
            self.journal.append(record)
            self._commit(record, undo)
            self._n_records += 1
        self._wake.set()
        return self._n_records

    def _plan(self, record: dict[str, Any]) -> State | None:
        """The state ``record`` leads to (``None`` for an undo), checked, not yet current."""
        op = record.get("op")
        if op == "undo":
            if not self._done:
                raise EditError("nothing to undo")
            return None
        if op == "redo":
            if not self._undone:
                raise EditError("nothing to redo")
            return self.editor.apply(self._states[-1], self._undone[-1])
        return self.editor.apply(self._states[-1], record)

    def _commit(self, record: dict[str, Any], new: State | None) -> None:
        op = record.get("op")
        if op == "undo":
            self._undone.append(self._done.pop())
            self._states.pop()
            return
        assert new is not None
        if op == "redo":
            self._done.append(self._undone.pop())
        else:
            self._done.append(record)
            self._undone.clear()
        self._states.append(new)

    def _step(self, record: dict[str, Any]) -> None:
        self._commit(record, self._plan(record))

    # -- publishing --

    def publish(self) -> bool:
        """Write the current state's exports, report, index (when photos were excluded or
        brought back) and, last, ``model.npz``; returns whether anything was written."""
        with self._publish_lock:
            with self._lock:
                version = self._n_records
                state = self._states[-1]
                clustering = self.current
            if version == self.published:
                return False
            kept = state.labels != EXCLUDED
            write_exports(self.out, clustering)
            write_report(self.out, clustering, clustering.report)
            if not np.array_equal(kept, self._index_kept):
                write_index(self.marker, kept_index(self.editor.features, kept))
                self._index_kept = kept
            save_clustering_meta(self.marker, clustering)  # last: assign/similar follow it
            self.published = version
            self.error = None
            return True

    def start_publisher(self) -> None:
        """Publish in a background thread after every edit (the newest state wins)."""
        self._thread = threading.Thread(
            target=self._publisher, name="imgclust-publish", daemon=True
        )
        self._thread.start()
        if self.published != self._n_records:
            self._wake.set()

    def _publisher(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            try:
                self.publish()
            except Exception as exc:  # kept for the page; the journal still has the edit
                logger.exception("writing the outputs failed")
                self.error = f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        """Stop the background thread and write the last state (if not yet written)."""
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.publish()


def _carry_onto(previous: Review | None, editor: Editor) -> Any:
    """The edits of ``previous`` carried onto ``editor``'s base (:mod:`.carry`), or ``None``
    when there are none to carry."""
    from .carry import carry_edits, standing_edits

    if previous is None or not (previous.history or standing_edits(previous.editor.base)):
        return None
    return carry_edits(previous, editor)


def base_dir_of(marker: Path, header: dict[str, Any]) -> Path:
    """The folder of the base clustering a journal's header names (``review-base`` by
    default; a run that carried edits over writes its own, see :mod:`.carry`)."""
    name = header.get("base_dir", BASE_DIR)
    if not isinstance(name, str) or not name.startswith(BASE_DIR) or "/" in name or "\\" in name:
        raise InputError(f"{marker / JOURNAL} names a strange base folder {name!r}; move it away")
    return marker / name


def remove_other_bases(marker: Path, keep: str) -> None:
    """Delete the base folders under ``marker`` other than ``keep`` (no journal names them)."""
    for old in [marker / BASE_DIR, *marker.glob(f"{BASE_DIR}-*")]:
        if old.name != keep and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def kept_index(features: np.ndarray, kept: np.ndarray) -> Any:
    """A similarity index of the ``kept`` rows of ``features`` (excluded photos left out)."""
    rows = np.flatnonzero(kept)
    index, storage = feature_index(len(rows), features.shape[1])
    for start in range(0, len(rows), 65536):
        part = rows[start : start + 65536]
        storage[start : start + len(part)] = features[part]
    return index


def journal_header(editor: Editor, base_dir: str) -> dict[str, Any]:
    """The header line of a journal over ``editor``'s base, kept in ``base_dir``."""
    return {
        "format": _FORMAT,
        "kind": "imgclust review edits",
        "base": state_fingerprint(editor.initial),
        "n_photos": len(editor.base.paths),
        "base_dir": base_dir,
    }


def _run_unfinished(marker: Path, header: dict[str, Any]) -> bool:
    """Whether ``model.npz`` is still the one a run that carried edits over replaced (the
    header's ``replaces``, its CRC-32): the run was killed between its journal and it."""
    from ..store import file_crc32

    replaced = header.get("replaces")
    if not isinstance(replaced, int):
        return False
    try:
        return file_crc32(marker / MODEL_FILE) == replaced
    except OSError:
        return False


def _index_matches(marker: Path, saved: Clustering) -> bool:
    """Whether ``index.faiss`` is the one ``model.npz`` recorded (unknown counts as yes)."""
    from ..store import file_crc32

    if saved.index_crc32 is None:
        return True
    try:
        return file_crc32(marker / INDEX_FILE) == saved.index_crc32
    except OSError:
        return False


def _storage(index: Any) -> np.ndarray:
    """The rows of a faiss index as an array (a view of a float16 index's own storage)."""
    import faiss

    n, d = index.ntotal, index.d
    if getattr(index, "code_size", 0) == 2 * d and hasattr(index, "codes"):
        if n == 0:
            return np.zeros((0, d), np.float16)
        raw = faiss.rev_swig_ptr(index.codes.data(), n * index.code_size)
        return raw.view(np.float16).reshape(n, d)
    return index.reconstruct_n(0, n)
