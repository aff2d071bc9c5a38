"""Export: lay a run's photos out as one folder per cluster (symlink, copy or move), and undo it.

Nothing the user had is ever overwritten or lost:

- folder and file names are made safe for every file system (:func:`safe_name`) and always
  land inside the destination; a name already taken gets a suffix (``photo (2).jpg``);
- every export first writes a journal (fsynced) under ``DEST/.imgclust-export/``: each step's
  source and target and what it writes there (the photo's size and sha256, or the link's
  target); a move links (or copies, across devices) the photo into place before it removes
  the original, so a kill at any moment leaves each photo in at least one of its two places;
  a photo that is a link is moved as one (as ``mv`` does): DEST's link leads to its very
  file, which is never touched, and the undo puts the photo's own link back as it was;
- :func:`undo_export` first checks every journal whole: a damaged one, or one with a target
  that leads outside DEST, is refused with nothing touched (a journal is a file anyone could
  have put there, and undo deletes and moves what it names). It then reads them newest first
  and puts every file back where it was, also after an export or an undo that was killed
  part-way (a ``.NAME.imgclust-part`` left beside an original is ours when it is the start
  of the photo, and is replaced; any other file, a ``NAME.part`` included, is the user's).
  A copy is removed only while it holds what the export wrote (and its original still holds
  what was copied: another photo may have taken its name); one edited
  since, or whose original changed or is gone, is kept (the user's now), and
  :class:`UndoResult` names it. A moved photo kept because another file took its place stays
  journalled, for the undo run again once that file is gone;
- one export or undo at a time in a DEST: each holds the journal folder's lock from its plan
  to its last step, and another started meanwhile is refused (naming the one that runs)
  with nothing touched, where it would have undone, or journalled over, photos in flight.

Photos a run read from object storage (``s3://``, ``gs://``; :mod:`imgclust.uri`) are exported
by copy only: each is downloaded once into DEST (fingerprinted from the very bytes placed),
its fingerprint journalled as for a local photo.
A link cannot point into a bucket, and imgclust never deletes from one, so a symlink or move
export of such a run is refused before anything is written.

Exporting again into the same DEST is idempotent, because a user re-runs a command that was
interrupted, or runs it twice, and expects the folder to end up the same, not doubled:

- a photo whose earlier export in the same mode (not undone) still stands is skipped and
  listed in :attr:`ExportPlan.already`: the same link, the moved photo, or a copy of an
  unchanged original (or a copy edited in DEST: the user's now, a second one would be
  clutter); an original at the size and mtime its journal holds counts as unchanged (one
  stat, or one HEAD for an object, as the feature store judges photos), other ones are read.
  One whose link or copy is gone is made again under its old name, and a copy
  whose original changed since gets a new copy beside the old (nothing is overwritten);
- an earlier export in another mode does not count (a copy after a link export makes real
  copies beside the links: that is what the user asked for, and the plan says so in
  :attr:`ExportPlan.beside`);
- if photos of the run already lie in DEST under another cluster folder (the clusters changed
  since, e.g. after a new ``imgclust run``), the export is refused and says to ``--undo``
  first. Leaving the old placement would show a photo in two clusters (and a moved photo
  cannot be moved twice), and moving it silently would rearrange the user's folder behind
  their back; undo then export gives exactly the new clusters and each step is undoable.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import errno
import filecmp
import hashlib
import json
import os
import re
import shutil
import stat
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from . import uri
from ._fs import HOLDER_FILE, LOCK_FILE, OutputLock, WriteError, atomic_write
from .exceptions import InputError, OutputError

ExportMode = Literal["symlink", "copy", "move"]
EXPORT_MODES: tuple[str, ...] = ("symlink", "copy", "move")
#: Folder inside the destination that holds the journals.
JOURNAL_DIR = ".imgclust-export"
#: Longest folder or file name we write, in UTF-8 bytes (255 is the common limit; keep room
#: for a clash suffix).
MAX_NAME_BYTES = 120

_FORBIDDEN = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f]')
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"COM{i}" for i in range(10)}
    | {f"LPT{i}" for i in range(10)}
)
_JOURNAL_NAME = re.compile(r"journal-(\d+)\.\w+")
_LIVE_JOURNAL = re.compile(r"journal-\d+\.jsonl")  # (not a temporary file of one)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CROSS_DEVICE = (errno.EXDEV, errno.EPERM, errno.ENOTSUP)


@dataclass(frozen=True)
class Step:
    """One photo of the plan: from where to where."""

    source: str
    target: str


@dataclass(frozen=True)
class ExportPlan:
    """What an export does, and what it leaves out.

    ``missing``: photos of the run that are no longer there; ``already``: the steps of earlier
    exports into the same folder that still stand, so these photos are skipped; ``beside``:
    photos of ``steps`` that an earlier export in another mode put there, and where it put
    them (a copy export after a symlink one makes copies beside the links: said, not silent).
    """

    steps: list[Step]
    missing: list[str]
    already: list[Step] = field(default_factory=list)
    beside: list[tuple[str, Step]] = field(default_factory=list)  # (that export's mode, step)


@dataclass(frozen=True)
class UndoResult:
    """What :func:`undo_export` did. Every file it left alone is named, by its full path."""

    #: Moved photos put back at their original path.
    restored: int
    #: Copies and links the exports made, removed.
    removed: int
    #: Files in DEST that changed since the export (an edited copy, a replaced link): kept.
    kept_edited: list[str]
    #: Files in DEST kept because another file is at the original path (a moved photo), or
    #: the original changed or is gone (a copy: now the last of that photo, and the user's).
    kept_blocked: list[str]
    #: Original paths of moved photos found neither in DEST nor back in their place.
    not_found: list[str]
    #: The moved photos of ``kept_blocked``: still journalled, so that an undo run again
    #: once the file in their place is gone puts them back.
    journalled: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Record:
    """One journalled step and what it wrote (``None`` in journals older than fingerprints)."""

    step: Step
    size: int | None = None
    sha256: str | None = None
    #: The link the export wrote in DEST: a symlink export's, or a move's of a photo that
    #: was a link (:func:`_move_link`), whose own text is ``was_link``.
    link: str | None = None
    #: The original's mtime when its copy was fingerprinted: a new export that finds it at
    #: that size and mtime (one stat, or one HEAD for an object) need not read it again.
    mtime_ns: int | None = None
    was_link: str | None = None


@dataclass(frozen=True)
class _Journal:
    path: Path
    mode: str
    records: list[_Record]


def safe_name(name: str, *, fallback: str = "unnamed", max_bytes: int = MAX_NAME_BYTES) -> str:
    """``name`` made safe as one folder or file name on Linux, macOS and Windows.

    Reserved and control characters become ``_``, undecodable bytes are replaced, trailing
    dots and spaces go, reserved Windows names get a ``_`` prefix, and the UTF-8 length is
    capped. The result is never empty, ``.`` or ``..``.
    """
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = unicodedata.normalize("NFC", text).replace("\ufffd", "_")
    text = _FORBIDDEN.sub("_", text)
    text = "".join("_" if unicodedata.category(ch) in ("Cc", "Cf", "Cs") else ch for ch in text)
    text = text.strip().rstrip(". ")
    while len(text.encode("utf-8")) > max_bytes:
        text = text[:-1].rstrip(". ")
    if not text or (set(text) <= {".", "_"} and "." in text):
        text = fallback
    if text.split(".")[0].upper().rstrip() in _WINDOWS_RESERVED:
        text = "_" + text
    return text


def safe_file_name(name: str) -> str:
    """A photo's file name made safe, keeping its extension when it has a sane one."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or not re.fullmatch(r"[A-Za-z0-9]{1,8}", ext):
        return safe_name(name, fallback="photo")
    return safe_name(stem, fallback="photo", max_bytes=MAX_NAME_BYTES - 9) + "." + ext.lower()


