"""Feature extractors: a registry of models and the preprocessing that travels with each."""

from .registry import (
    DEFAULT_MODEL,
    create_model,
    get_spec,
    imagenet_class_names,
    list_models,
    register_model,
)
from .spec import ModelSpec, Preprocess

__all__ = [
    "DEFAULT_MODEL",
    "ModelSpec",
    "Preprocess",
    "create_model",
    "get_spec",
    "imagenet_class_names",
    "list_models",
    "register_model",
]
