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


@pytest.mark.parametrize(
    "timeout", [0, -1, 0.0, float("nan"), "5", True, 86_400.5, 3e6, 1e10, float("inf")]
)
def test_decode_timeout_must_be_positive(tmp_path: Path, timeout: object) -> None:
    """One message for every refused value (0 and -1 were told different rules)."""
    with pytest.raises(ConfigError, match="decode timeout must be a number of seconds above 0"):
        RunConfig(inputs=(tmp_path,), out=tmp_path, embed=EmbedConfig(decode_timeout=timeout))  # type: ignore[arg-type]
    for fine in (1e-6, 2.5, 86_400):  # (the poll under a deadline takes ~24.8 days at most)
        cfg = load_config((tmp_path,), tmp_path, overrides={"embed": {"decode_timeout": fine}})
        assert cfg.embed.decode_timeout == fine


@pytest.mark.parametrize("workers", [0, 1, 2, 8, 255, 256, 257, 100_000, -1])
def test_workers_has_bounds_both_ways(tmp_path: Path, workers: int) -> None:
    """0 decodes in the command's own process; more than 256 forked processes (100,000
    once hung the machine) or fewer than 0 is refused in words."""
    overrides = {"embed": {"workers": workers}}
    if 0 <= workers <= 256:
        assert load_config((tmp_path,), tmp_path, overrides=overrides).embed.workers == workers
    else:
        with pytest.raises(ConfigError, match="workers must be at"):
            load_config((tmp_path,), tmp_path, overrides=overrides)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (b"\xff\xfe\n", "it is not UTF-8 text"),
        (b"[embed]\ndecode_timeout = 1e400\n", "decode timeout must be"),
        (b"[store]\ncache_dir = 5\n", "the cache folder must be a path"),
        (b'[store]\ncache_dir = ""\n', "the cache folder must be a path"),
    ],
)
def test_a_config_file_that_cannot_be_used_says_why(tmp_path: Path, text: bytes, said: str) -> None:
    config = tmp_path / "c.toml"
    config.write_bytes(text)
    with pytest.raises(ConfigError, match=said):
        load_config((tmp_path,), tmp_path, config_file=config)