def cluster_folder_name(cluster: int, name: str) -> str:
    """``"003 espresso"``: the id keeps folders apart and sorted; the name says what is in it."""
    return safe_name(f"{cluster:03d} {name}".rstrip(), fallback=f"{cluster:03d}")


def plan_export(
    out_dir: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    mode: ExportMode = "symlink",
) -> ExportPlan:
    """The steps of a ``mode`` export of the run in ``out_dir`` into ``dest`` (nothing is written).

    Photos listed by the run that are gone (moved or deleted since) are left out of the steps
    and listed in ``missing``; photos an earlier export into ``dest`` already put in place are
    listed in ``already`` (see the module docstring).

    Raises:
        InputError: ``out_dir`` holds no ``assignments.csv``/``clusters.csv``, or they hold a
            value that is not a whole number (the message names the file and line).
        OutputError: ``dest`` is not a folder, a cluster folder there leads outside it, a
            journal there is damaged, or photos of the run lie there in another cluster;
            or another export or undo is running there (what it would plan is in flux).
    """
    inputs = _inputs(out_dir, dest, mode)
    if not (inputs.root / JOURNAL_DIR).is_dir():
        return _plan(inputs, mode)  # (no export has been there: nothing in flux)
    try:
        with _held(inputs.root, "export --dry-run", instead="choose another --to"):
            return _plan(inputs, mode)
    except WriteError:
        return _plan(inputs, mode)  # (DEST is read-only: no export can run there either)


def _check_not_running(out: Path) -> None:
    """For a run folder without its CSVs: whether its first run is still writing them.

    Raises:
        OutputError: another command holds the folder (the message names it).
    """
    from .steps import MARKER_DIR

    marker = out / MARKER_DIR
    if not marker.is_dir():
        return
    try:
        with OutputLock(marker, "export", instead=None):
            pass
    except WriteError:
        return  # (read-only: no command writes there either)
    except OutputError as busy:
        raise OutputError(f"{busy}: it has not written the run's CSVs yet") from None


def _is_or_inside(root: Path, out: Path) -> bool | None:
    """Whether ``root`` is ``out`` (True) or lies inside it (False), by the files themselves:
    ``root`` resolved (a link into ``out``, ``out/../x`` beside it), then each folder it
    lies in compared with ``samefile`` (a case-insensitive file system's spellings too);
    ``None``: neither."""
    real = Path(os.path.realpath(root))
    for i, folder in enumerate((real, *real.parents)):
        with contextlib.suppress(OSError):
            if os.path.samefile(folder, out):
                return i == 0
    return None


@dataclass(frozen=True)
class _Inputs:
    """What an export lays out: the run's cluster names and rows, and DEST."""

    names: dict[int, str]
    rows: list[tuple[str, int, int]]
    root: Path


def _inputs(out_dir: str | os.PathLike[str], dest: str | os.PathLike[str], mode: str) -> _Inputs:
    """The run's CSVs, read and checked against DEST and ``mode`` (nothing is written, no
    journal or photo read): what is wrong here is said before any write."""
    out, root = Path(out_dir), Path(dest).absolute()
    try:
        clusters = _read_clusters(out / "clusters.csv")
        rows = _read_assignments(out / "assignments.csv")
        _check_tables(out, clusters, rows)
        names = {c: name for c, (name, _) in clusters.items()}
    except InputError:
        _check_not_running(out)
        raise
    there = next((p for p in (root, *root.parents) if os.path.lexists(p)), root)
    if not there.exists():  # (DEST, or a parent it would be made in)
        raise OutputError(
            f"{there} is a link to nothing ({os.readlink(there)}); choose another --to"
        )
    if not there.is_dir():
        raise OutputError(f"{there} exists and is not a folder; choose another --to")
    inside = _is_or_inside(root, out)
    if inside is not None:
        # Run outputs are remade and deleted freely: photos moved in there would go with them.
        where = "is" if inside else "is inside"
        raise OutputError(
            f"--to {root} {where} the run's output folder {out}, which a later run "
            "rewrites; choose a folder outside it"
        )
    remote = [path for path, _, _ in rows if uri.is_uri(path)]
    if remote and mode != "copy":
        raise OutputError(
            f"{_n_photos(len(remote))} of this run are in object storage (e.g. {remote[0]}): "
            f"they can be exported with --mode copy only (a {mode} export "
            + ("cannot link into a bucket)" if mode == "symlink" else "would delete from it)")
        )
    return _Inputs(names, rows, root)


