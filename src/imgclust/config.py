"""Frozen configuration, one dataclass per stage, with explicit precedence.

Precedence: command-line options > config file (TOML, one table per stage) > defaults here.
:func:`load_config` builds a :class:`RunConfig` from the three.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .exceptions import ConfigError
from .uri import is_uri, local_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

FEATURE_KINDS: tuple[str, ...] = (
    "embedding",
    "embedding-centred",
    "logits",
    "scores",
    "sqrt-scores",
)
#: Inference runtimes (kept here so config imports nothing heavy; see models/runtime.py).
RUNTIMES: tuple[str, ...] = ("auto", "torch", "openvino")
#: Where the shards are embedded (see imgclust.engines): this machine, or a Ray cluster.
ENGINES: tuple[str, ...] = ("local", "ray")
#: Numeric precisions a model runs in (``NAME+bf16``, ``NAME+int8``; see models.registry).
MODEL_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
#: ``--precision`` choices: a model precision, or "auto" (int8 where OpenVINO runs the model
#: on the CPU and NNCF is installed, fp32 otherwise; see embed.model_for).
PRECISIONS: tuple[str, ...] = ("auto", *MODEL_PRECISIONS)
#: Cosine distance below which two images of a cluster are collapsed into one tile (re-saves,
#: resizes, small crops, bursts); measured in docs/notes-issue-5.md.
DUP_THRESHOLD = 0.1


def check_choice(what: str, value: str, choices: tuple[str, ...] | list[str]) -> None:
    """Raise :class:`ConfigError` naming the choices when ``value`` is not one of them."""
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}; choose one of " + ", ".join(choices))


#: ``k`` when none is given: 100 clusters, fewer for small collections (:func:`default_k`).
DEFAULT_K = "default"
#: Below about this many photos the default k is lowered (1.6 sqrt(n) < 100).
SMALL_COLLECTION = 3900


def default_k(n_images: int) -> int:
    """The default number of clusters: 100, or ``1.6 sqrt(n)`` below ~3,900 photos.

    Measured in ``bench/results/names.md``: on random subsets of 100 to 1,500 photos of the
    labelled sets, 100 clusters cut each true class into 5 to 17 (NMI 0.47-0.79), while about
    ``sqrt(n)`` clusters kept purity and scored NMI 0.53-0.97; the factor 1.6 keeps the
    method's k = 100 from about 4,000 photos up.
    """
    return max(1, min(100, n_images, round(1.6 * math.sqrt(max(n_images, 1)))))


def parse_k(value: object, what: str = "k", *, low: int = 1) -> int | str | None:
    """A cluster count as the library holds it: ``None`` for "auto", :data:`DEFAULT_K`, or
    an int >= ``low``.

    Accepts what users write: ``"auto"``, ``None``, an int, or a string of digits.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    if value == DEFAULT_K:
        return DEFAULT_K
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a number or 'auto', got {value!r}")
    try:
        number = int(value) if isinstance(value, (int, str)) else int(str(value))
    except ValueError:
        raise ConfigError(f"{what} must be a number or 'auto', got {value!r}") from None
    if number < low:
        raise ConfigError(f"{what} must be at least {low} (or 'auto'), got {number}")
    return number


def _at_least(what: str, value: object, low: float, *, kind: type = int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    if value < low:
        raise ConfigError(f"{what} must be at least {low:g}, got {value}")


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)  # normalising a frozen dataclass in __post_init__


#: The most decode processes one may ask for (each is a process with its own memory).
MAX_WORKERS = 256
#: The longest a file may take to decode (a day): "as long as it takes", in practice.
MAX_DECODE_TIMEOUT_S = 86_400


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
    engine: str = "local"  # "local" (this machine) or "ray" (a Ray cluster; imgclust[ray])
    ray_address: str | None = None  # with engine "ray": HOST:PORT of a cluster; None: local Ray

    def __post_init__(self) -> None:
        check_choice("engine", self.engine, ENGINES)
        if self.ray_address is not None and self.engine != "ray":
            raise ConfigError("--ray-address needs --engine ray")
        _at_least("batch size", self.batch_size, 1)
        if self.workers is not None:  # (0: decode in the command's own process)
            _at_least("workers", self.workers, 0)
            if self.workers > MAX_WORKERS:
                raise ConfigError(
                    f"workers must be at most {MAX_WORKERS} (decode processes on this "
                    f"machine), got {self.workers:,}"
                )
        timeout = self.decode_timeout  # (0 refused too: every file would be rejected)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout <= MAX_DECODE_TIMEOUT_S  # (NaN fails both)
        ):
            raise ConfigError(
                "the decode timeout must be a number of seconds above 0 and at most "
                f"{MAX_DECODE_TIMEOUT_S:,} (a day), got {timeout!r}"
            )
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("runtime", self.runtime, RUNTIMES)


