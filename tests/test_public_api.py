"""The public surface is explicit, sorted, and light to import."""

from __future__ import annotations

import subprocess
import sys

import imgclust


def test_all_is_sorted_and_importable() -> None:
    assert list(imgclust.__all__) == sorted(imgclust.__all__)
    for name in imgclust.__all__:
        assert hasattr(imgclust, name), name


def test_import_does_not_load_torch_or_faiss() -> None:
    code = "import sys, imgclust; print('torch' in sys.modules, 'faiss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