def _plan(inputs: _Inputs, mode: str) -> ExportPlan:
    """:func:`plan_export`'s steps, from the checked ``inputs`` and DEST's journals."""
    names, rows, root = inputs.names, inputs.rows, inputs.root
    earlier: dict[str, list[tuple[str, _Record]]] = {}
    for journal in _live_journals(root):
        for record in journal.records:
            earlier.setdefault(record.step.source, []).append((journal.mode, record))
    # A new name is never one a journal still to be undone gave a photo (even if it is free
    # now): that journal's undo would take what is there for its photo. Only that very photo
    # may take its old name again (`_reusable`), and no name is planned twice.
    planned: set[str] = set()
    taken = {r.step.target for records in earlier.values() for _, r in records}
    seen: set[str] = set()
    steps, missing, already, elsewhere = [], [], [], []
    beside: list[tuple[str, Step]] = []
    for path, cluster, _rank in sorted(rows, key=lambda r: (r[1], r[2], r[0])):
        if path in seen:
            continue  # a photo listed twice is exported once (a second move would fail)
        seen.add(path)
        folder = root / cluster_folder_name(cluster, names.get(cluster, ""))
        _check_inside(folder, root)
        prior = earlier.get(path, [])
        placed = [(m, r) for m, r in prior if os.path.lexists(r.step.target)]
        if any(not _in_folder(r.step.target, folder) and _concerns(r, m) for m, r in placed):
            elsewhere.append(path)
            continue
        done = [r.step for m, r in placed if m == mode and _still_exported(r, mode)]
        if done:
            already.append(done[0])
            continue
        if not _source_exists(path):
            missing.append(path)
            continue
        reuse = [r.step.target for m, r in prior if m == mode and _reusable(r, m, folder, planned)]
        name = safe_file_name(os.path.basename(path))
        target = reuse[0] if reuse else str(_free_name(folder, name, taken))
        planned.add(target)
        taken.add(target)
        steps.append(Step(path, target))
        other = [(m, r.step) for m, r in placed if m != mode and _still_exported(r, m)]
        beside += other[:1]
    if elsewhere:
        raise OutputError(
            f"{_n_photos(len(elsewhere))} of this run already "
            + ("lies" if len(elsewhere) == 1 else "lie")
            + f" in {root} in another cluster "
            f"folder (the clusters changed since that export), e.g. {elsewhere[0]}; run "
            f"`imgclust export --undo {root}` first, then export again, or choose another --to"
        )
    return ExportPlan(steps, missing, already, beside)


def export(
    out_dir: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    mode: ExportMode = "symlink",
    on_step: Callable[[Step], None] | None = None,
) -> ExportPlan:
    """Lay the clustered photos of ``out_dir`` out under ``dest``, one folder per cluster.

    The journal is written and fsynced before any photo is touched, and photos already
    exported there are skipped; see the module docstring.

    Raises:
        InputError: no run results in ``out_dir``, or they are damaged.
        OutputError: ``dest`` cannot be written (the message says why); nothing is lost.
    """
    if mode not in EXPORT_MODES:
        raise OutputError(f"unknown export mode {mode!r}; choose symlink, copy or move")
    with _run_held(Path(out_dir), mode):  # (a move: the CSVs read while no run rewrites them)
        inputs = _inputs(out_dir, dest, mode)  # (what is wrong: said before any write)
        try:
            with _held(inputs.root, "export", create=True, instead="choose another --to"):
                plan = _plan(inputs, mode)  # under DEST's lock: what no other command changes
                _clear_parts(plan.already)
                if plan.steps:
                    _apply_plan(inputs.root, plan, mode, on_step)
        except WriteError:
            plan = _plan(inputs, mode)  # DEST cannot be written: fine if nothing is to be
            if plan.steps:
                raise
    return plan


@contextlib.contextmanager
def _run_held(out: Path, mode: str) -> Iterator[None]:
    """For a move, the run's own folder locked as well: a run or a review there reads the
    photos a move takes away (a review would go on showing, and publishing, their old
    paths). Links and copies leave the photos where they are. A folder that cannot be
    locked (read-only) or has no marker (CSVs alone) is exported as it is.

    Raises:
        OutputError: another command (a run, a review) holds that folder.
    """
    from .steps import MARKER_DIR

    marker = out / MARKER_DIR
    if mode != "move" or not marker.is_dir():
        yield
        return
    try:
        lock = OutputLock(
            marker,
            "export --mode move",
            instead="export by --mode copy or symlink, which leave the photos in place",
        )
        lock.__enter__()
    except WriteError:
        yield
        return
    try:
        yield
    finally:
        lock.release()


def _apply_plan(
    root: Path, plan: ExportPlan, mode: ExportMode, on_step: Callable[[Step], None] | None
) -> None:
    _clear_downloads(root)
    downloads = _Downloads(root)
    journal: Path | None = None
    try:
        records = _relinked([_record_of(step, mode, downloads) for step in plan.steps])
        journal = _write_journal(root, mode, records)
        for step, record in zip(plan.steps, records, strict=True):
            _apply(record, mode, downloads)
            if on_step is not None:
                on_step(step)
        _append(journal, {"done": True})
    except OSError as exc:
        if journal is None:
            raise OutputError(
                f"export into {root} stopped before it placed any photo: {exc}; nothing "
                "there changed"
            ) from exc
        raise OutputError(
            f"export into {root} stopped: {exc}. Every photo is still in its old place or "
            f"its new one; run `imgclust export --undo {root}` to put them all back"
        ) from exc
    finally:
        downloads.close()


