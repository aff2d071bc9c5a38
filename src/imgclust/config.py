"""Frozen configuration, one dataclass per stage, with explicit precedence.

Precedence: command-line options > config file (TOML, one table per stage) > defaults here.
:func:`load_config` builds a :class:`RunConfig` from the three.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomllib

from .exceptions import ConfigError

FeatureKind = Literal["embedding", "embedding-centred", "logits", "scores", "sqrt-scores"]
FEATURE_KINDS: tuple[str, ...] = (
    "embedding",
    "embedding-centred",
    "logits",
    "scores",
    "sqrt-scores",
)
#: Inference runtimes (kept here so config imports nothing heavy; see models/runtime.py).
RUNTIMES: tuple[str, ...] = ("auto", "torch", "openvino")
#: Numeric precisions a model runs in (``NAME+bf16``, ``NAME+int8``; see models.registry).
MODEL_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
#: ``--precision`` choices: a model precision, or "auto" (int8 where OpenVINO runs the model
#: on the CPU and NNCF is installed, fp32 otherwise; see embed.model_for).
PRECISIONS: tuple[str, ...] = ("auto", *MODEL_PRECISIONS)
ALGORITHMS: tuple[str, ...] = ("auto", "kmeans", "agglomerative", "hdbscan", "spectral")
#: Cosine distance below which two images of a cluster are collapsed into one tile (re-saves,
#: resizes, small crops, bursts); measured in docs/notes-issue-5.md.
DUP_THRESHOLD = 0.1


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` naming the choices when ``value`` is not one of them."""
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}; choose one of " + ", ".join(choices))


@dataclass(frozen=True)
class EmbedConfig:
    """Which model runs, where, and how it is fed."""

    model: str = "efficientnet_lite0"
    batch_size: int = 64
    workers: int | None = None  # decode processes; None: one per CPU core (at most 8)
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    decode_timeout: float = 30.0  # seconds one file may take to decode before it is rejected
    runtime: str = "auto"  # "auto" (openvino on the CPU when installed), "torch", "openvino"
    precision: str = "auto"  # int8 on OpenVINO (3x fp32, same clusters), else fp32; or bf16


@dataclass(frozen=True)
class StoreConfig:
    """Where features are kept between runs."""

    cache_dir: Path | None = None  # None: OUT/.imgclust/store
    shard_size: int = 1024  # images per shard file; the most work a kill can lose


@dataclass(frozen=True)
class ClusterConfig:
    """What is clustered and how."""

    k: int = 100  # 0: chosen from the data (``--k auto``)
    features: str = "embedding"
    algorithm: str = "auto"  # spectral up to 20,000 images, k-means beyond (cluster/factory.py)
    seed: int = 0
    refine: tuple[int, ...] = ()  # split these clusters of OUT's saved clustering again
    refine_k: int = 0  # sub-clusters per refined cluster; 0: chosen from its members


@dataclass(frozen=True)
class ReportConfig:
    """How the HTML gallery looks."""

    thumb_size: int = 160  # longest side of a thumbnail, pixels
    clusters_per_page: int = 25
    thumbs_per_row: int = 120  # thumbnails shown per cluster row; the rest are in the CSV
    strip_size: int = 8  # thumbnails per cluster on the index page
    dup_threshold: float = DUP_THRESHOLD  # near-duplicate grouping; 0 turns it off


@dataclass(frozen=True)
class RunConfig:
    """Everything one ``imgclust run`` needs."""

    inputs: tuple[Path, ...]
    out: Path
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("give at least one folder or image to cluster")
        if self.cluster.k < 0:
            raise ConfigError(f"k must be at least 1 (or 0: auto), got {self.cluster.k}")
        check_choice("features", self.cluster.features, FEATURE_KINDS)
        check_choice("algorithm", self.cluster.algorithm, ALGORITHMS)
        if self.cluster.refine_k < 0:
            raise ConfigError(
                f"refine_k must be at least 1 (or 0: auto), got {self.cluster.refine_k}"
            )
        if self.embed.batch_size < 1:
            raise ConfigError("batch size must be at least 1")
        if self.embed.decode_timeout <= 0:
            raise ConfigError("the decode timeout must be a positive number of seconds")
        check_choice("precision", self.embed.precision, PRECISIONS)
        check_choice("runtime", self.embed.runtime, RUNTIMES)
        if self.store.shard_size < 1:
            raise ConfigError("shard size must be at least 1")
        if not 0 <= self.report.dup_threshold < 1:
            raise ConfigError(
                "the near-duplicate threshold is a cosine distance in [0, 1) (0: off), "
                f"got {self.report.dup_threshold}"
            )

    @property
    def store_dir(self) -> Path:
        """Folder of the feature store."""
        return self.store.cache_dir or self.out / ".imgclust" / "store"


_SECTIONS = {"embed": EmbedConfig, "store": StoreConfig, "cluster": ClusterConfig,
             "report": ReportConfig}  # fmt: skip


def _build(cls: type[Any], values: Mapping[str, Any], section: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown option(s) in [{section}]: {', '.join(sorted(unknown))}")
    return cls(**values)


def load_config(
    inputs: tuple[Path, ...],
    out: Path,
    *,
    config_file: Path | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> RunConfig:
    """Build a :class:`RunConfig`: ``overrides`` > ``config_file`` > defaults.

    Args:
        overrides: per-section values given on the command line (``None`` values are ignored).
        config_file: a TOML file with optional ``[embed]``, ``[store]``, ``[cluster]`` and
            ``[report]`` tables.
    """
    file_values: dict[str, Any] = {}
    if config_file is not None:
        try:
            file_values = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
        unknown = set(file_values) - set(_SECTIONS)
        if unknown:
            raise ConfigError(f"unknown table(s) in {config_file}: {', '.join(sorted(unknown))}")
    stages: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        merged = dict(file_values.get(section, {}))
        merged.update(
            {k: v for k, v in (overrides or {}).get(section, {}).items() if v is not None}
        )
        if section == "store" and merged.get("cache_dir") is not None:
            merged["cache_dir"] = Path(merged["cache_dir"])
        if section == "cluster" and "refine" in merged:
            merged["refine"] = tuple(merged["refine"])
        try:
            stages[section] = _build(cls, merged, section)
        except TypeError as exc:
            raise ConfigError(f"invalid [{section}] option: {exc}") from exc
    return RunConfig(inputs=tuple(inputs), out=Path(out), **stages)
