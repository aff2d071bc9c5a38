"""scan: a hostile folder tree → sorted records and reasoned rejections, never an exception."""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

import pytest
from corpus import build_tree, encode, pattern

from imgclust.exceptions import InputError
from imgclust.scan import FileRecord, Rejection, batched, display_path, scan


def test_tree(tmp_path: Path) -> None:
    tree = build_tree(tmp_path)
    result = scan([tree.root])
    assert [r.path for r in result.records] == tree.images
    for record in result.records:
        st = os.stat(record.path)
        assert (record.size, record.mtime_ns) == (st.st_size, st.st_mtime_ns)
    reasons = {r.path: r.reason for r in result.rejected}
    assert set(reasons) == set(tree.rejected)
    for path, phrase in tree.rejected.items():
        assert phrase in reasons[path]
    assert result.n_ignored == tree.n_ignored


def test_tree_details(tmp_path: Path) -> None:
    tree = build_tree(tmp_path)
    paths = [r.path for r in scan([tree.root]).records]
    assert str(tmp_path / "x.jpg") not in paths  # a folder with an image name is walked
    assert str(tmp_path / "x.jpg" / "inside.png") in paths
    assert str(tmp_path / "a.jpg") in paths and str(tmp_path / "copy of a.jpg") in paths
    assert os.fsdecode(str(tmp_path / "sub").encode() + b"/caf\xe9.jpg") in paths
    # the symlink back to the root is not followed a second time
    assert not any("back_to_root" in p for p in paths)


def test_deterministic_and_sorted(tmp_path: Path) -> None:
    tree = build_tree(tmp_path)
    first, second = scan([tree.root]), scan([tree.root])
    assert first == second
    paths = [r.path for r in first.records]
    assert paths == sorted(paths)


def test_overlapping_roots_list_each_file_once(tmp_path: Path) -> None:
    tree = build_tree(tmp_path)
    both = scan([tree.root, tmp_path / "sub", tmp_path / "a.jpg"])
    assert [r.path for r in both.records] == tree.images


def test_file_roots(tmp_path: Path) -> None:
    image, text = tmp_path / "one.png", tmp_path / "notes.txt"
    image.write_bytes(encode(pattern(4, 4), "PNG"))
    text.write_text("hello")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    result = scan([str(image), text, tmp_path / "dangling.jpg"])
    assert result.records == [
        FileRecord(str(image), image.stat().st_size, image.stat().st_mtime_ns)
    ]
    assert result.rejected == [Rejection(str(tmp_path / "dangling.jpg"), "broken symlink")]
    assert result.n_ignored == 1


def test_relative_root_gives_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert scan(["."]).records[0].path == str(tmp_path / "a.jpg")


def test_missing_root_raises_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        scan([tmp_path / "missing"])


def test_empty_folder(tmp_path: Path) -> None:
    result = scan([tmp_path])
    assert result.records == [] and result.rejected == [] and result.n_ignored == 0


def test_deep_tree_needs_no_recursion(tmp_path: Path) -> None:
    depth = 150
    folder = tmp_path
    for _ in range(depth):
        folder /= "d"
    folder.mkdir(parents=True)
    (folder / "deep.jpg").write_bytes(b"x")
    limit = sys.getrecursionlimit()
    # far fewer frames than folders: a recursive walk would raise RecursionError
    sys.setrecursionlimit(len(inspect.stack()) + 60)
    try:
        result = scan([tmp_path])
    finally:
        sys.setrecursionlimit(limit)
    assert [r.path for r in result.records] == [str(folder / "deep.jpg")]


def test_unreadable_folder_is_rejected(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: a chmod 000 folder is still readable")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "a.jpg").write_bytes(b"x")
    locked.chmod(0)
    try:
        result = scan([tmp_path])
    finally:
        locked.chmod(0o755)
    assert result.records == []
    assert result.rejected[0].path == str(locked)
    assert "folder unreadable" in result.rejected[0].reason


def test_batched() -> None:
    records = [FileRecord(str(i), 1, 1) for i in range(5)]
    assert [len(b) for b in batched(records, 2)] == [2, 2, 1]
    assert list(batched([], 3)) == []


def test_display_path_survives_undecodable_bytes() -> None:
    shown = display_path(os.fsdecode(b"/photos/caf\xe9.jpg"))
    assert shown == "/photos/caf\ufffd.jpg"
    shown.encode("utf-8")  # printable: no lone surrogates left


@pytest.mark.parametrize("depth", [0, 1, 3])
@pytest.mark.parametrize("marker", [".imgclust", ".imgclust-export"])
@pytest.mark.parametrize("how", ["folder", "file", "link"])
def test_a_root_inside_an_output_or_export_folder_is_skipped(
    tmp_path: Path, depth: int, marker: str, how: str
) -> None:
    """A root in an imgclust folder (``OUT/thumbs``; a link to it found where it really
    is) is skipped as a walk from above skips it; a sibling, a parent, an export folder
    whose journals are all undone, and the photos a link inside OUT leads to are not."""
    out = tmp_path / "out"
    (out / marker).mkdir(parents=True)
    if marker == ".imgclust-export":
        (out / marker / "journal-1.jsonl").write_text("{}")
    inner = out.joinpath(*[f"d{i}" for i in range(depth)])
    inner.mkdir(parents=True, exist_ok=True)
    (inner / "t.jpg").write_bytes(encode(pattern(4, 4), "JPEG"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "p.jpg").write_bytes(encode(pattern(5, 5), "JPEG"))
    (out / "to-mine").symlink_to(mine, target_is_directory=True)
    root: Path = {"folder": inner, "file": inner / "t.jpg", "link": tmp_path / "link"}[how]
    if how == "link":
        root.symlink_to(inner, target_is_directory=True)
    found = scan([root, out / "to-mine"])
    assert found.skipped == [str(root)] and not found.rejected
    assert [r.path for r in found.records] == [str(out / "to-mine/p.jpg")]
    above = scan([tmp_path])  # (a link met on the way is judged where it leads)
    assert [r.path for r in above.records] == [str(mine / "p.jpg")]
    # (OUT itself, or first the link, whose folder then counts as seen)
    assert above.skipped and set(above.skipped) <= {str(out), str(tmp_path / "link")}
    if marker == ".imgclust-export":  # every journal undone: the user's folder again
        (out / marker / "journal-1.jsonl").rename(out / marker / "journal-1.undone")
        again = scan([root])
        assert not again.skipped
        assert str(inner / "t.jpg") in {os.path.realpath(r.path) for r in again.records}


def test_the_excluded_folder_given_as_a_root_is_said_to_be_skipped(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.jpg").write_bytes(encode(pattern(4, 4), "JPEG"))
    found = scan([out], exclude=[out])
    assert found.skipped == [str(out)] and not found.records