@contextlib.contextmanager
def _held(
    root: Path, command: str, *, create: bool = False, instead: str | None = None
) -> Iterator[None]:
    """DEST for one export or undo at a time: its journal folder's lock, held throughout, so
    one that starts meanwhile is refused (named in the message) instead of undoing, or
    journalling over, what the other is doing. ``create``: DEST and the journal folder are
    made if needed, and removed again (with any parent made for them) if the command
    journalled nothing there: a marker left would make scans skip DEST.

    Raises:
        OutputError: another export or undo holds DEST; a :class:`WriteError` if the folder
            or its lock cannot be written.
    """
    folder = _journal_dir(root)
    made = [p for p in (folder, *folder.parents) if not os.path.lexists(p)] if create else []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = OutputLock(folder, command, instead=instead)
        lock.__enter__()
    except (OSError, WriteError) as exc:
        cause = exc.__cause__ if isinstance(exc, WriteError) else exc
        reason = getattr(cause, "strerror", None) or str(cause)
        raise WriteError(
            f"cannot write {folder}: {reason}. Make sure {root} is writable and its disk has "
            "free space" + (f", or {instead}" if instead else "")
        ) from exc
    try:
        yield
    finally:
        unused = bool(made) and not _entries(folder) - {LOCK_FILE, HOLDER_FILE}
        lock.release(discard=unused)
        for path in made if unused else []:  # deepest first; only when empty
            with contextlib.suppress(OSError):
                path.rmdir()


def _entries(folder: Path) -> set[str]:
    try:
        return {p.name for p in folder.iterdir()}
    except OSError:
        return set()


#: The folders (under DEST's journal folder) a copy export downloads objects into.
_DOWNLOADS = "downloads-"


