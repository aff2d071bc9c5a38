"""Feature extractors: a registry of models and the preprocessing that travels with each."""

from .registry import (
    DEFAULT_MODEL,
    PRECISIONS,
    create_model,
    get_spec,
    imagenet_class_names,
    list_models,
    model_availability,
    register_model,
    split_precision,
    with_precision,
)
from .spec import ModelSpec, Preprocess

__all__ = [
    "DEFAULT_MODEL",
    "PRECISIONS",
    "ModelSpec",
    "Preprocess",
    "create_model",
    "get_spec",
    "imagenet_class_names",
    "list_models",
    "model_availability",
    "register_model",
    "split_precision",
    "with_precision",
]
