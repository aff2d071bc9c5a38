"""The whole hostile corpus through the real CLI: exit 0, every file accounted for, safe report."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from corpus import CASES, Case, build_tree

from imgclust.scan import is_image_name


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        return list(csv.DictReader(fh))


def _image_files(root: Path) -> set[str]:
    """Every non-folder entry with an image name (links included, not followed)."""
    found = set()
    for folder, dirs, files in os.walk(root):
        entries = files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]
        found |= {os.path.join(folder, f) for f in entries if is_image_name(f)}
    return found


@pytest.fixture(scope="module")
def hostile_run(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("hostile") / "in"
    cases: dict[str, Case] = {}
    for name, build in CASES.items():
        folder = root / name
        folder.mkdir(parents=True)
        try:
            cases[name] = build(folder)
        except pytest.skip.Exception:  # e.g. permissions mean nothing to root
            continue
    tree = build_tree(root / "tree")
    for scene in ("coffee", "rocket", "astronaut"):
        shutil.copytree(demo_photos / scene, root / "good" / scene)
    out = root.parent / "out"
    cmd = [sys.executable, "-m", "imgclust.cli", "run", str(root), "--out", str(out),
           "--k", "3", "--workers", "2", "--decode-timeout", "20", "--quiet"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return root, out, cases, tree, proc


def test_exit_zero_and_every_file_once(hostile_run) -> None:  # type: ignore[no-untyped-def]
    root, out, cases, tree, proc = hostile_run
    assert proc.returncode == 0, proc.stderr
    assigned = [r["path"] for r in _read(out / "assignments.csv")]
    rejected = {r["path"]: r["reason"] for r in _read(out / "rejected.csv")}
    assert len(assigned) == len(set(assigned))
    assert not set(assigned) & set(rejected)
    listed = set(assigned) | set(rejected)
    # Folders named like images are walked, not listed; everything else with an image name is.
    expected = _image_files(root) - {c.path for c in cases.values() if os.path.isdir(c.path)}
    assert listed == expected
    assert all(reason.strip() for reason in rejected.values())
    for name, case in cases.items():
        if os.path.isdir(case.path):
            continue
        if case.reason is None:
            assert case.path in assigned, (name, rejected.get(case.path))
        else:
            assert case.path in rejected, name
    for path, phrase in tree.rejected.items():
        assert phrase in rejected[path]
    assert len(assigned) >= 3 * 8


def test_report_escapes_names_and_links_resolve(hostile_run) -> None:  # type: ignore[no-untyped-def]
    _, out, cases, _, proc = hostile_run
    assert proc.returncode == 0, proc.stderr
    pages = sorted(out.glob("*.html"))
    assert pages
    linked: set[str] = set()
    for page in pages:
        text = page.read_text("utf-8", errors="surrogateescape")
        assert "<script>alert" not in text and "<\\script>" not in text, page.name
        for href in re.findall(r'href="([^"]*)"', text):
            if href.startswith("file://"):
                target = os.fsdecode(urllib.parse.unquote_to_bytes(href[len("file://") :]))
                assert os.path.lexists(target), href
                linked.add(target)
            elif not href.startswith(("#", "http")):
                local = (out / urllib.parse.unquote(href.split("#")[0])).resolve()
                assert local.is_relative_to(out.resolve()) and local.exists(), href
    assert cases["hostile_name"].path in linked
    assert cases["non_utf8_name"].path in linked
