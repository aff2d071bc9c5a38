"""Config precedence: command line > file > defaults; bad values are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgclust.config import EmbedConfig, RunConfig, load_config
from imgclust.exceptions import ConfigError


def test_precedence(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text('[cluster]\nk = 7\nfeatures = "logits"\n[embed]\nbatch_size = 8\n')
    cfg = load_config(
        (tmp_path,), tmp_path / "out", config_file=cfg_file, overrides={"cluster": {"k": 3}}
    )
    assert cfg.cluster.k == 3 and cfg.cluster.features == "logits"
    assert cfg.embed.batch_size == 8 and cfg.embed.model == "efficientnet_lite0"
    assert cfg.store_dir == tmp_path / "out" / ".imgclust" / "store"


def test_unknown_option_in_file(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text("[cluster]\nkk = 7\n")
    with pytest.raises(ConfigError, match="kk"):
        load_config((tmp_path,), tmp_path, config_file=cfg_file)


@pytest.mark.parametrize(
    "text,said",
    [
        ("k = 3\n", r"unknown entry in .*: k; .*\[embed\] \[store\] \[cluster\] \[report\] "
                     r"\(k belongs in \[cluster\]\)"),
        ("foo = 1\nbatch_size = 2\n", r"entries in .*: batch_size, foo; .*\(batch_size belongs in "
                                       r"\[embed\]\)"),
        ("[clusters]\nk = 3\n", r"unknown entry in .*: clusters; its settings go in the tables"),
        ("[embed]\nk = 3\n", r"unknown option\(s\) in \[embed\]: k \(k belongs in \[cluster\]\)"),
    ],
)  # fmt: skip
def test_a_setting_outside_its_table_says_which_table(tmp_path: Path, text: str, said: str) -> None:
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(text)
    with pytest.raises(ConfigError, match=said):
        load_config((tmp_path,), tmp_path, config_file=cfg_file)


@pytest.mark.parametrize(
    "overrides",
    [
        {"cluster": {"k": -1}},
        {"cluster": {"features": "pixels"}},
        {"cluster": {"algorithm": "dbscan"}},
        {"embed": {"batch_size": 0}},
    ],
)
def test_bad_values(tmp_path: Path, overrides: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError):
        load_config((tmp_path,), tmp_path, overrides=overrides)


@pytest.mark.parametrize("timeout", [0, -1, 0.0, float("nan"), "5", True])
def test_decode_timeout_must_be_positive(tmp_path: Path, timeout: object) -> None:
    """One message for every refused value (0 and -1 were told different rules)."""
    with pytest.raises(ConfigError, match="decode timeout must be a number of seconds above 0"):
        RunConfig(inputs=(tmp_path,), out=tmp_path, embed=EmbedConfig(decode_timeout=timeout))  # type: ignore[arg-type]
    cfg = load_config((tmp_path,), tmp_path, overrides={"embed": {"decode_timeout": 2.5}})
    assert cfg.embed.decode_timeout == 2.5