class _Downloads:
    """The objects (``s3://...``) a copy export takes, each downloaded once: into a folder of
    its own beside the journals (on DEST's file system, so placing one is a link), its
    fingerprint taken from those very bytes (the journal says what the copy holds even if
    the object changes meanwhile), then linked into place.

    The folder is removed when the export ends; one a killed export left is removed by the
    next export or undo in DEST (which holds DEST's lock: no other export is running).
    """

    def __init__(self, root: Path) -> None:
        self.root = root / JOURNAL_DIR
        self.dir: Path | None = None
        self.files: dict[str, Path] = {}

    def fingerprint(self, source: str) -> tuple[int, str, int]:
        """Download ``source``; its ``(size, sha256, mtime_ns)``."""
        if self.dir is None:
            self.dir = self.root / f"{_DOWNLOADS}{os.getpid()}"
            self.dir.mkdir()
        data, entry = _download(source)
        path = self.dir / f"{len(self.files):08d}"
        with open(path, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))
        self.files[source] = path
        return len(data), hashlib.sha256(data).hexdigest(), entry.mtime_ns

    def place(self, source: str, target: Path) -> None:
        """Put ``source``'s download at ``target`` (never over an existing file)."""
        path = self.files.pop(source)
        try:  # (never a link to what a symlink planted in our folder would name)
            os.link(path, target, follow_symlinks=False)  # fails if the name is taken
        except OSError as exc:
            if exc.errno not in _CROSS_DEVICE:  # (a cluster folder the user mounted)
                raise
            _copy_new(str(path), target)
        os.unlink(path)

    def close(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def _clear_downloads(root: Path) -> None:
    """Remove what killed exports left in ``root`` (called with DEST held): download folders,
    and journals cut short while written (an export touches no photo before its journal is
    whole and in place)."""
    for path in (root / JOURNAL_DIR).glob(_DOWNLOADS + "*"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
    for path in (root / JOURNAL_DIR).glob("journal-*.tmp*"):
        with contextlib.suppress(OSError):
            path.unlink()


def undo_export(dest: str | os.PathLike[str]) -> UndoResult:
    """Undo every export journalled in ``dest``, newest first.

    Every journal is checked before anything is touched. Moved photos go back to where they
    were; copies and links made by the export are removed while they are still what the
    export wrote; cluster folders are removed when left empty. Safe to run again after a
    kill: each step checks what is on disk first.

    Returns:
        The counts, and every file left alone with its full path (:class:`UndoResult`).

    Raises:
        InputError: ``dest`` holds no export journal.
        OutputError: a journal is damaged or leads outside ``dest`` (nothing is touched), or
            a file cannot be put back (the message says which; nothing is deleted).
    """
    root = Path(dest).absolute()
    if not _journal_dir(root).is_dir():
        raise InputError(f"{root} holds no imgclust export to undo")
    with _held(root, "export --undo"):
        return _undo(root)


def _undo(root: Path) -> UndoResult:
    _clear_downloads(root)
    journals = _live_journals(root)  # all checked whole before the first file is touched
    if not journals:
        raise InputError(f"{root} holds no imgclust export to undo")
    outcomes: list[tuple[_Outcome, str]] = []
    seen: set[tuple[str, str]] = set()  # (a kill after re-journalling kept photos: twice)
    journalled: list[str] = []
    for journal in journals:
        try:
            records = [r for r in reversed(journal.records) if _key(r) not in seen]
            seen.update(map(_key, records))
            done = [_revert(record, journal.mode) for record in records]
            outcomes += done
            folders = {os.path.dirname(r.step.target) for r in journal.records}
            for folder in sorted(folders, reverse=True):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)  # only when empty: anything the user added stays
            # A moved photo kept because another file took its place stays journalled: once
            # that is cleared, the undo run again puts it back. (A copy kept because its
            # original changed or is gone is the user's now, as an edited one is.)
            kept = [r for r, (kind, _) in zip(records, done, strict=True) if kind == "blocked"]
            if kept and journal.mode == "move":
                _append(_write_journal(root, journal.mode, kept[::-1]), {"done": True})
                journalled += [r.step.target for r in kept]
            journal.path.rename(journal.path.with_suffix(".undone"))
        except OSError as exc:
            raise OutputError(
                f"cannot undo the export in {root}: {exc}; fix that and run the undo again "
                "(what is already back stays back)"
            ) from exc

    def paths(kind: _Outcome) -> list[str]:
        return [path for k, path in outcomes if k == kind]

    return UndoResult(
        restored=len(paths("restored")),
        removed=len(paths("removed")),
        kept_edited=paths("edited"),
        kept_blocked=paths("blocked"),
        not_found=paths("not_found"),
        journalled=journalled[::-1],
    )


# -- planning -------------------------------------------------------------------------------


def _key(record: _Record) -> tuple[str, str]:
    return record.step.source, record.step.target


def _n_photos(n: int) -> str:
    return f"{n:,} photo" if n == 1 else f"{n:,} photos"


def _read_csv(path: Path, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """The rows of ``path``, each with the number of its (last) line in the file; its
    header must have ``columns``."""
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
            reader = csv.DictReader(fh)
            lacking = [c for c in columns if c not in (reader.fieldnames or ())]
            if lacking:
                raise InputError(
                    f"{path} is not the {path.name} `imgclust run` writes (no "
                    f"{', '.join(repr(c) for c in lacking)} column); run it again to rewrite it"
                )
            return [(reader.line_num, row) for row in reader]
    except FileNotFoundError:
        raise InputError(f"{path} not found; give the output folder of `imgclust run`") from None
    except (OSError, csv.Error) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def _field(row: dict[str, str], column: str, path: Path, line: int) -> str:
    value = row.get(column)
    if not value:
        raise InputError(
            f"{path}, line {line}: no {column!r} value; give the output folder of `imgclust run`"
        )
    return value


def _whole(row: dict[str, str], column: str, path: Path, line: int) -> int:
    value = _field(row, column, path, line)
    try:
        return int(value)
    except ValueError:
        raise InputError(
            f"{path}, line {line}: {column} {value!r} is not a whole number; the file was "
            "changed since `imgclust run` wrote it: run it again, or fix that line"
        ) from None


def _read_clusters(path: Path) -> dict[int, tuple[str, int]]:
    """Each cluster's name and size, from a ``clusters.csv``."""
    rows = _read_csv(path, ("cluster", "size", "name"))
    return {
        _whole(row, "cluster", path, line): (row.get("name") or "", _whole(row, "size", path, line))
        for line, row in rows
    }


def _read_assignments(path: Path) -> list[tuple[str, int, int]]:
    """``(photo path, cluster, rank)`` of each row of an ``assignments.csv``."""
    return [
        (_field(row, "path", path, line), _whole(row, "cluster", path, line),
         _whole(row, "rank", path, line))
        for line, row in _read_csv(path, ("path", "cluster", "rank"))
    ]  # fmt: skip


def _check_tables(out: Path, clusters: dict[int, tuple[str, int]], rows: list[Any]) -> None:
    """The two CSVs agree, as `imgclust run` writes them: every photo's cluster is listed,
    with as many photos as its size (a file cut short, or edited, is said, not exported)."""
    counts = collections.Counter(cluster for _, cluster, _ in rows)
    wrong = sorted((c for c in counts.keys() | clusters.keys()
                    if counts.get(c, 0) != clusters.get(c, ("", 0))[1]),
                   key=lambda c: (c in clusters, c))  # (one not listed at all first)  # fmt: skip
    if wrong:
        c = wrong[0]
        size = f"size {clusters[c][1]:,}" if c in clusters else "not listed"
        raise InputError(
            f"{out / 'assignments.csv'} and {out / 'clusters.csv'} disagree (cluster {c}: "
            f"{_n_photos(counts.get(c, 0))}, {size} in clusters.csv"
            + (f"; {len(wrong) - 1:,} more" if len(wrong) > 1 else "")
            + "): one was cut short or changed since `imgclust run` wrote them; run it again"
        )


def _check_inside(path: Path, root: Path) -> None:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root or os.path.islink(path):
        raise OutputError(f"{path} leads outside {root}; remove it or choose another --to")


def _free_name(folder: Path, name: str, taken: set[str]) -> Path:
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate, n = folder / name, 1
    # A name whose `.part` exists is taken too: `_apply` may then remove that `.part` as ours.
    while (
        str(candidate) in taken
        or os.path.lexists(candidate)
        or os.path.lexists(_part_of(str(candidate)))
    ):
        n += 1
        candidate = folder / (f"{stem} ({n}){dot}{ext}")
    return candidate


def _in_folder(target: str, folder: Path) -> bool:
    return os.path.realpath(os.path.dirname(target)) == os.path.realpath(folder)


def _still_exported(record: _Record, mode: str) -> bool:
    """Whether the earlier ``mode`` export of ``record`` still stands (module docstring)."""
    source, target = record.step.source, record.step.target
    if mode == "symlink":
        return _is_link(target, _link_of(record))
    if mode == "move" and record.link is not None:
        return _is_link(target, record.link) and not os.path.lexists(source)
    if os.path.islink(target) or not os.path.isfile(target):
        return False
    if mode == "move":
        return not os.path.lexists(source)
    if record.size is None or record.sha256 is None:
        return _same_content(source, Path(target))
    if not _holds(target, record.size, record.sha256):
        return True  # edited in DEST: the user's copy now
    # (an original at its size and mtime is unchanged, as the store trusts a photo to be)
    return _original_holds(record)


def _concerns(record: _Record, mode: str) -> bool:
    """Whether what an earlier export placed is still of the photo at its source path: not
    when another file took that path since (a moved photo's place, a copy's original)."""
    source, target = record.step.source, record.step.target
    if mode == "move":
        return not os.path.lexists(source) or _same_content(source, Path(target))
    return mode == "symlink" or _original_holds(record)


def _reusable(record: _Record, mode: str, folder: Path, taken: set[str]) -> bool:
    """Whether an earlier target of this photo can be its target again: it is free (its copy
    or link was removed, or a kill cut it short and left a ``.part`` of ours), or a move killed
    between linking (or copying, across devices) and unlinking left the photo there."""
    source, target = record.step.source, record.step.target
    if target in taken or not _in_folder(target, folder):
        return False
    if not os.path.lexists(target):
        return True
    if mode == "move" and record.link is not None:  # (a moved link: both links there)
        return _is_link(target, record.link) and _is_link(source, record.was_link or "")
    # (a copy, when DEST is on another device: the same bytes, not the same file)
    return mode == "move" and not os.path.islink(target) and _same_content(source, Path(target))


# -- journal --------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX; Windows cannot open a folder to fsync it,
    and NTFS journals the rename itself)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _source_exists(path: str) -> bool:
    """Whether a run's photo is there: a file, or an object (``s3://...``).

    Raises:
        InputError: the object's storage cannot be reached or read: that says nothing of
            whether it is there, so neither an export (listing it missing) nor an undo
            (keeping its copy as the only one left) may go on as if it were gone.
    """
    return _size_mtime(path) is not None


def _size_mtime(path: str) -> tuple[int, int] | None:
    """A photo's size and mtime (a file's, or an object's: one HEAD), ``None`` if it is not
    there.

    Raises:
        InputError: the object's storage cannot be reached (see :func:`_source_exists`).
    """
    if not uri.is_uri(path):
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None
    try:
        entry = uri.stat(path)
    except (FileNotFoundError, IsADirectoryError):
        return None
    except OSError as exc:
        raise InputError(f"cannot read {path} ({uri.short_error(exc)}); {uri.hint(exc)}") from exc
    return entry.size, entry.mtime_ns


def _fingerprint(path: str) -> tuple[int, str]:
    """``(size, sha256)`` of a file's (or an object's) bytes."""
    if uri.is_uri(path):
        data, _ = _download(path)
        return len(data), hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _download(path: str) -> tuple[bytes, uri.Entry]:
    """An object's bytes, and its size and mtime; a read that fails is an :class:`OSError`
    like a file's."""
    try:
        return uri.read_file(path)
    except InputError as exc:
        raise OSError(str(exc)) from exc


def _holds(path: str, size: int, sha256: str) -> bool:
    """Whether ``path`` holds exactly the bytes of that fingerprint (the size first: cheap)."""
    try:
        if uri.is_uri(path):  # (its read asks for the size first anyway)
            return _fingerprint(path) == (size, sha256)
        return os.path.getsize(path) == size and _fingerprint(path) == (size, sha256)
    except OSError:
        return False


def _is_link(path: str, text: str) -> bool:
    """Whether ``path`` is a link that says ``text``."""
    try:
        return os.readlink(path) == text
    except OSError:
        return False


def _link_of(record: _Record) -> str:
    # Journals older than fingerprints did not say; the export always linked abspath(source).
    return record.link or os.path.abspath(record.step.source)


def _relinked(records: list[_Record]) -> list[_Record]:
    """A moved link whose file this export moves too (a photo of the run, listed by both
    names) leads to where that file goes in DEST, not to the place it leaves."""
    if not any(r.was_link is not None for r in records):
        return records  # (no link moved: no path resolved)
    moved = {os.path.realpath(r.step.source): r.step.target for r in records if r.was_link is None}
    return [
        replace(r, link=moved.get(r.link, r.link)) if r.was_link is not None and r.link else r
        for r in records
    ]


def _record_of(step: Step, mode: str, downloads: _Downloads) -> _Record:
    if mode == "symlink":
        return _Record(step, link=os.path.abspath(step.source))
    if mode == "move" and os.path.islink(step.source):
        # DEST's link leads to the very file (a relative link moved as it is would lead
        # elsewhere, or nowhere; one through the photo's folder would break with it).
        real = os.path.realpath(step.source)
        return _Record(step, link=real, was_link=os.readlink(step.source))
    if uri.is_uri(step.source):  # (copy only: refused otherwise)
        size, sha256, mtime_ns = downloads.fingerprint(step.source)
    else:  # (stat first: a photo changed while hashed is read again by the next export)
        mtime_ns = os.stat(step.source).st_mtime_ns
        size, sha256 = _fingerprint(step.source)
    return _Record(step, size=size, sha256=sha256, mtime_ns=mtime_ns)


def _write_journal(root: Path, mode: str, records: Sequence[_Record]) -> Path:
    folder = root / JOURNAL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    # One more than the highest number, not the count: a deleted journal must never make a
    # new one take (and replace) the name of one still to be undone.
    numbers = [int(m[1]) for p in folder.iterdir() if (m := _JOURNAL_NAME.fullmatch(p.name))]
    path = folder / f"journal-{max(numbers, default=0) + 1:04d}.jsonl"
    lines = [json.dumps({"version": 2, "mode": mode, "n": len(records)})]
    for r in records:
        entry: dict[str, object] = {"source": r.step.source, "target": r.step.target}
        entry |= {"size": r.size, "sha256": r.sha256, "link": r.link, "mtime_ns": r.mtime_ns}
        entry |= {"was_link": r.was_link}
        lines.append(json.dumps({k: v for k, v in entry.items() if v is not None}))
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    atomic_write(path, lambda fh: fh.write(data))
    _fsync_dir(folder)
    return path


def _append(journal: Path, record: dict[str, object]) -> None:
    with open(journal, "ab") as fh:
        fh.write((json.dumps(record) + "\n").encode())
        fh.flush()
        os.fsync(fh.fileno())


def _journal_dir(root: Path) -> Path:
    """DEST's journal folder; :class:`OutputError` if it is a link (its journals would be
    read, and its lock written, wherever it leads)."""
    folder = root / JOURNAL_DIR
    if folder.is_symlink():
        raise OutputError(
            f"{folder} is a symbolic link; imgclust keeps its export journals only in a "
            "folder of its own: remove the link (or choose another --to)"
        )
    return folder


def _live_journals(root: Path) -> list[_Journal]:
    """Every journal in ``root`` not yet undone, newest first, each checked whole."""
    folder = _journal_dir(root)
    paths = [p for p in folder.glob("journal-*.jsonl") if _LIVE_JOURNAL.fullmatch(p.name)]
    paths.sort(key=lambda p: (len(p.name), p.name), reverse=True)  # numbers, not text order
    return [_read_journal(path, root) for path in paths]


def _read_journal(path: Path, root: Path) -> _Journal:
    """The journal at ``path``; :class:`OutputError` if it is damaged or leaves ``root``."""

    def damaged(why: str) -> OutputError:
        return OutputError(
            f"the export journal {path} is damaged ({why}); nothing was touched. If that "
            f"export need not be undone, move the journal out of {root / JOURNAL_DIR}"
        )

    try:
        text = path.read_bytes().decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise OutputError(f"cannot read the export journal {path}: {exc}") from exc
    lines = text.splitlines()
    if not text.endswith("\n"):
        lines = lines[:-1]  # a record whose append a kill cut short (the steps end in "\n")
    entries: list[object] = []
    for i, line in enumerate(lines, 1):
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise damaged(f"line {i} is not JSON") from None
    header = entries[0] if entries else None
    if not (
        isinstance(header, dict)
        and header.get("mode") in EXPORT_MODES
        and _is_count(header.get("n"))
    ):
        raise damaged("line 1 is not an export header")
    mode, n = str(header["mode"]), int(header["n"])
    if len(entries) < 1 + n:
        raise damaged(f"{n} steps announced, {len(entries) - 1} there")
    records: list[_Record] = []
    for i, entry in enumerate(entries[1 : 1 + n], 2):
        record = _parse_record(entry)
        if record is None:
            raise damaged(f"line {i} is not an export step")
        if uri.is_uri(record.step.source) and mode != "copy":  # (an undo writes the source)
            raise damaged(f"line {i} would put a {mode}d photo back into object storage")
        if mode == "move" and (record.link is None) != (record.was_link is None):
            raise damaged(f"line {i} is not an export step")
        why = _leaves(record.step.target, root, mode, moved_link=record.was_link is not None)
        if why:
            raise OutputError(
                f"the export journal {path}, line {i}: its target {record.step.target} {why} "
                f"{root}; an export only writes inside it, so the journal is refused whole "
                "and nothing was touched. Remove that journal if you did not write it"
            )
        records.append(record)
    for i, entry in enumerate(entries[1 + n :], 2 + n):
        if not isinstance(entry, dict) or "source" in entry:
            raise damaged(f"line {i} is a step beyond the {n} announced")
    return _Journal(path, mode, records)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _parse_record(entry: object) -> _Record | None:
    """The step a journal line holds, or ``None`` when it is not one."""
    if not isinstance(entry, dict):
        return None
    source, target = entry.get("source"), entry.get("target")
    size, sha256, link = entry.get("size"), entry.get("sha256"), entry.get("link")
    if not (isinstance(source, str) and (os.path.isabs(source) or uri.is_uri(source))):
        return None
    if not (isinstance(target, str) and os.path.isabs(target)):
        return None
    if (size is None) != (sha256 is None) or (size is not None and not _is_count(size)):
        return None
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
        return None
    if link is not None and not isinstance(link, str):
        return None
    was_link = entry.get("was_link")
    if was_link is not None and not (isinstance(was_link, str) and was_link and link):
        return None
    mtime_ns = entry.get("mtime_ns")
    if mtime_ns is not None and (type(mtime_ns) is not int or size is None):
        return None
    return _Record(Step(source, target), size, sha256, link, mtime_ns, was_link)


def _leaves(target: str, root: Path, mode: str, *, moved_link: bool = False) -> str | None:
    """Why ``target`` is no place inside ``root`` an export writes to, or ``None`` if it is.

    Its folder must resolve inside ``root`` (not into the journals); the target itself may be
    a link leading anywhere only in symlink mode, or where a move journalled the photo as a
    link (``moved_link``): undo then moves or removes the link, never follows it.
    """
    real_root = os.path.realpath(root)
    parent, name = os.path.split(target)
    real_parent = os.path.realpath(parent)
    if name in ("", ".", "..") or not _within(real_parent, real_root):
        return "lies outside"
    if _within(real_parent, os.path.realpath(root / JOURNAL_DIR)):
        return "lies among the journals of"
    links = mode == "symlink" or (mode == "move" and moved_link)
    if not links and not _within(os.path.realpath(target), real_root):
        return "is a link that leads outside"
    return None


def _within(path: str, folder: str) -> bool:
    return os.path.commonpath([folder, path]) == folder


# -- doing and undoing ----------------------------------------------------------------------

_Outcome = Literal["restored", "removed", "edited", "blocked", "not_found", "gone"]


#: What ends the name of a copy in progress (``.NAME`` + this): a name of imgclust's own, as
#: the undo removes such a file beside a user's original (``photo.jpg.part`` is anyone's).
PART_SUFFIX = ".imgclust-part"


def _part_of(path: str) -> str:
    """Where a copy to ``path`` is written until whole: hidden, beside it, in a name no
    other program writes (a hash for a name too long to take the suffix)."""
    folder, name = os.path.split(path)
    if len(os.fsencode(name)) > 200:
        name = hashlib.sha256(os.fsencode(name)).hexdigest()[:32]
    return os.path.join(folder, f".{name}{PART_SUFFIX}")


def _apply(record: _Record, mode: str, downloads: _Downloads) -> None:
    step = record.step
    target = Path(step.target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode == "symlink":
        os.symlink(os.path.abspath(step.source), target)  # fails if the name is taken
        return
    # The plan only picks a name whose `.part` is free or was left by a killed export of this
    # very photo (a name it reuses): ours either way, and in the way of `_copy_new`.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_part_of(step.target))
    if mode == "copy" and uri.is_uri(step.source):
        downloads.place(step.source, target)
    elif mode == "copy":
        _copy_new(step.source, target)
    elif record.link is not None and record.was_link is not None:
        _move_link(step.source, step.target, record.link)
    else:
        _move_new(step.source, target)


def _clear_parts(placed: Sequence[Step]) -> None:
    """Remove the ``.part`` beside a photo already in place that is a second link to it: what
    a copy killed between linking its ``.part`` and unlinking it leaves (:func:`_copy_new`)."""
    for step in placed:
        part = _part_of(step.target)
        if os.path.lexists(part) and not os.path.islink(part) and _same_file(part, step.target):
            with contextlib.suppress(OSError):  # (clutter only: the photo is whole in place)
                os.unlink(part)


def _copy_new(source: str, target: Path) -> None:
    """Copy to ``target`` (never over an existing file): a ``.part`` file linked when whole."""
    part = Path(_part_of(str(target)))
    with open(source, "rb") as src, open(part, "xb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())
    shutil.copystat(source, part)
    os.link(part, target)  # fails if the name is taken; never overwrites
    os.unlink(part)


def _move_new(source: str, target: Path) -> None:
    """Put ``source`` at ``target``, then remove ``source``: the photo is never in neither."""
    try:
        os.link(source, target)
    except FileExistsError:  # (the name is checked before the device)
        if not _same_content(source, target):  # else a killed move left it there: finish it
            raise
    except OSError as exc:
        if exc.errno not in _CROSS_DEVICE:
            raise
        _copy_new(source, target)
    _fsync_dir(target.parent)
    os.unlink(source)


def _move_link(source: str, target: str, link: str) -> None:
    """Move a photo that is a link: ``link`` placed at ``target`` in DEST, then the photo
    removed; what it leads to is never touched. A move killed between the two left the link
    in DEST already: it is finished."""
    if not _is_link(target, link):
        os.symlink(link, target)  # fails if the name is taken
    _fsync_dir(Path(target).parent)
    os.unlink(source)


def _move_link_back(source: str, target: str, link: str, was_link: str) -> tuple[_Outcome, str]:
    """Put a moved link back: the photo's own link (``was_link``) again, then DEST's
    (``link``) removed."""
    if not _is_link(target, link):
        return "edited", target  # another file, or a link changed since: the user's
    if os.path.lexists(source):
        if not _is_link(source, was_link):
            return "blocked", target  # another file took the link's place: keep ours
    else:
        Path(source).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(was_link, source)
        _fsync_dir(Path(source).parent)
    os.unlink(target)
    return "restored", source


def _revert(record: _Record, mode: str) -> tuple[_Outcome, str]:
    """Undo one step; what happened, and the path it concerns."""
    source, target = record.step.source, record.step.target
    if mode == "symlink":
        if not os.path.lexists(target):
            return "gone", target
        if _is_link(target, _link_of(record)):
            os.unlink(target)
            return "removed", target
        return "edited", target
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_part_of(target))  # a copy into DEST cut short: the original is in place
    if not os.path.lexists(target):
        if mode == "move" and not os.path.lexists(source):
            return "not_found", source
        return "gone", target
    if mode == "move" and record.link is not None and record.was_link is not None:
        return _move_link_back(source, target, record.link, record.was_link)
    if os.path.islink(target):
        return "edited", target  # a copy or a moved file is never a link: not ours
    if mode == "move":
        return _move_back(source, target)
    if not (_source_exists(source) if uri.is_uri(source) else os.path.lexists(source)):
        return "blocked", target  # the copy is the only one left: never remove it
    if record.size is None or record.sha256 is None:
        unchanged = _same_content(source, Path(target))  # a journal without fingerprints
    else:
        unchanged = _holds(target, record.size, record.sha256)
    if not unchanged:
        return "edited", target
    if not _original_holds(record):
        return "blocked", target  # another file at the original's path: the copy is the last
    os.unlink(target)
    return "removed", target


def _original_holds(record: _Record) -> bool:
    """Whether a copy's original still holds what was copied: at its journalled size and
    mtime (one stat), or, read, the journalled bytes (a journal without fingerprints was
    compared with the copy already)."""
    source, size, sha256 = record.step.source, record.size, record.sha256
    if size is None or sha256 is None:
        return True
    if record.mtime_ns is not None and _size_mtime(source) == (size, record.mtime_ns):
        return True
    return _holds(source, size, sha256)


def _move_back(source: str, target: str) -> tuple[_Outcome, str]:
    """Put a moved photo back at ``source``; resumable after a kill at any point."""
    part = _part_of(source)
    if os.path.lexists(source):
        if not _same_content(source, Path(target)):
            return "blocked", target  # another file took the original's place: keep ours
        # The photo is in both places: a kill after it was put back here (or, in the export,
        # after it was linked into DEST) and before it was removed there.
        if os.path.lexists(part) and _same_file(part, source):
            os.unlink(part)
        os.unlink(target)
        return "restored", source
    if os.path.lexists(part):
        if not _is_start_of(part, target):
            raise OutputError(
                f"{part} is in the way of putting {target} back at {source}; it is not a "
                "copy of ours cut short, so move it elsewhere and run the undo again"
            )
        os.unlink(part)  # a copy back cut short by a kill; the photo is whole in DEST
    Path(source).parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(target, source)
    except OSError as exc:
        if exc.errno not in _CROSS_DEVICE:
            raise
        _copy_new(target, Path(source))
    os.unlink(target)
    return "restored", source


def _is_start_of(part: str, whole: str) -> bool:
    """Whether ``part`` holds the first bytes of ``whole``, as a copy cut short does."""
    try:
        with open(part, "rb") as a, open(whole, "rb") as b:
            while chunk := a.read(1 << 20):
                if b.read(len(chunk)) != chunk:
                    return False
    except OSError:
        return False
    return True


def _same_file(a: str, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _same_content(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


__all__ = [
    "EXPORT_MODES",
    "ExportPlan",
    "Step",
    "UndoResult",
    "cluster_folder_name",
    "export",
    "plan_export",
    "safe_file_name",
    "safe_name",
    "undo_export",
]
