"""imgclust: group photo collections by what an ImageNet-trained CNN sees in them.

Quick start::

    import imgclust
    result = imgclust.cluster_folder(["~/Pictures"], out="clusters", k=50)
    print(result.k, result.report)

Nothing heavy (torch, faiss) is imported until it is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import DEFAULT_K, ClusterConfig, EmbedConfig, ReportConfig, RunConfig, StoreConfig
from .exceptions import (
    ConfigError,
    ImgclustError,
    InputError,
    ModelUnavailableError,
    OutputError,
    StoreError,
)

if TYPE_CHECKING:
    from .pipeline import Progress, RunResult

__version__ = "0.1.0"


def run(config: RunConfig, *, progress: Progress | None = None) -> RunResult:
    """Run the whole pipeline for ``config``; see :func:`imgclust.pipeline.run`."""
    from .pipeline import run as _run

    return _run(config, progress=progress)


def cluster_folder(
    inputs: list[str | Path] | tuple[str | Path, ...],
    *,
    out: str | Path,
    k: int | str | None = DEFAULT_K,
    features: str = "embedding",
    model: str = "efficientnet_lite0",
    **options: Any,
) -> RunResult:
    """Cluster the photos under ``inputs`` into ``out``; a one-call form of :func:`run`.

    ``options`` go to the stage configs by name (``batch_size``, ``device``, ``cache_dir``,
    ``seed``, ``thumb_size``...) and are validated as the command line's are. ``k`` is a
    number, ``None``/``"auto"`` to choose it from the data, or the default: 100, fewer below
    3,900 photos (:func:`imgclust.config.default_k`).

    Raises:
        ConfigError: an option is unknown or invalid; else as :func:`run`.
    """
    from .config import load_config, options_by_section

    if k is None:  # None is "auto" here; options_by_section drops None as "not given"
        k = "auto"
    sections = options_by_section({"k": k, "features": features, "model": model, **options})
    cfg = load_config(tuple(inputs), out, overrides=sections)
    return run(cfg)


__all__ = [
    "ClusterConfig",
    "ConfigError",
    "EmbedConfig",
    "ImgclustError",
    "InputError",
    "ModelUnavailableError",
    "OutputError",
    "ReportConfig",
    "RunConfig",
    "StoreConfig",
    "StoreError",
    "__version__",
    "cluster_folder",
    "run",
]
