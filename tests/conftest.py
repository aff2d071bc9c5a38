"""Shared fixtures: a small real-photo folder made from scikit-image's samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgclust.demo import make_demo_photos


@pytest.fixture(scope="session")
def demo_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo folder: 12 scenes x 8 variants, plus a corrupt file and a README.txt."""
    return make_demo_photos(tmp_path_factory.mktemp("demo") / "photos")
