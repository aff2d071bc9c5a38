"""Shared fixtures: a small real-photo folder made from scikit-image's samples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.errors import InvalidArgument

from imgclust.demo import make_demo_photos

# No per-example deadline anywhere: a loaded 2-core machine (a full GC beside torch, Ray and
# OpenVINO) pauses for longer than Hypothesis' 200 ms, and it then fails the example as
# "Unreliable test timings". CI (.ci/run) also fixes the examples each property test draws,
# so that a run fails on the code rather than on a new draw; a developer's run keeps
# drawing new ones.
# "ci" is Hypothesis' own where it has one (derandomized, no database, the blob printed,
# no too-slow health check; loaded by itself where a CI variable is set), else the same.
try:
    _ci = settings.get_profile("ci")
except InvalidArgument:
    _ci = settings(derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", _ci, deadline=None)
settings.register_profile("dev", deadline=None)
_default = "ci" if settings.get_current_profile_name() == "ci" else "dev"
settings.load_profile(os.environ.get("IMGCLUST_HYPOTHESIS_PROFILE", _default))


@pytest.fixture(scope="session")
def demo_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo folder: 12 scenes x 8 variants, plus a corrupt file and a README.txt."""
    return make_demo_photos(tmp_path_factory.mktemp("demo") / "photos")