@dataclass(frozen=True)
class StoreConfig:
    """Where features are kept between runs."""

    cache_dir: Path | None = None  # None: OUT/.imgclust/store
    shard_size: int = 1024  # images per shard file; the most work a kill can lose

    def __post_init__(self) -> None:
        if self.cache_dir is not None:
            if not isinstance(self.cache_dir, (str, os.PathLike)) or not str(self.cache_dir):
                raise ConfigError(f"the cache folder must be a path, got {self.cache_dir!r}")
            _set(self, "cache_dir", Path(os.path.expanduser(self.cache_dir)))
        _at_least("shard size", self.shard_size, 1)


@dataclass(frozen=True)
class ClusterConfig:
    """What is clustered and how. ``k=None`` (or ``"auto"``): chosen from the data."""

    k: int | str | None = DEFAULT_K  # DEFAULT_K: 100, fewer below 3,900 photos (default_k)
    features: str = "embedding"
    algorithm: str = "auto"  # spectral up to 20,000 images, k-means beyond (cluster/factory.py)
    seed: int = 0
    refine: tuple[int, ...] = ()  # split these clusters of OUT's saved clustering again
    refine_k: int | None = None  # sub-clusters per refined cluster; None: chosen from its members
    names: str = "auto"  # cluster names: auto, distinctive or dominant (describe/names.py)

    def __post_init__(self) -> None:
        from .cluster.base import list_clusterers

        _set(self, "k", parse_k(self.k))
        # (a split is into two parts or more; the option's name as the user wrote it)
        refine_k = parse_k(self.refine_k, "--refine-k (refine_k)", low=2)
        if refine_k == DEFAULT_K:
            raise ConfigError("--refine-k (refine_k) must be a number or 'auto'")
        _set(self, "refine_k", refine_k)
        check_choice("names", self.names, ("auto", "distinctive", "dominant"))
        check_choice("features", self.features, FEATURE_KINDS)
        check_choice("algorithm", self.algorithm, list_clusterers())
        _at_least("seed", self.seed, 0)
        refine = tuple(self.refine)
        for cid in refine:
            _at_least("a cluster to refine", cid, 0)
        _set(self, "refine", refine)


@dataclass(frozen=True)
class ReportConfig:
    """How the HTML gallery looks."""

    thumb_size: int = 160  # longest side of a thumbnail, pixels
    clusters_per_page: int = 25
    thumbs_per_row: int = 120  # thumbnails shown per cluster row; the rest are in the CSV
    strip_size: int = 8  # thumbnails per cluster on the index page
    dup_threshold: float = DUP_THRESHOLD  # near-duplicate grouping; 0 turns it off

    def __post_init__(self) -> None:
        _at_least("thumbnail size", self.thumb_size, 16)
        _at_least("clusters per page", self.clusters_per_page, 1)
        _at_least("thumbnails per row", self.thumbs_per_row, 1)
        _at_least("strip size", self.strip_size, 1)
        _at_least("the near-duplicate threshold", self.dup_threshold, 0, kind=float)
        if not 0 <= self.dup_threshold < 1:
            raise ConfigError(
                "the near-duplicate threshold is a cosine distance in [0, 1) (0: off), "
                f"got {self.dup_threshold}"
            )


@dataclass(frozen=True)
class RunConfig:
    """Everything one ``imgclust run`` needs. Paths may be given as ``str`` or ``Path``."""

    inputs: tuple[Path | str, ...]  # local paths; URIs (s3://, gs://) stay str (imgclust.uri)
    out: Path
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self) -> None:
        inputs = [self.inputs] if isinstance(self.inputs, (str, os.PathLike)) else self.inputs
        _set(self, "inputs", tuple(_input(p) for p in inputs))
        if not self.inputs:
            raise ConfigError("give at least one folder or image to cluster")
        if not isinstance(self.out, (str, os.PathLike)) or not str(self.out):
            raise ConfigError(f"give an output folder, got {self.out!r}")
        if is_uri(str(self.out)):
            raise ConfigError(f"--out must be a folder on this machine, got {self.out}")
        _set(self, "out", Path(os.path.expanduser(self.out)))
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"RunConfig.{name} must be a {cls.__name__}")

    @property
    def store_dir(self) -> Path:
        """Folder of the feature store."""
        return self.store.cache_dir or self.out / ".imgclust" / "store"


