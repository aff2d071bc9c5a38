"""Engine selection without a cluster: the options, the missing-Ray message, and the local
default staying as it was (Ray never imported). The cluster runs are in test_ray.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgclust.cli import app
from imgclust.config import EmbedConfig, load_config
from imgclust.engines import create_engine
from imgclust.engines.local import LocalEngine
from imgclust.exceptions import ConfigError


def test_engine_options_are_checked() -> None:
    assert EmbedConfig().engine == "local" and EmbedConfig().ray_address is None
    with pytest.raises(ConfigError, match="unknown engine 'spark'; choose one of local, ray"):
        EmbedConfig(engine="spark")
    with pytest.raises(ConfigError, match="--ray-address needs --engine ray"):
        EmbedConfig(ray_address="10.0.0.5:6379")
    cfg = load_config(["p"], "o", overrides={"embed": {"engine": "ray", "ray_address": "h:1"}})
    assert (cfg.embed.engine, cfg.embed.ray_address) == ("ray", "h:1")
    assert isinstance(create_engine(EmbedConfig()), LocalEngine)


def test_cli_passes_the_engine_options_by_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["run", str(tmp_path), "--out", str(tmp_path / "o"), "--ray-address", "h:1"]
    )
    assert result.exit_code != 0 and "--ray-address needs --engine ray" in result.output


def test_a_missing_ray_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgclust.engines.ray import RayEngine

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: import fails
    with pytest.raises(ConfigError, match=r"pip install 'imgclust\[ray\]'"):
        RayEngine().connect()


@pytest.mark.slow
def test_the_local_default_never_imports_ray(demo_photos: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(demo_photos / "coffee", photos / "coffee")
    code = (
        "import sys; from imgclust import cluster_folder; "
        f"r = cluster_folder([{str(photos)!r}], out={str(tmp_path / 'out')!r}, k=2, workers=0); "
        "print(len(r.paths), sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["8", "[]"]
