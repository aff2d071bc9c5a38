"""export: one folder per cluster, safe names, no overwrite, and an undo that loses nothing."""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from imgclust.cli import app
from imgclust.exceptions import InputError, OutputError
from imgclust.export import (
    JOURNAL_DIR,
    PART_SUFFIX,
    _part_of,
    cluster_folder_name,
    export,
    plan_export,
    safe_file_name,
    safe_name,
    undo_export,
)

CLI = [sys.executable, "-m", "imgclust.cli"]
RESERVED = (
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(10)} | {f"LPT{i}" for i in range(10)}
)


@given(st.text(max_size=300))
def test_safe_name_is_safe_everywhere(name: str) -> None:
    safe = safe_name(name)
    assert safe and safe not in (".", "..")
    assert not set(safe) & set('/\\:*?"<>|')
    assert all(ord(ch) >= 32 and ord(ch) != 127 for ch in safe)
    assert not safe.endswith((".", " ")) and not safe.startswith(" ")
    assert len(safe.encode("utf-8")) <= 120
    assert safe.split(".")[0].upper() not in RESERVED


def test_safe_names_by_example() -> None:
    assert cluster_folder_name(3, "missile / projectile / mosque") == (
        "003 missile _ projectile _ mosque"
    )
    assert cluster_folder_name(0, "..") == "000"  # trailing dots never survive
    assert safe_name("..") == "unnamed" and safe_name("") == "unnamed"
    assert safe_name("con") == "_con" and safe_name("LPT1.txt") == "_LPT1.txt"
    assert safe_name("a\x00b\nc. ") == "a_b_c"
    assert safe_file_name(os.fsdecode(b"caf\xe9.JPG")) == "caf_.jpg"
    assert safe_file_name('<script>"x"?.jpg') == "_script__x__.jpg"


def _tree(tmp_path: Path, n_per_cluster: int = 3, size: int = 1000) -> tuple[Path, list[Path]]:
    """Photos (random bytes are enough: export never decodes) and a run's two CSVs."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    names = ['<script>alert(1)<\\script> "q".jpg', "CON.jpg", os.fsdecode(b"caf\xe9.jpg")]
    files: list[Path] = []
    for i in range(n_per_cluster * 2):
        sub = photos / f"day{i % 2}"  # the same name in two folders: a clash
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / (names[i // 2] if i // 2 < len(names) else f"img{i // 2}.jpg")
        path.write_bytes(os.urandom(size))
        files.append(path)
    out.mkdir()
    with open(out / "clusters.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["cluster", "size", "name", "medoid", "top_classes"])
        w.writerow([0, n_per_cluster, "../../escape <b>", "", ""])
        w.writerow([1, n_per_cluster, "space shuttle / CON", "", ""])
    with open(
        out / "assignments.csv", "w", newline="", encoding="utf-8", errors="surrogateescape"
    ) as fh:
        w = csv.writer(fh)
        w.writerow(
            ["path", "cluster", "rank", "distance", "outlier", "cluster_name", "top_classes"]
        )
        for i, f in enumerate(files):
            w.writerow([str(f), i % 2, i // 2, 0.1, 0, "", ""])
    return out, files


def _append_row(out: Path, row: list[object]) -> None:
    """A row added to ``assignments.csv``, its cluster's size in ``clusters.csv`` grown to
    match (as a run writes the two)."""
    with open(out / "assignments.csv", "a", newline="", errors="surrogateescape") as fh:
        csv.writer(fh).writerow(row)
    with open(out / "clusters.csv", newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    for line in table[1:]:
        if line[0] == str(row[1]):
            line[1] = str(int(line[1]) + 1)
    with open(out / "clusters.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(table)


def _as_links(tmp_path: Path, files: list[Path]) -> dict[Path, str]:
    """``files`` made links (relative, absolute, a link to a link, in turn) to their bytes,
    now in ``tmp_path/lib``; each link's text."""
    lib = tmp_path / "lib"
    lib.mkdir()
    texts: dict[Path, str] = {}
    for i, f in enumerate(files):
        real = lib / f"{i}.jpg"
        f.rename(real)
        if i % 3 == 0:
            text = os.path.relpath(real, f.parent)
        elif i % 3 == 1:
            text = str(real)
        else:
            (lib / f"{i}-link.jpg").symlink_to(real)
            text = str(lib / f"{i}-link.jpg")
        f.symlink_to(text)
        texts[f] = text
    return texts


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _left_in(dest: Path) -> list[Path]:
    """What an undo left in ``dest`` besides the undone journals and DEST's lock file."""
    lock = dest / JOURNAL_DIR / "lock"
    return [p for p in dest.rglob("*") if not p.is_dir() and p.suffix != ".undone" and p != lock]


def _digests(files: list[Path]) -> dict[str, str]:
    return {str(f): _sha(f) for f in files}


def test_plan_stays_inside_and_never_reuses_a_name(tmp_path: Path) -> None:
    out, files = _tree(tmp_path)
    dest = tmp_path / "dest"
    (dest / "000 .._.._escape _b_").mkdir(parents=True)
    (dest / "000 .._.._escape _b_" / "_script_alert(1)__script_ _q_.jpg").write_text("mine")
    steps = plan_export(out, dest).steps
    targets = [s.target for s in steps]
    assert len(set(targets)) == len(targets) == len(files)
    assert {s.source for s in steps} == {str(f) for f in files}
    for t in targets:
        assert Path(t).parent.parent == dest.absolute()
    assert "_script_alert(1)__script_ _q_ (2).jpg" in {Path(t).name for t in targets}


@pytest.mark.parametrize("mode", ["symlink", "copy", "move"])
def test_export_and_undo(tmp_path: Path, mode: str) -> None:
    out, files = _tree(tmp_path)
    before = _digests(files)
    dest = tmp_path / "dest"
    steps = export(out, dest, mode=mode).steps  # type: ignore[arg-type]
    for step in steps:
        target = Path(step.target)
        assert target.exists() and target.is_symlink() == (mode == "symlink")
        assert hashlib.sha256(target.read_bytes()).hexdigest() == before[step.source]
    assert all(f.exists() for f in files) == (mode != "move")
    again = export(out, dest, mode="copy")  # a second export never overwrites the first
    assert not {s.target for s in steps} & {s.target for s in again.steps}
    assert len(again.missing) == (len(files) if mode == "move" else 0)
    undo_export(dest)
    assert _digests(files) == before
    assert not _left_in(dest)  # only the journals stay, as a record (and DEST's lock)


def test_folder_that_leads_outside_is_refused(tmp_path: Path) -> None:
    out, _ = _tree(tmp_path)
    dest, elsewhere = tmp_path / "dest", tmp_path / "elsewhere"
    dest.mkdir()
    elsewhere.mkdir()
    (dest / "001 space shuttle _ CON").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OutputError, match="outside"):
        export(out, dest, mode="move")
    assert not any(elsewhere.iterdir())


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="imgclust run"):
        plan_export(tmp_path, tmp_path / "dest")
    with pytest.raises(InputError, match="no imgclust export"):
        undo_export(tmp_path)


def test_cli_dry_run_touches_nothing(tmp_path: Path) -> None:
    out, files = _tree(tmp_path)
    dest = tmp_path / "dest"
    done = subprocess.run(
        [*CLI, "export", str(out), "--to", str(dest), "--mode", "move", "--dry-run"],
        capture_output=True, text=True, errors="surrogateescape", check=True,
    )  # fmt: skip
    assert done.stdout.count(" -> ") == len(files)
    assert not dest.exists() and all(f.exists() for f in files)