def _input(path: str | os.PathLike[str]) -> Path | str:
    """A local path as a ``Path``; a ``file://`` URI as the path it names; other URIs as
    they are (``Path`` would fold ``s3://b`` into ``s3:/b``)."""
    text = os.fspath(path)
    if not is_uri(text):
        return Path(os.path.expanduser(text))
    local = local_path(text)
    return text if local is None else Path(local)


_SECTIONS = {"embed": EmbedConfig, "store": StoreConfig, "cluster": ClusterConfig,
             "report": ReportConfig}  # fmt: skip


def _belongs(keys: set[str]) -> str:
    """``"k belongs in [cluster]; ..."`` for those of ``keys`` that are a table's options."""
    where = {
        key: name
        for key in keys
        for name, cls in _SECTIONS.items()
        if key in {f.name for f in dataclasses.fields(cls)}
    }
    return "; ".join(f"{key} belongs in [{name}]" for key, name in sorted(where.items()))


def _build(cls: type[Any], values: Mapping[str, Any], section: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        hint = _belongs(unknown)  # (a key in the wrong table)
        raise ConfigError(
            f"unknown option(s) in [{section}]: {', '.join(sorted(unknown))}"
            + (f" ({hint})" if hint else "")
        )
    return cls(**values)


def options_by_section(options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Flat options (``k=5, batch_size=32``) sorted into their stage sections by field name.

    ``None`` values mean "not given" and are dropped, so a config file's value stands.

    Raises:
        ConfigError: an option no stage has.
    """
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    for key, value in options.items():
        owner = next(
            (n for n, cls in _SECTIONS.items() if key in {f.name for f in dataclasses.fields(cls)}),
            None,
        )
        if owner is None:
            raise ConfigError(f"unknown option {key!r}")
        if value is not None:
            sections[owner][key] = value
    return sections


#: What ``--refine`` keeps from the clustering it splits; giving one of these is an error.
_KEPT_BY_REFINE = (("cluster", "k"), ("cluster", "algorithm"), ("cluster", "features"),
                   ("embed", "model"))  # fmt: skip


def _check_refine(given: Mapping[str, Mapping[str, Any]]) -> None:
    cluster = given.get("cluster", {})
    if cluster.get("refine"):
        for section, name in _KEPT_BY_REFINE:
            if given.get(section, {}).get(name) is not None:
                raise ConfigError(
                    "--refine keeps OUT's clustering (its model, features and other "
                    f"clusters); drop --{name}"
                )
    elif cluster.get("refine_k") is not None:
        raise ConfigError("--refine-k needs --refine CLUSTER")


def load_config(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
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
    _check_refine(overrides or {})
    file_values: dict[str, Any] = {}
    if config_file is not None:
        try:
            file_values = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            why = "it is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc
            raise ConfigError(f"cannot read config file {config_file}: {why}") from exc
        unknown = set(file_values) - set(_SECTIONS)
        if unknown:
            tables = " ".join(f"[{name}]" for name in _SECTIONS)
            hint = _belongs(unknown)  # a key written above every table: say which table
            raise ConfigError(
                f"unknown {'entries' if len(unknown) > 1 else 'entry'} in {config_file}: "
                f"{', '.join(sorted(unknown))}; its settings go in the tables {tables}"
                + (f" ({hint})" if hint else "")
            )
    stages: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        table = file_values.get(section, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"[{section}] in {config_file} must be a table of options")
        merged = dict(table)
        merged.update(
            {k: v for k, v in (overrides or {}).get(section, {}).items() if v is not None}
        )
        try:
            stages[section] = _build(cls, merged, section)
        except TypeError as exc:
            raise ConfigError(f"invalid [{section}] option: {exc}") from exc
    return RunConfig(inputs=tuple(os.fspath(p) for p in inputs), out=Path(out), **stages)
