"""Export: lay a run's photos out as one folder per cluster (symlink, copy or move), and undo it.

Nothing the user had is ever overwritten or lost:

- folder and file names are made safe for every file system (:func:`safe_name`) and always
  land inside the destination; a name already taken gets a suffix (``photo (2).jpg``);
- every export first writes a journal (fsynced) under ``DEST/.imgclust-export/``; a move links
  (or copies, across devices) the photo into place before it removes the original, so a kill
  at any moment leaves each photo in at least one of its two places;
- :func:`undo_export` reads the journals newest first and puts every file back where it was,
  also after an export that was killed part-way.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import filecmp
import json
import os
import re
import shutil
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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


@dataclass(frozen=True)
class Step:
    """One photo of the plan: from where to where."""

    source: str
    target: str


@dataclass(frozen=True)
class ExportPlan:
    """What an export does: its steps, and the photos of the run that are no longer there."""

    steps: list[Step]
    missing: list[str]


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


def plan_export(out_dir: str | os.PathLike[str], dest: str | os.PathLike[str]) -> ExportPlan:
    """The steps of an export of the run in ``out_dir`` into ``dest`` (nothing is written).

    Photos listed by the run that are gone (moved or deleted since) are left out of the steps
    and listed in ``missing``.

    Raises:
        InputError: ``out_dir`` holds no ``assignments.csv``/``clusters.csv``.
        OutputError: ``dest`` is not a folder, or a cluster folder there leads outside it.
    """
    out, root = Path(out_dir), Path(dest).absolute()
    names = {int(r["cluster"]): r["name"] for r in _read_csv(out / "clusters.csv")}
    rows = _read_csv(out / "assignments.csv")
    if root.exists() and not root.is_dir():
        raise OutputError(f"{root} exists and is not a folder; choose another --to")
    taken: set[str] = set()
    steps, missing = [], []
    for row in sorted(rows, key=lambda r: (int(r["cluster"]), int(r["rank"]), r["path"])):
        if not os.path.isfile(row["path"]):
            missing.append(row["path"])
            continue
        cluster = int(row["cluster"])
        folder = root / cluster_folder_name(cluster, names.get(cluster, ""))
        _check_inside(folder, root)
        target = _free_name(folder, safe_file_name(os.path.basename(row["path"])), taken)
        taken.add(str(target))
        steps.append(Step(row["path"], str(target)))
    return ExportPlan(steps, missing)


def export(
    out_dir: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    mode: ExportMode = "symlink",
    on_step: Callable[[Step], None] | None = None,
) -> ExportPlan:
    """Lay the clustered photos of ``out_dir`` out under ``dest``, one folder per cluster.

    The journal is written and fsynced before any photo is touched; see the module docstring.

    Raises:
        InputError: no run results in ``out_dir``.
        OutputError: ``dest`` cannot be written (the message says why); nothing is lost.
    """
    if mode not in EXPORT_MODES:
        raise OutputError(f"unknown export mode {mode!r}; choose symlink, copy or move")
    plan = plan_export(out_dir, dest)
    root = Path(dest).absolute()
    try:
        journal = _write_journal(root, mode, plan.steps)
        for step in plan.steps:
            _apply(step, mode)
            if on_step is not None:
                on_step(step)
        _append(journal, {"done": True})
    except OSError as exc:
        raise OutputError(
            f"export into {root} stopped: {exc}. Every photo is still in its old place or "
            f"its new one; run `imgclust export --undo {root}` to put them all back"
        ) from exc
    return plan


def undo_export(dest: str | os.PathLike[str]) -> int:
    """Undo every export journalled in ``dest``, newest first; returns the files put back.

    Moved photos go back to where they were, copies and links made by the export are removed,
    and the cluster folders are removed when they are left empty. Safe to run again after a
    kill: each step checks what is on disk first.

    Raises:
        InputError: ``dest`` holds no export journal.
        OutputError: a file cannot be put back (the message says which; nothing is deleted).
    """
    root = Path(dest).absolute()
    journals = sorted((root / JOURNAL_DIR).glob("journal-*.jsonl"), reverse=True)
    if not journals:
        raise InputError(f"{root} holds no imgclust export to undo")
    n_restored = 0
    for journal in journals:
        header, steps = _read_journal(journal)
        try:
            for step in reversed(steps):
                n_restored += _revert(step, header["mode"])
        except OSError as exc:
            raise OutputError(f"cannot undo the export in {root}: {exc}") from exc
        for folder in sorted({os.path.dirname(s.target) for s in steps}, reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only when empty: anything the user added stays
        journal.rename(journal.with_suffix(".undone"))
    with contextlib.suppress(OSError):
        (root / JOURNAL_DIR).rmdir()
    return n_restored


# -- planning -------------------------------------------------------------------------------


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        raise InputError(f"{path} not found; give the output folder of `imgclust run`") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


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
    while str(candidate) in taken or os.path.lexists(candidate):
        n += 1
        candidate = folder / (f"{stem} ({n}){dot}{ext}")
    return candidate


# -- journal --------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_journal(root: Path, mode: str, steps: Sequence[Step]) -> Path:
    folder = root / JOURNAL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    n = len(list(folder.glob("journal-*"))) + 1
    path = folder / f"journal-{n:04d}.jsonl"
    tmp = path.with_suffix(".tmp")
    lines = [json.dumps({"mode": mode, "n": len(steps)})]
    lines += [json.dumps({"source": s.source, "target": s.target}) for s in steps]
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(folder)
    return path


def _append(journal: Path, record: dict[str, object]) -> None:
    with open(journal, "ab") as fh:
        fh.write((json.dumps(record) + "\n").encode())
        fh.flush()
        os.fsync(fh.fileno())


def _read_journal(path: Path) -> tuple[dict[str, object], list[Step]]:
    lines = path.read_bytes().decode("utf-8", "surrogateescape").splitlines()
    header = json.loads(lines[0])
    steps = [Step(**json.loads(line)) for line in lines[1:] if '"source"' in line]
    if len(steps) != header["n"]:
        raise OutputError(f"the export journal {path} is damaged; nothing was undone")
    return header, steps


# -- doing and undoing ----------------------------------------------------------------------


def _apply(step: Step, mode: str) -> None:
    target = Path(step.target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode == "symlink":
        os.symlink(os.path.abspath(step.source), target)  # fails if the name is taken
    elif mode == "copy":
        _copy_new(step.source, target)
    else:
        _move_new(step.source, target)


def _copy_new(source: str, target: Path) -> None:
    """Copy to ``target`` (never over an existing file): a ``.part`` file renamed when whole."""
    part = target.with_name(target.name + ".part")
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
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP):
            raise
        _copy_new(source, target)
    _fsync_dir(target.parent)
    os.unlink(source)


def _revert(step: Step, mode: object) -> int:
    source, target = step.source, Path(step.target)
    part = target.with_name(target.name + ".part")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(part)  # a copy cut short: the original is still in place
    if not os.path.lexists(target):
        return 0
    if mode == "symlink":
        if os.path.islink(target):
            os.unlink(target)
        return 0
    if mode == "copy" or os.path.lexists(source):
        # The original is still in place: what is at the target is our copy or a second link.
        if os.path.lexists(source) and (mode == "copy" or _same_content(source, target)):
            os.unlink(target)
        return 0
    Path(source).parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(target, source)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP):
            raise
        _copy_new(str(target), Path(source))
    os.unlink(target)
    return 1


def _same_content(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


__all__ = [
    "EXPORT_MODES",
    "ExportPlan",
    "Step",
    "cluster_folder_name",
    "export",
    "plan_export",
    "safe_file_name",
    "safe_name",
    "undo_export",
]
