"""Shared fixtures: a small real-photo folder made from scikit-image's samples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from imgclust.demo import make_demo_photos

# No per-example deadline anywhere: a loaded 2-core machine (a full GC beside torch, Ray and
# OpenVINO) pauses for longer than Hypothesis' 200 ms, and it then fails the example as
# "Unreliable test timings". CI (.ci/run) also fixes the examples each property test draws,
# so that a run fails on the code rather than on a new draw; a developer's run keeps
# drawing new ones.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, database=None)
settings.load_profile(os.environ.get("IMGCLUST_HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="session")
def demo_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo folder: 12 scenes x 8 variants, plus a corrupt file and a README.txt."""
    return make_demo_photos(tmp_path_factory.mktemp("demo") / "photos")