@pytest.mark.slow
def test_move_killed_midway_then_undo_loses_nothing(tmp_path: Path) -> None:
    out, files = _tree(tmp_path, n_per_cluster=1500, size=2000)
    before = _digests(files)
    dest = tmp_path / "dest"
    proc = subprocess.Popen([*CLI, "export", str(out), "--to", str(dest), "--mode", "move"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while sum(1 for p in dest.rglob("*.jpg")) < len(files) // 3:
        assert proc.poll() is None, "the move finished before the kill"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    moved = sum(1 for f in files if not f.exists())
    assert 0 < moved < len(files), "killed part-way"
    done = subprocess.run([*CLI, "export", "--undo", str(dest)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _digests(files) == before  # every photo back, byte-identical: 0 lost
    assert not _left_in(dest)


# -- journals are checked before anything is touched ------------------------------------------

MODES = ["symlink", "copy", "move"]


def _live_journal(dest: Path) -> Path:
    (journal,) = (dest / ".imgclust-export").glob("journal-*.jsonl")
    return journal


def _write_lines(path: Path, records: list[object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _crafted(tmp_path: Path, how: str) -> tuple[str, str, str]:
    """(mode, source, target) of a journal entry that points undo at a file outside DEST."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    outside.mkdir()
    victim, other = outside / "victim.jpg", outside / "other.jpg"
    victim.write_bytes(b"precious")
    other.write_bytes(b"precious")
    if how == "absolute":  # a copy whose "original" exists: undo would delete the target
        return "copy", str(other), str(victim)
    if how == "dotdot":  # a move: undo would carry the victim to the "source"
        (dest / "001 x").mkdir(parents=True)
        escape = dest / "001 x" / ".." / ".." / "outside" / victim.name
        return "move", str(outside / "gone.jpg"), str(escape)
    if how == "linked-folder":
        (dest / "evil").symlink_to(outside, target_is_directory=True)
        return "copy", str(other), str(dest / "evil" / victim.name)
    # a move whose target is a link to a file outside: a hard link of it would follow it
    (dest / "001 x").mkdir(parents=True)
    (dest / "001 x" / "link.jpg").symlink_to(victim)
    return "move", str(outside / "gone.jpg"), str(dest / "001 x" / "link.jpg")


@pytest.mark.parametrize("how", ["absolute", "dotdot", "linked-folder", "linked-file"])
def test_undo_refuses_a_journal_that_leads_outside_dest(tmp_path: Path, how: str) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    mode, source, target = _crafted(tmp_path, how)
    fine = dest / "000 ok" / "fine.jpg"  # a sound entry first: it must not be undone either
    fine.parent.mkdir()
    fine.write_bytes(b"copy")
    (tmp_path / "orig.jpg").write_bytes(b"copy")
    journal = dest / ".imgclust-export" / "journal-0001.jsonl"
    entries = [{"source": str(tmp_path / "orig.jpg"), "target": str(fine)}]
    _write_lines(journal, [{"mode": mode, "n": 2}, *entries, {"source": source, "target": target}])
    outside = {p: p.read_bytes() for p in (tmp_path / "outside").iterdir() if p.is_file()}
    with pytest.raises(OutputError) as info:
        undo_export(dest)
    assert journal.name in str(info.value) and target in str(info.value)
    assert "outside" in str(info.value)
    assert {p: p.read_bytes() for p in outside} == outside
    assert not (tmp_path / "outside" / "gone.jpg").exists()
    assert fine.read_bytes() == b"copy" and journal.exists()  # nothing touched


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json\n",
        "[1, 2]\n",
        '{"mode": "copy"}\n',
        '{"mode": "copy", "n": "1"}\n{"source": "/a", "target": "/b"}\n',
        '{"mode": "copy", "n": 1}\n{"source": "/a"}\n',
        '{"mode": "copy", "n": 1}\n{"source": 1, "target": 2}\n',
        '{"mode": "copy", "n": 1}\n{"source": "/a", "target": "DEST/x", "size": "big"}\n',
        '{"mode": "copy", "n": 1}\n{"source": "/a", "target": "DEST/x"}\n{"done": tru\n',
        '{"mode": "rm", "n": 1}\n{"source": "/a", "target": "DEST/x"}\n',
        '{"mode": "copy", "n": 2}\n{"source": "/a", "target": "DEST/x"}\n',
        # an undo of a move or link would write to the source: never into a bucket
        '{"mode": "move", "n": 1}\n{"source": "s3://b/a.jpg", "target": "DEST/x"}\n',
        '{"mode": "symlink", "n": 1}\n{"source": "s3://b/a.jpg", "target": "DEST/x"}\n',
        '{"mode": "copy", "n": 1}\n{"source": "a.jpg", "target": "DEST/x"}\n',
        '{"mode": "copy", "n": 1}\n{"source": "/a", "target": "DEST/x", "size": 1, "sha256": "'
        + "0" * 64
        + '", "mtime_ns": "1"}\n',
        '{"mode": "copy", "n": 1}\n{"source": "/a", "target": "DEST/x", "mtime_ns": 1}\n',
        # a moved link says both links, or neither
        '{"mode": "move", "n": 1}\n{"source": "/a", "target": "DEST/x", "link": "/v"}\n',
        '{"mode": "move", "n": 1}\n{"source": "/a", "target": "DEST/x", "was_link": "v"}\n',
        '{"mode": "move", "n": 1}\n{"source": "/a", "target": "DEST/x", "link": "/v", '
        '"was_link": 3}\n',
    ],
)
def test_a_damaged_journal_is_a_clear_error(tmp_path: Path, text: str) -> None:
    dest = tmp_path / "dest"
    journal = dest / ".imgclust-export" / "journal-0001.jsonl"
    journal.parent.mkdir(parents=True)
    journal.write_text(text.replace("DEST", str(dest)))
    with pytest.raises(OutputError, match=re.escape(str(journal))):
        undo_export(dest)
    with pytest.raises(OutputError, match=re.escape(str(journal))):
        plan_export(_tree(tmp_path)[0], dest)  # a new export reads the journals too


def test_a_torn_last_record_is_not_damage(tmp_path: Path) -> None:
    out, files = _tree(tmp_path, n_per_cluster=1)
    dest = tmp_path / "dest"
    export(out, dest, mode="copy")
    with open(_live_journal(dest), "a") as fh:
        fh.write('{"do')  # a kill in the middle of appending a record
    assert undo_export(dest).removed == len(files)


@pytest.mark.parametrize("mode", MODES)
def test_the_journal_records_what_was_written(tmp_path: Path, mode: str) -> None:
    out, files = _tree(tmp_path, n_per_cluster=1)
    before = {str(f): f.read_bytes() for f in files}
    dest = tmp_path / "dest"
    export(out, dest, mode=mode)  # type: ignore[arg-type]
    lines = [json.loads(line) for line in _live_journal(dest).read_text().splitlines()]
    steps = [r for r in lines if "source" in r]
    assert len(steps) == len(files)
    for r in steps:
        if mode == "symlink":
            assert r["link"] == os.path.abspath(r["source"]) == os.readlink(r["target"])
        else:
            data = before[r["source"]]
            assert r["size"] == len(data) and r["sha256"] == hashlib.sha256(data).hexdigest()


# -- undo keeps what the user changed ---------------------------------------------------------


def test_undo_keeps_an_edited_copy(tmp_path: Path) -> None:
    out, files = _tree(tmp_path)
    before = _digests(files)
    dest = tmp_path / "dest"
    steps = export(out, dest, mode="copy").steps
    edited = Path(steps[0].target)
    edited.write_bytes(b"my edit")
    result = undo_export(dest)
    assert edited.read_bytes() == b"my edit"
    assert result.kept_edited == [str(edited)]
    assert (result.removed, result.restored, result.not_found) == (len(files) - 1, 0, [])
    assert not any(os.path.lexists(s.target) for s in steps[1:])
    assert _digests(files) == before


def test_undo_of_a_journal_without_hashes_compares_with_the_original(tmp_path: Path) -> None:
    out, _ = _tree(tmp_path, n_per_cluster=1)
    dest = tmp_path / "dest"
    steps = export(out, dest, mode="copy").steps
    journal = _live_journal(dest)  # rewritten as the journals before fingerprints were
    old = [{"source": s.source, "target": s.target} for s in steps]
    _write_lines(journal, [{"mode": "copy", "n": len(steps)}, *old, {"done": True}])
    Path(steps[0].target).write_bytes(b"edited")
    result = undo_export(dest)
    assert Path(steps[0].target).read_bytes() == b"edited"
    assert not os.path.lexists(steps[1].target)
    assert result.kept_edited == [steps[0].target] and result.removed == 1


def test_undo_keeps_a_copy_whose_original_is_gone(tmp_path: Path) -> None:
    out, _ = _tree(tmp_path, n_per_cluster=1)
    dest = tmp_path / "dest"
    steps = export(out, dest, mode="copy").steps
    os.unlink(steps[0].source)  # the copy is now the only one left
    result = undo_export(dest)
    assert os.path.isfile(steps[0].target) and result.kept_blocked == [steps[0].target]


def test_a_photo_an_undo_kept_is_put_back_by_the_next_undo(tmp_path: Path) -> None:
    """An undo that keeps a moved photo in DEST (another file took its original's place)
    keeps it journalled, and once that file is gone an undo run again puts it back; every
    other photo was undone the first time."""
    out, files = _tree(tmp_path)
    before = _digests(files)
    dest = tmp_path / "dest"
    steps = export(out, dest, mode="move").steps
    original = Path(steps[0].source)
    original.write_bytes(b"another file, in the moved photo's place")
    first = undo_export(dest)
    assert first.kept_blocked == first.journalled == [steps[0].target]
    assert first.restored == len(files) - 1
    res = CliRunner().invoke(app, ["export", "--undo", str(dest)])  # nothing changed yet
    assert res.exit_code == 0 and "1 moved photo still journalled" in res.output, res.output
    original.unlink()
    again = undo_export(dest)
    assert (again.restored, again.kept_blocked, again.journalled) == (1, [], [])
    assert _digests(files) == before and not _left_in(dest)
    with pytest.raises(InputError):
        undo_export(dest)  # nothing left to undo


@pytest.mark.parametrize("first_undo", [False, True])
def test_undo_keeps_a_copy_whose_original_was_replaced_by_another_file(
    tmp_path: Path, first_undo: bool
) -> None:
    """A copy is removed only while its original still holds what was copied: a camera that
    reuses a name (IMG_0001.jpg) puts another photo there, and the copy is then the last of
    the first; it is kept, the user's now. Also after an undo that kept the copy while its
    original was gone (the export is undone: a later undo has nothing to do)."""
    out, _ = _tree(tmp_path, n_per_cluster=1)
    dest = tmp_path / "dest"
    steps = export(out, dest, mode="copy").steps
    original, copy = Path(steps[0].source), Path(steps[0].target)
    photo = copy.read_bytes()
    if first_undo:
        original.unlink()
        assert undo_export(dest).kept_blocked == [str(copy)]
    original.write_bytes(os.urandom(len(photo)))  # another photo, the same size
    if first_undo:
        with pytest.raises(InputError):
            undo_export(dest)
    else:
        kept = undo_export(dest)
        assert kept.kept_blocked == [str(copy)] and kept.journalled == []
    assert copy.read_bytes() == photo and original.read_bytes() != photo
    assert _left_in(dest) == [copy]  # (the export's folder now marks nothing: scanned)


def test_a_photo_an_undo_kept_twice_journalled_is_undone_once(tmp_path: Path) -> None:
    """A kill between journalling the photos an undo kept and marking the old journal undone
    leaves both: the next undo handles each photo once and journals it once."""
    out, _ = _tree(tmp_path, n_per_cluster=1)
    dest = tmp_path / "dest"
    steps = export(out, dest, mode="move").steps
    Path(steps[0].source).write_bytes(b"another file in its place")
    undo_export(dest)
    (old,) = (dest / JOURNAL_DIR).glob("journal-*.undone")
    old.rename(old.with_suffix(".jsonl"))  # the state that kill leaves
    again = undo_export(dest)
    assert again.kept_blocked == again.journalled == [steps[0].target]
    assert again.restored == 0
    assert len(list((dest / JOURNAL_DIR).glob("journal-*.jsonl"))) == 1


def test_a_new_run_exports_beside_a_photo_an_undo_kept(tmp_path: Path) -> None:
    """A moved photo an undo kept (another file took its place) belongs to no photo of a
    new run: that run exports the file now at that path into its own cluster, instead of
    asking for an undo that keeps the photo again (for ever); and nothing is lost."""
    out, files = _tree(tmp_path, n_per_cluster=1)
    dest = tmp_path / "dest"
    steps = export(out, dest, mode="move").steps
    taken = Path(steps[0].source)
    taken.write_bytes(b"a new photo in the moved one's place")
    assert undo_export(dest).kept_blocked == [steps[0].target]
    with open(out / "assignments.csv", newline="", errors="surrogateescape") as fh:
        rows = list(csv.reader(fh))
    for row in rows[1:]:
        row[1] = str(1 - int(row[1]))  # the new run puts every photo in the other cluster
    with open(out / "assignments.csv", "w", newline="", errors="surrogateescape") as fh:
        csv.writer(fh).writerows(rows)
    plan = export(out, dest, mode="move")
    assert len(plan.steps) == len(files)
    undo_export(dest)
    assert taken.read_bytes() == b"a new photo in the moved one's place"
    assert os.path.isfile(steps[0].target)  # the first photo: still kept, never lost
    assert all(f.exists() for f in files)


def test_undo_names_the_photos_it_cannot_find(tmp_path: Path) -> None:
    out, files = _tree(tmp_path)
    dest = tmp_path / "dest"
    steps = export(out, dest, mode="move").steps
    os.unlink(steps[0].target)  # the user deleted it in DEST
    result = undo_export(dest)
    assert result.not_found == [steps[0].source]
    assert result.restored == len(files) - 1 and result.kept_edited == []


# -- undo resumes after a kill ----------------------------------------------------------------


def _as_if_cross_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """``os.link`` across folders fails as between two file systems (within one it works)."""
    real = os.link

    def link(src: str, dst: str, *args: object, **kwargs: object) -> None:
        if os.path.dirname(os.fspath(src)) != os.path.dirname(os.fspath(dst)):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), os.fspath(dst))
        real(src, dst, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", link)


def test_undo_killed_during_a_cross_device_restore_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as_if_cross_device(monkeypatch)
    out, files = _tree(tmp_path)
    before = _digests(files)
    dest = tmp_path / "dest"
    steps = export(out, dest, mode="move").steps
    assert not any(f.exists() for f in files)
    # What a kill inside `_copy_new(target, source)` leaves: half of `source.part` written ...
    data = Path(steps[0].target).read_bytes()
    Path(_part_of(steps[0].source)).write_bytes(data[: len(data) // 2])
    # ... or the whole of it, already linked to `source`, but the target not yet removed.
    part = Path(_part_of(steps[1].source))
    part.write_bytes(Path(steps[1].target).read_bytes())
    os.link(part, steps[1].source)
    result = undo_export(dest)
    assert _digests(files) == before
    assert not list((tmp_path / "photos").rglob(f"*{PART_SUFFIX}"))
    assert result.restored == len(files) and result.not_found == []
    assert not _left_in(dest)


def test_undo_never_removes_a_part_file_that_is_not_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as_if_cross_device(monkeypatch)
    out, files = _tree(tmp_path, n_per_cluster=1)
    before = _digests(files)
    dest = tmp_path / "dest"
    steps = export(out, dest, mode="move").steps
    theirs = Path(_part_of(steps[0].source))
    theirs.write_bytes(b"the user's own file")
    with pytest.raises(OutputError, match="in the way"):
        undo_export(dest)
    assert theirs.read_bytes() == b"the user's own file"
    assert all(os.path.isfile(s.target) or os.path.isfile(s.source) for s in steps)
    theirs.unlink()
    undo_export(dest)
    assert _digests(files) == before


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        ("x", "no 'path', 'cluster', 'rank' column"),
        ("cut", "disagree"),
        ("cluster 99", "cluster 99: 1 photo, not listed"),
        ("clusters header only", "disagree"),
        ("clusters no size", "no 'size' column"),
        ("empty", "no 'path', 'cluster', 'rank' column"),
    ],
)
def test_damaged_or_disagreeing_csvs_are_said_and_nothing_is_exported(
    tmp_path: Path, damage: str, said: str
) -> None:
    """What export reads is checked: a CSV cut short, emptied, edited, or not the one a run
    writes is said in words (it exported 0 or 2 of 15 photos, or into a folder 099)."""
    out, files = _tree(tmp_path, n_per_cluster=3)
    table = out / "assignments.csv"
    text = table.read_text("utf-8", errors="surrogateescape")
    if damage == "x":
        table.write_text("x")
    elif damage == "empty":
        table.write_text("")
    elif damage == "cut":
        table.write_text(text[: len(text) // 2].rsplit("\n", 1)[0] + "\n", errors="surrogateescape")
    elif damage == "cluster 99":
        lines = text.splitlines(keepends=True)
        table.write_text("".join(lines[:-1]) + lines[-1].replace(",1,", ",99,", 1),
                         errors="surrogateescape")  # fmt: skip
    elif damage == "clusters header only":
        (out / "clusters.csv").write_text("cluster,size,name,medoid,top_classes\n")
    else:
        (out / "clusters.csv").write_text("cluster,name\n0,a\n1,b\n")
    dest = tmp_path / "dest"
    done = CliRunner().invoke(app, ["export", str(out), "--to", str(dest), "--mode", "move"])
    assert done.exit_code == 2 and said in " ".join(done.output.split()), done.output
    assert not dest.exists() and all(f.exists() for f in files)


@pytest.mark.parametrize("cross_device", [False, True])
@pytest.mark.parametrize("content", ["empty", "start", "whole", "other"])
def test_undo_leaves_the_users_own_part_files_beside_the_originals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, cross_device: bool
) -> None:
    """``photo.jpg.part`` beside a moved photo (a browser's download cut short, say) is the
    user's, whatever it holds: an undo puts the photo back beside it and never removes it.
    (An empty file, or the photo's first bytes, once read as a copy of ours cut short.)"""
    if cross_device:
        _as_if_cross_device(monkeypatch)
    out, files = _tree(tmp_path, n_per_cluster=1)
    before = _digests(files)
    dest = tmp_path / "dest"
    steps = export(out, dest, mode="move").steps
    theirs = {}
    for step in steps:
        data = Path(step.target).read_bytes()
        part = Path(step.source + ".part")
        held = {"empty": b"", "start": data[:100], "whole": data, "other": b"x"}[content]
        part.write_bytes(held)
        theirs[part] = held
    result = undo_export(dest)
    assert result.restored == len(files) and _digests(files) == before
    assert {p: p.read_bytes() for p in theirs} == theirs


@pytest.mark.parametrize("length", [1, 200, 201, 250])
def test_a_part_file_name_fits_beside_any_name(tmp_path: Path, length: int) -> None:
    name = ("é" if length % 2 else "a") * (length // (2 if length % 2 else 1)) + ".jpg"
    name = name[-250:] if len(os.fsencode(name)) > 255 else name
    part = Path(_part_of(str(tmp_path / name)))
    assert part.parent == tmp_path and part.name.startswith(".")
    assert part.name.endswith(PART_SUFFIX) and len(os.fsencode(part.name)) <= 255
    part.write_bytes(b"")  # the file system takes the name


@pytest.mark.slow
def test_copy_killed_midway_then_export_again_resumes(tmp_path: Path) -> None:
    out, files = _tree(tmp_path, n_per_cluster=1500, size=2000)
    before = _digests(files)
    dest = tmp_path / "dest"
    cmd = [*CLI, "export", str(out), "--to", str(dest), "--mode", "copy"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while sum(1 for p in dest.rglob("*.jpg")) < len(files) // 3:
        assert proc.poll() is None, "the copy finished before the kill"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert 0 < sum(1 for p in dest.rglob("*.jpg")) < len(files), "killed part-way"
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "already exported" in done.stderr
    copies = [p for p in dest.rglob("*") if p.is_file() and JOURNAL_DIR not in p.parts]
    assert sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in copies) == sorted(
        before.values()
    )  # every photo exactly once, byte-identical, no stale .part left
    done = subprocess.run([*CLI, "export", "--undo", str(dest)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _digests(files) == before
    assert not _left_in(dest)


def test_a_copy_killed_between_its_link_and_unlink_leaves_no_second_copy(tmp_path: Path) -> None:
    """A kill after a copy's ``.part`` was linked into place, before it was unlinked, leaves
    the photo twice (CI caught it once in the test above); the next export removes that
    ``.part``, and only that: one that is not a link to the copy is someone's file."""
    out, files = _tree(tmp_path)
    dest = tmp_path / "dest"
    first = export(out, dest, mode="copy").steps
    linked, other = _part_of(first[0].target), _part_of(first[1].target)
    os.link(first[0].target, linked)  # the state the kill leaves
    Path(other).write_bytes(Path(first[1].target).read_bytes())  # same bytes, not ours
    again = export(out, dest, mode="copy")
    assert again.steps == [] and len(again.already) == len(files)
    assert not os.path.lexists(linked) and os.path.isfile(other)
    os.unlink(other)
    undo_export(dest)
    assert not _left_in(dest)


@pytest.mark.parametrize("first", MODES)
@pytest.mark.parametrize("second", MODES)
def test_an_export_beside_one_in_another_mode_says_so(
    tmp_path: Path, first: str, second: str
) -> None:
    """An export into a DEST where an export in another mode put the same photos makes a
    second one of each beside the first (what was asked) and says so, naming one; in the
    same mode it skips them; and one undo puts every photo back."""
    out, files = _tree(tmp_path)
    before = _digests(files)
    dest = tmp_path / "dest"
    earlier = export(out, dest, mode=first).steps  # type: ignore[arg-type]
    cmd = ["export", str(out), "--to", str(dest), "--mode", second]
    res = CliRunner().invoke(app, cmd)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    if first == second or first == "move":  # (after a move the originals are gone)
        assert "from an earlier" not in text
    else:
        n = len(files)
        assert f"{n} photos also in {dest} from an earlier {first} export" in text
        assert any(f"(e.g. {s.target})" in text for s in earlier)
        assert f"{n} photos exported into {dest} ({second})" in text
    undo_export(dest)
    assert _digests(files) == before and not _left_in(dest)


def _other_device(tmp_path: Path) -> Path:
    """A folder on another file system than ``tmp_path`` (RAM-backed /dev/shm), or a skip."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system here")
    folder = Path(tempfile.mkdtemp(dir=shm))
    return folder


@pytest.mark.parametrize("device", ["same", "other"])
def test_a_move_killed_before_it_removed_the_original_resumes_without_a_second(
    tmp_path: Path, device: str
) -> None:
    """A move export killed after the photo is in DEST (a link, or across devices a copy)
    and before its original is removed: the export run again finishes that move, with no
    second copy beside it, and the undo puts every photo back."""
    out, files = _tree(tmp_path, n_per_cluster=1)
    before = _digests(files)
    base = tmp_path if device == "same" else _other_device(tmp_path)
    dest = base / "dest"
    killed = f"""
import os, signal
import imgclust.export as ex
sync = ex._fsync_dir
def fsync(path):
    sync(path)
    if path.name != {JOURNAL_DIR!r}:  # (the photo is in DEST; its original not yet removed)
        os.kill(os.getpid(), signal.SIGKILL)
ex._fsync_dir = fsync
ex.export({str(out)!r}, {str(dest)!r}, mode="move")
"""
    try:
        proc = subprocess.run([sys.executable, "-c", killed], capture_output=True, text=True)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        placed = [p for p in dest.rglob("*") if p.is_file() and JOURNAL_DIR not in p.parts]
        assert len(placed) == 1 and sum(f.exists() for f in files) == len(files)
        again = export(out, dest, mode="move")
        assert len(again.steps) == len(files) and again.beside == []
        moved = [p for p in dest.rglob("*") if p.is_file() and JOURNAL_DIR not in p.parts]
        assert len(moved) == len(files) and not any(f.exists() for f in files)
        undo_export(dest)
        assert _digests(files) == before
    finally:
        if base != tmp_path:
            shutil.rmtree(base, ignore_errors=True)


def test_an_undone_export_hides_nothing_from_scans(tmp_path: Path) -> None:
    """Once every export into a folder is undone, what is there is the user's again: scans
    read it (its undone journals stay, as the history)."""
    from imgclust.scan import scan

    out, _ = _tree(tmp_path, n_per_cluster=1)
    dest = tmp_path / "photos" / "sorted"
    export(out, dest, mode="move")
    assert str(dest) in scan([tmp_path / "photos"]).skipped
    undo_export(dest)
    (dest / "new.jpg").write_bytes(b"a photo the user put here afterwards")
    found = scan([tmp_path / "photos"])
    assert not found.skipped and str(dest / "new.jpg") in {r.path for r in found.records}


# -- exporting again --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_export_again_is_idempotent(tmp_path: Path, mode: str) -> None:
    out, files = _tree(tmp_path)
    before = _digests(files)
    dest = tmp_path / "dest"
    first = export(out, dest, mode=mode)  # type: ignore[arg-type]
    again = export(out, dest, mode=mode)  # type: ignore[arg-type]
    assert (again.steps, again.missing) == ([], [])
    assert set(again.already) == set(first.steps)
    made = [p for p in dest.rglob("*") if JOURNAL_DIR not in p.parts and not p.is_dir()]
    assert len(made) == len(files)
    undo_export(dest)
    assert _digests(files) == before


def test_export_again_reads_only_the_originals_whose_size_or_mtime_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy export again stats each original: one at the size and mtime its journal holds
    is not read again; a touched one is read, found the same, and stays exported; one that
    changed is read and copied beside (and journals without mtimes are read whole)."""
    import imgclust.export as exported

    out, files = _tree(tmp_path)
    dest = tmp_path / "dest"
    first = export(out, dest, mode="copy").steps
    read: list[str] = []
    real = exported._fingerprint

    def fingerprint(path: str) -> tuple[int, str]:
        read.append(path)
        return real(path)

    monkeypatch.setattr(exported, "_fingerprint", fingerprint)
    originals = {s.source for s in first}

    def export_again() -> list[str]:
        read.clear()
        again = export(out, dest, mode="copy")
        assert len(again.steps) + len(again.already) == len(files)
        return [s.source for s in again.steps]

    assert export_again() == [] and not originals & set(read)
    assert sorted(read) == sorted(s.target for s in first)  # each copy checked once
    touched, changed, resized = first[0].source, first[1].source, first[2].source
    st = os.stat(touched)
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes
    Path(changed).write_bytes(os.urandom(1000))  # same size, new bytes (and mtime)
    st = os.stat(resized)
    Path(resized).write_bytes(os.urandom(999))  # new size, its mtime put back
    os.utime(resized, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sorted(export_again()) == sorted([changed, resized])
    assert originals & set(read) == {touched, changed, resized}
    journal = next((dest / JOURNAL_DIR).glob("journal-0001.jsonl"))
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    old = [{k: v for k, v in e.items() if k != "mtime_ns"} for e in lines]  # an older export's
    journal.write_text("".join(json.dumps(e) + "\n" for e in old))
    export_again()
    assert originals - {changed, resized} <= set(read)  # no mtimes: read whole (those two
    # have newer copies, journalled with mtimes)
    kept = undo_export(dest).kept_blocked  # the first copies of those two: the last of them
    assert sorted(kept) == sorted(s.target for s in first if s.source in (changed, resized))
    assert sorted(map(str, _left_in(dest))) == sorted(kept)


def test_export_again_makes_only_what_is_gone_or_new(tmp_path: Path) -> None:
    out, files = _tree(tmp_path)
    dest = tmp_path / "dest"
    first = export(out, dest, mode="copy").steps
    os.unlink(first[0].target)  # deleted in DEST: copied again, under its old name
    Path(first[1].target).write_bytes(b"edited")  # edited in DEST: the user's now, kept
    Path(first[2].source).write_bytes(b"a new version")  # a new original: copied beside
    again = export(out, dest, mode="copy")
    assert [s.source for s in again.steps] == [first[0].source, first[2].source]
    assert again.steps[0] == first[0] and again.steps[1].target != first[2].target
    assert Path(again.steps[1].target).parent == Path(first[2].target).parent
    assert len(again.already) == len(files) - 2
    assert Path(first[1].target).read_bytes() == b"edited"


@pytest.mark.parametrize("mode", MODES)
def test_export_after_the_clusters_changed_is_refused(tmp_path: Path, mode: str) -> None:
    out, files = _tree(tmp_path)
    before = _digests(files)
    dest = tmp_path / "dest"
    export(out, dest, mode=mode)  # type: ignore[arg-type]
    tree = sorted(str(p) for p in dest.rglob("*"))
    with open(out / "assignments.csv", newline="", errors="surrogateescape") as fh:
        rows = list(csv.reader(fh))
    for row in rows[1:]:
        row[1] = str(1 - int(row[1]))  # every photo in the other cluster now
    with open(out / "assignments.csv", "w", newline="", errors="surrogateescape") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(OutputError, match="--undo"):
        export(out, dest, mode=mode)  # type: ignore[arg-type]
    assert sorted(str(p) for p in dest.rglob("*")) == tree
    undo_export(dest)
    export(out, dest, mode=mode)  # type: ignore[arg-type]
    undo_export(dest)
    assert _digests(files) == before


@settings(max_examples=40, deadline=None)
@given(
    n_per_cluster=st.integers(0, 3),
    ops=st.lists(st.sampled_from(["symlink", "copy", "move", "undo"]), max_size=6),
    links=st.booleans(),
)
def test_no_sequence_of_exports_and_undos_loses_a_photo(
    n_per_cluster: int, ops: list[str], links: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out, files = _tree(Path(tmp), n_per_cluster=n_per_cluster)
        texts = _as_links(Path(tmp), files) if links else {}
        before = _digests(files)
        dest = Path(tmp) / "dest"
        for op in [*ops, "undo"]:
            if op == "undo":
                with contextlib.suppress(InputError):  # nothing left to undo
                    undo_export(dest)
            else:
                export(out, dest, mode=op)  # type: ignore[arg-type]
            here = {_sha(p) for p in Path(tmp).rglob("*") if p.is_file() and not p.is_symlink()}
            assert set(before.values()) <= here  # every photo is somewhere, at any moment
        assert _digests(files) == before
        assert {f: os.readlink(f) for f in texts} == texts  # each link as it was
        assert not _left_in(dest)


# -- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "column", "value"),
    [("clusters.csv", 0, "x1"), ("assignments.csv", 1, "abc"), ("assignments.csv", 2, "1.5")],
)
def test_cli_a_non_numeric_id_is_a_clear_error(
    tmp_path: Path, file: str, column: int, value: str
) -> None:
    out, _ = _tree(tmp_path, n_per_cluster=1)
    with open(out / file, newline="", errors="surrogateescape") as fh:
        rows = list(csv.reader(fh))
    rows[2][column] = value
    with open(out / file, "w", newline="", errors="surrogateescape") as fh:
        csv.writer(fh).writerows(rows)
    res = CliRunner().invoke(app, ["export", str(out), "--to", str(tmp_path / "dest")])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert f"{out / file}, line 3: " in res.output and repr(value) in res.output  # unwrapped


@pytest.mark.parametrize(
    ("to", "blamed"),
    [
        ("f", "f"),
        ("f/sub", "f"),
        ("f/sub/deeper", "f"),
        ("nothing", "nothing"),
        ("nothing/sub", "nothing"),
    ],
)
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_dest_that_cannot_be_a_folder_is_named(
    tmp_path: Path, to: str, blamed: str, dry_run: bool
) -> None:
    """--to a file, a folder under a file, or under a link to nothing: one line naming that
    file or link (not "make sure it is writable"), and nothing is made."""
    out, _ = _tree(tmp_path, n_per_cluster=1)
    (tmp_path / "f").write_bytes(b"a file")
    os.symlink(tmp_path / "gone", tmp_path / "nothing")
    before = sorted(tmp_path.rglob("*"))
    cmd = ["export", str(out), "--to", str(tmp_path / to), "--mode", "copy"]
    res = CliRunner().invoke(app, cmd + (["--dry-run"] if dry_run else []))
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "writable" not in res.output
    assert res.output.startswith(f"error: {tmp_path / blamed} "), res.output
    assert ("link to nothing" if blamed == "nothing" else "not a folder") in res.output
    assert sorted(tmp_path.rglob("*")) == before


def test_a_run_on_photos_a_move_export_took_names_the_export(tmp_path: Path) -> None:
    """The photos of a folder moved into an export inside it: a run there finds nothing to
    cluster, and says which folder it did not scan, and how to put the photos back."""
    out, files = _tree(tmp_path)
    dest = tmp_path / "photos" / "sorted"
    export(out, dest, mode="move")
    assert not any(f.exists() for f in files)
    cmd = ["run", str(tmp_path / "photos"), "--out", str(tmp_path / "again")]
    res = CliRunner().invoke(app, cmd)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert "0 candidate files" in res.output and f"not scanned: {dest} " in res.output
    assert "imgclust export --undo" in res.output


def test_undo_with_dry_run_is_refused_and_touches_nothing(tmp_path: Path) -> None:
    """`--dry-run` means touch nothing: with `--undo` (which has no plan to print) it is
    refused, where it used to run the undo."""
    out, _ = _tree(tmp_path)
    dest = tmp_path / "dest"
    export(out, dest, mode="move")
    seen = _snapshot(tmp_path)
    res = CliRunner().invoke(app, ["export", "--undo", str(dest), "--dry-run"])
    assert res.exit_code == 2 and "--dry-run" in res.output, res.output
    assert _snapshot(tmp_path) == seen
    undo_export(dest)


def test_cli_prints_whole_paths_and_counts_in_words(tmp_path: Path) -> None:
    deep = tmp_path / ("a-folder-with-a-long-name-" * 5)
    deep.mkdir()
    out, files = _tree(deep, n_per_cluster=4)
    dest = deep / "dest"
    plan = plan_export(out, dest, mode="move")
    gone = next(s for s in plan.steps if s.source.endswith("img3.jpg"))
    cmd = ["export", str(out), "--to", str(dest), "--mode", "move"]
    res = CliRunner().invoke(app, cmd)
    assert res.exit_code == 0, res.output
    assert f"{len(files)} photos exported into {dest} (move)" in res.output.splitlines()
    res = CliRunner().invoke(app, cmd)
    assert f"{len(files)} photos already exported into {dest}, skipped" in res.output
    os.unlink(gone.target)
    res = CliRunner().invoke(app, ["export", "--undo", str(dest)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert f"export into {dest} undone: {len(files) - 1} moved photos put back" in lines[0]
    assert any(line.endswith(f": {gone.source}") for line in lines), res.output
    one = tmp_path / "one"
    one.mkdir()
    (one / "p.jpg").write_bytes(b"x")
    (one / "clusters.csv").write_text("cluster,size,name,medoid,top_classes\n0,1,cat,,\n")
    (one / "assignments.csv").write_text(f"path,cluster,rank\n{one / 'p.jpg'},0,0\n")
    d = tmp_path / "d"
    res = CliRunner().invoke(app, ["export", str(one), "--to", str(d), "--mode", "copy"])
    assert res.exit_code == 0, res.output
    assert "1 photo exported into" in res.output and "1 photos" not in res.output
    res = CliRunner().invoke(app, ["export", "--undo", str(d)])
    assert "0 moved photos put back, 1 copy or link removed" in res.output


def test_a_new_photo_never_takes_a_name_a_journal_gave_another(tmp_path: Path) -> None:
    out, _ = _tree(tmp_path, n_per_cluster=1)
    dest = tmp_path / "dest"
    first = export(out, dest, mode="move").steps
    os.unlink(first[0].target)  # the user deleted that moved photo in DEST
    stranger = tmp_path / "photos" / "new" / Path(first[0].source).name  # same name, cluster
    stranger.parent.mkdir()
    stranger.write_bytes(b"another photo")
    _append_row(out, [str(stranger), 0, 9, 0.1, 0, "", ""])
    (again,) = export(out, dest, mode="move").steps
    assert again.source == str(stranger) and again.target != first[0].target
    result = undo_export(dest)
    assert stranger.read_bytes() == b"another photo"
    assert not os.path.lexists(first[0].source)  # never put back at the other photo's place
    assert result.not_found == [first[0].source]


def test_a_photo_listed_twice_is_exported_once(tmp_path: Path) -> None:
    out, files = _tree(tmp_path, n_per_cluster=1)
    before = _digests(files)
    _append_row(out, [str(files[0]), 1, 5, 0.1, 0, "", ""])
    assert len(export(out, tmp_path / "dest", mode="move").steps) == len(files)
    undo_export(tmp_path / "dest")
    assert _digests(files) == before


#: Runs an export (or an undo) that stops at its first photo until the test says go: a
#: real second process holding DEST while the test runs other commands against it.
_PAUSED = """
import sys, time
from pathlib import Path
import imgclust.export as ex
out, dest, op, ready, go = sys.argv[1:]

def pause(*_):
    if not Path(ready).exists():
        Path(ready).touch()
        while not Path(go).exists():
            time.sleep(0.01)

if op == "undo":
    revert = ex._revert
    ex._revert = lambda *a: (pause(), revert(*a))[1]
    ex.undo_export(dest)
else:
    ex.export(out, dest, mode=op, on_step=pause)
"""


def test_an_export_killed_before_its_journal_hides_no_photo(tmp_path: Path) -> None:
    """An export killed while it fingerprints the photos (before its journal, so before any
    photo) leaves DEST's lock files behind: the user's photos in DEST are still scanned,
    the undo says there is nothing to undo, and the next export and undo work."""
    from imgclust.scan import scan

    out, files = _tree(tmp_path)
    before = _digests(files)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine.jpg").write_bytes(b"the user's photo")
    ready = tmp_path / "ready"
    hashing = f"""
import sys, time
from pathlib import Path
import imgclust.export as ex
ex._fingerprint = lambda path: (Path({str(ready)!r}).touch(), time.sleep(600))
ex.export({str(out)!r}, {str(dest)!r}, mode="copy")
"""
    proc = subprocess.Popen([sys.executable, "-c", hashing])
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    assert {p.name for p in (dest / JOURNAL_DIR).iterdir()} == {"lock", "lock.json"}
    found = scan([tmp_path])
    assert str(dest / "mine.jpg") in {r.path for r in found.records} and not found.skipped
    res = CliRunner().invoke(app, ["export", "--undo", str(dest)])
    assert res.exit_code == 2 and "holds no imgclust export to undo" in res.output
    export(out, dest, mode="copy")
    assert scan([tmp_path]).skipped == [str(dest)]  # (its copies are not photos to scan)
    undo_export(dest)
    assert _digests(files) == before and (dest / "mine.jpg").exists()


def _snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (the journal folder's lock files aside) and its bytes."""
    skip = {"lock", "lock.json"}
    return {
        str(p.relative_to(folder)): "dir" if p.is_dir() else os.readlink(p) if p.is_symlink()
        else _sha(p)
        for p in sorted(folder.rglob("*")) if p.name not in skip
    }  # fmt: skip


@pytest.mark.parametrize("first", ["copy", "move", "undo"])
@pytest.mark.parametrize("second", ["symlink", "copy", "move", "undo", "dry-run"])
def test_dest_is_used_by_one_export_or_undo_at_a_time(
    tmp_path: Path, first: str, second: str
) -> None:
    """While an export or undo runs in DEST (another process, paused at its first photo),
    every other export or undo there is refused with nothing touched, naming the one that
    runs; once it ends the second works, and an undo puts every photo back. (An undo run
    during a move export used to put back the photos moved so far, mark the journal undone,
    and leave the rest in DEST with a journal that no undo could read.)"""
    out, files = _tree(tmp_path, n_per_cluster=4)
    before = _digests(files)
    dest = tmp_path / "dest"
    if first == "undo":
        export(out, dest, mode="move")
    ready, go = tmp_path / "ready", tmp_path / "go"
    op = "move" if first == "undo" else first
    holder = subprocess.Popen(
        [sys.executable, "-c", _PAUSED, str(out), str(dest), first if first == "undo" else op,
         str(ready), str(go)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert holder.poll() is None, holder.stderr.read() if holder.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.01)
        seen = _snapshot(tmp_path)
        args = ["--undo", str(dest)] if second == "undo" else [str(out), "--to", str(dest),
                                                               "--mode", second]  # fmt: skip
        if second == "dry-run":  # (what it would plan is in flux: said, not guessed)
            args[-1:] = ["copy", "--dry-run"]
        refused = CliRunner().invoke(app, ["export", *args])
        assert refused.exit_code == 2, refused.output
        text = " ".join(refused.output.split())
        running = "`imgclust export --undo`" if first == "undo" else "`imgclust export`"
        assert f"is in use by {running} (pid {holder.pid})" in text
        assert "Traceback" not in refused.output
        assert _snapshot(tmp_path) == seen  # nothing touched, in DEST or among the photos
    finally:
        go.touch()
        assert holder.wait(timeout=60) == 0, holder.stderr.read() if holder.stderr else ""
    if second in ("undo", "dry-run") or first == "undo":
        with contextlib.suppress(InputError):  # (nothing left to undo after the first undo)
            undo_export(dest)
    else:
        export(out, dest, mode=second)  # type: ignore[arg-type]
        undo_export(dest)
    assert _digests(files) == before  # every photo back, byte-identical
    assert not _left_in(dest)


@pytest.mark.parametrize("command", ["symlink", "copy", "move", "undo"])
def test_a_journal_folder_that_is_a_link_is_refused(tmp_path: Path, command: str) -> None:
    """DEST's journal folder planted as a link to another folder: no lock, holder or journal
    is written there (its files named like ours stay as they were), and no photo moves."""
    out, files = _tree(tmp_path, n_per_cluster=2)
    before = _digests(files)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("lock", "lock.json", "journal-0001.jsonl"):
        (elsewhere / name).write_text(f"the user's {name}")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / JOURNAL_DIR).symlink_to(elsewhere, target_is_directory=True)
    seen = _snapshot(elsewhere) | {n: (elsewhere / n).read_text() for n in ("lock", "lock.json")}
    args = ["--undo", str(dest)] if command == "undo" else [str(out), "--to", str(dest),
                                                             "--mode", command]  # fmt: skip
    done = CliRunner().invoke(app, ["export", *args])
    assert done.exit_code == 2 and "is a symbolic link" in " ".join(done.output.split())
    assert seen == _snapshot(elsewhere) | {
        n: (elsewhere / n).read_text() for n in ("lock", "lock.json")
    }
    assert _digests(files) == before and sorted(os.listdir(dest)) == [JOURNAL_DIR]


def test_an_export_that_fails_before_its_journal_leaves_no_folder_it_made(tmp_path: Path) -> None:
    """A photo that cannot be read (EIO) stops a copy export before its journal: DEST, its
    journal folder and the parents made for them are gone again, as if it never ran."""
    if not Path("/proc/self/mem").is_file():
        pytest.skip("needs Linux's /proc/self/mem (a file whose read fails with EIO)")
    out, files = _tree(tmp_path, n_per_cluster=1)
    _append_row(out, ["/proc/self/mem", 0, 9, 0.1, 0, "", ""])
    dest = tmp_path / "a" / "b" / "dest"
    done = CliRunner().invoke(app, ["export", str(out), "--to", str(dest), "--mode", "copy"])
    assert done.exit_code == 2 and "stopped before it placed any photo" in done.output
    assert not (tmp_path / "a").exists() and all(f.exists() for f in files)


def test_a_journal_cut_short_while_written_blocks_no_undo(tmp_path: Path) -> None:
    """A kill while a journal is written leaves its temporary file (no photo was touched
    yet): it is not read as a damaged journal, and the next undo or export removes it."""
    out, files = _tree(tmp_path, n_per_cluster=2)
    before = _digests(files)
    dest = tmp_path / "dest"
    export(out, dest, mode="move")
    cut = dest / JOURNAL_DIR / "journal-0002.jsonl.tmp4242.jsonl"
    cut.write_text('{"version": 2, "mode": "copy", "n": 3}\n{"source": "/a", "tar')
    assert len(plan_export(out, dest, mode="move").already) == len(files)
    assert undo_export(dest).restored == len(files)
    assert _digests(files) == before and not cut.exists()


def test_a_read_only_dest_with_nothing_to_do_is_no_error(tmp_path: Path) -> None:
    """Exporting again into a DEST that can no longer be written (a read-only mount) says
    what is already there, as before DEST had a lock; work there, and an undo, say why not."""
    out, files = _tree(tmp_path, n_per_cluster=2)
    dest = tmp_path / "dest"
    export(out, dest, mode="copy")
    folders = [dest, *(p for p in dest.rglob("*") if p.is_dir())]
    if os.geteuid() != 0:
        for folder in folders:
            folder.chmod(0o555)
    else:  # (root writes anywhere: a read-only bind mount)
        bind = subprocess.run(["mount", "--bind", str(dest), str(dest)], capture_output=True)
        if bind.returncode:
            pytest.skip("cannot make a read-only folder here (root, and no mount permission)")
        subprocess.run(["mount", "-o", "remount,bind,ro", str(dest)], check=True)
    try:
        done = CliRunner().invoke(app, ["export", str(out), "--to", str(dest), "--mode", "copy"])
        assert done.exit_code == 0, done.output
        assert f"{len(files)} photos already exported" in " ".join(done.output.split())
        Path(files[0]).write_bytes(b"a new version")  # now there is work: refused, and why
        for args in (["export", str(out), "--to", str(dest), "--mode", "copy"],
                     ["export", "--undo", str(dest)]):  # fmt: skip
            done = CliRunner().invoke(app, args)
            text = " ".join(done.output.split())
            assert done.exit_code == 2 and "cannot write" in text and "Traceback" not in text
            assert "output folder" not in text
    finally:
        if os.geteuid() != 0:
            for folder in folders:
                folder.chmod(0o755)
        else:
            subprocess.run(["umount", str(dest)], check=True)
    undone = undo_export(dest)  # (a copy goes while its original holds what was copied)
    assert undone.removed == len(files) - 1 and len(undone.kept_blocked) == 1


@pytest.mark.parametrize(
    "where",
    ["out", "out/sorted", "out/.imgclust/x", "linked-out", "linked-sub", "linked-sub/new"],
)
@pytest.mark.parametrize("mode", ["symlink", "copy", "move"])
@pytest.mark.parametrize("dry_run", [False, True])
def test_export_into_the_runs_own_output_folder_is_refused(
    tmp_path: Path, where: str, mode: str, dry_run: bool
) -> None:
    """The report folder is remade (and deleted) freely: a move into it would take the photos
    with it. Refused before anything is written, under any name for that folder."""
    _, files = _tree(tmp_path)
    out = tmp_path / "out"
    (tmp_path / "linked-out").symlink_to(out)
    (out / "sub").mkdir()
    (tmp_path / "linked-sub").symlink_to(out / "sub")  # a link into it: inside it too
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    dest = tmp_path / where
    args = ["export", str(out), "--to", str(dest), "--mode", mode]
    result = CliRunner().invoke(app, args + (["--dry-run"] if dry_run else []))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "the run's output folder" in result.output and "Traceback" not in result.output
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert all(p.is_file() for p in files)
    # A folder beside it whose name merely starts the same is not inside it.
    beside = tmp_path / "out-sorted"
    assert plan_export(out, beside, mode=mode).steps
    assert plan_export(out, out / ".." / "out-sorted", mode=mode).steps  # (beside it too)


@pytest.mark.parametrize("mode", ["move", "copy", "symlink"])
def test_a_move_export_waits_for_a_review_or_run_of_its_folder(tmp_path: Path, mode: str) -> None:
    """A review (or a run) of OUT reads the photos a move would take away: a move export is
    refused while one holds OUT, with nothing moved; links and copies go ahead."""
    from imgclust._fs import OutputLock

    out, files = _tree(tmp_path)
    (out / ".imgclust").mkdir()
    dest = tmp_path / "dest"
    with OutputLock(out / ".imgclust", "review"):
        if mode == "move":
            with pytest.raises(OutputError, match=r"in use by `imgclust review`.*--mode copy"):
                export(out, dest, mode=mode)
            assert all(p.is_file() for p in files) and not dest.exists()
        else:
            assert len(export(out, dest, mode=mode).steps) == len(files)
    if mode == "move":  # once it is closed
        assert len(export(out, dest, mode=mode).steps) == len(files)
        assert not any(p.exists() for p in files)


@pytest.mark.parametrize("mode", ["move", "copy", "symlink"])
def test_an_export_of_a_folder_whose_first_run_is_running_says_so(
    tmp_path: Path, mode: str
) -> None:
    """Not "clusters.csv not found; give the output folder of `imgclust run`": it is one."""
    from imgclust._fs import OutputLock

    out = tmp_path / "out"
    (out / ".imgclust").mkdir(parents=True)
    running = pytest.raises(OutputError, match=r"in use by `imgclust run`.*not written the run's")
    with OutputLock(out / ".imgclust", "run"), running:
        plan_export(out, tmp_path / "dest", mode=mode)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"clusters\.csv not found"):  # (a run killed early)
        plan_export(out, tmp_path / "dest", mode=mode)  # type: ignore[arg-type]
    assert not (tmp_path / "dest").exists()


# -- a collection of links: a move export moves the links ------------------------------------


def test_a_move_export_of_links_moves_the_links_and_its_undo_puts_them_back(
    tmp_path: Path,
) -> None:
    """Photos that are links (relative, absolute, to a link): the move takes the links, as
    `mv` would, each placed in DEST leading to its very file (a relative one moved as it is
    would lead nowhere); the files they lead to are never touched; the undo puts each link
    back as it was, also after the emptied photo folders were removed."""
    out, files = _tree(tmp_path, n_per_cluster=3)
    texts = _as_links(tmp_path, files)
    lib = {p: _sha(p) for p in (tmp_path / "lib").iterdir() if not p.is_symlink()}
    before = _digests(files)
    dest = tmp_path / "dest"
    plan = export(out, dest, mode="move")
    assert len(plan.steps) == len(files) and not any(os.path.lexists(f) for f in files)
    for step in plan.steps:
        target = Path(step.target)
        assert target.is_symlink() and os.path.isabs(os.readlink(target))
        assert _sha(target) == before[step.source]
    assert {p: _sha(p) for p in lib} == lib
    again = export(out, dest, mode="move")  # the same export again: nothing to do
    assert again.steps == [] and len(again.already) == len(files)
    shutil.rmtree(tmp_path / "photos")  # emptied by the move
    result = undo_export(dest)
    assert result.restored == len(files)
    assert {f: os.readlink(f) for f in files} == texts and _digests(files) == before
    assert {p: _sha(p) for p in lib} == lib and not _left_in(dest)


def test_a_moved_link_whose_place_another_file_took_stays_for_the_next_undo(
    tmp_path: Path,
) -> None:
    out, files = _tree(tmp_path, n_per_cluster=1)
    texts = _as_links(tmp_path, files)
    dest = tmp_path / "dest"
    export(out, dest, mode="move")
    files[0].write_bytes(b"a new photo, not the link")
    first = undo_export(dest)
    assert first.restored == len(files) - 1 and files[0].read_bytes().startswith(b"a new")
    files[0].unlink()
    assert undo_export(dest).restored == 1
    assert {f: os.readlink(f) for f in files} == texts and not _left_in(dest)


def test_a_move_of_links_killed_before_it_removed_them_resumes(tmp_path: Path) -> None:
    out, files = _tree(tmp_path, n_per_cluster=1)
    texts = _as_links(tmp_path, files)
    before = _digests(files)
    dest = tmp_path / "dest"
    killed = f"""
import os, signal
import imgclust.export as ex
sync = ex._fsync_dir
def fsync(path):
    sync(path)
    if path.name != {JOURNAL_DIR!r}:  # (the link is in DEST; the photo's not yet removed)
        os.kill(os.getpid(), signal.SIGKILL)
ex._fsync_dir = fsync
ex.export({str(out)!r}, {str(dest)!r}, mode="move")
"""
    proc = subprocess.run([sys.executable, "-c", killed], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    placed = [p for p in dest.rglob("*") if p.is_symlink()]
    assert len(placed) == 1 and all(f.is_symlink() for f in files)
    again = export(out, dest, mode="move")
    assert len(again.steps) == len(files) and again.beside == []
    assert len([p for p in dest.rglob("*") if p.is_symlink()]) == len(files)
    assert not any(os.path.lexists(f) for f in files)
    undo_export(dest)
    assert {f: os.readlink(f) for f in files} == texts and _digests(files) == before


def test_a_crafted_moved_link_never_touches_what_it_leads_to(tmp_path: Path) -> None:
    """A journal that says a link was moved, whose target in DEST is a link to a file
    elsewhere: its undo moves only links (the victim is neither read nor removed)."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.jpg"
    victim.write_bytes(b"precious")
    (dest / "001 x").mkdir(parents=True)
    target = dest / "001 x" / "link.jpg"
    target.symlink_to(victim)
    source = tmp_path / "back" / "a.jpg"
    journal = dest / JOURNAL_DIR / "journal-0001.jsonl"
    step = {"source": str(source), "target": str(target), "link": str(victim), "was_link": "v"}
    _write_lines(journal, [{"mode": "move", "n": 1}, step])
    undo_export(dest)
    assert victim.read_bytes() == b"precious" and os.readlink(source) == "v"
    assert not os.path.lexists(target)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--to", "", "--mode", "move"], "--to needs a folder"),
        (["--to", " ", "--dry-run"], "--to needs a folder"),
        (["--undo", ""], "--undo needs a folder"),
        (["--to", "y", "--undo", "z"], "give it without OUT or --to"),
        (["--undo", "z"], "give it without OUT or --to"),  # (with OUT)
    ],
)
def test_cli_an_empty_or_contradictory_destination_is_refused(
    tmp_path: Path, args: list[str], said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--to ""` was the current folder (a move export into wherever the shell was), and an
    undo given OUT or --to ignored them."""
    monkeypatch.chdir(tmp_path)  # (where `--to ""` would have exported)
    out, files = _tree(tmp_path, n_per_cluster=1)
    before = sorted(tmp_path.rglob("*"))
    result = CliRunner().invoke(app, ["export", str(out), *args], catch_exceptions=False)
    assert result.exit_code == 2 and said in " ".join(result.output.split()), result.output
    assert sorted(tmp_path.rglob("*")) == before and all(f.exists() for f in files)


def test_a_moved_link_to_a_photo_the_move_takes_too_leads_to_its_new_place(
    tmp_path: Path,
) -> None:
    """A run lists a photo by two names (a link and its file): the move takes both, and the
    link placed in DEST leads to the file's new place, not to the one it left."""
    out, files = _tree(tmp_path, n_per_cluster=2)
    alias, real = files[1], files[0]
    alias.unlink()
    alias.symlink_to(os.path.relpath(real, alias.parent))
    text = os.readlink(alias)
    before = _digests(files)
    dest = tmp_path / "dest"
    plan = export(out, dest, mode="move")
    assert not os.path.lexists(alias) and not os.path.lexists(real)
    placed = {s.source: Path(s.target) for s in plan.steps}
    assert placed[str(alias)].is_symlink() and _sha(placed[str(alias)]) == before[str(real)]
    assert os.readlink(placed[str(alias)]) == str(placed[str(real)])
    assert export(out, dest, mode="move").steps == []  # (already there, both)
    undo_export(dest)
    assert os.readlink(alias) == text and not real.is_symlink() and _digests(files) == before
    assert not _left_in(dest)
