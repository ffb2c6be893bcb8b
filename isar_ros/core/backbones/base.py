"""The backbone interface and the factory that picks one from a configuration."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class FeatureGrid:
    """Patch features of one image.

    ``features``: (rows, cols, dim) float32 tensor on the backbone's device, each vector L2-normalised.
    Patch (r, c) covers image pixels y in [r * stride_y, (r + 1) * stride_y), x likewise, where the
    strides map the grid back onto the original ``image_size`` (width, height) in pixels.
    """

    features: torch.Tensor
    image_size: tuple[int, int]

    @property
    def grid_size(self) -> tuple[int, int]:
        """(cols, rows)."""
        return int(self.features.shape[1]), int(self.features.shape[0])

    @property
    def stride(self) -> tuple[float, float]:
        """(x, y) pixels of the original image per patch."""
        cols, rows = self.grid_size
        return self.image_size[0] / cols, self.image_size[1] / rows

    def flat(self) -> torch.Tensor:
        return self.features.reshape(-1, self.features.shape[-1])


class Backbone(ABC):
    """Image -> :class:`FeatureGrid`. Subclasses set ``backbone_id``, ``feature_dim`` and ``device``."""

    backbone_id: str = "backbone"
    feature_dim: int = 0
    device: torch.device = torch.device("cpu")

    @abstractmethod
    def extract(self, rgb: np.ndarray) -> FeatureGrid:
        """``rgb``: H x W x 3 uint8, RGB."""


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else as torch names it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but torch sees no CUDA GPU here; use device: auto or cpu")
    return resolved


def create_backbone(name: str = "handcrafted", device: str = "auto", **options) -> Backbone:
    """``handcrafted`` (no weights, the offline default) or ``dinov2_vit{s,b,l,g}14[_reg4]``."""
    if name == "handcrafted":
        from isar_ros.core.backbones.handcrafted import HandcraftedBackbone

        return HandcraftedBackbone(device=resolve_device(device), **options)
    if name.startswith("dinov2_"):
        from isar_ros.core.backbones.dinov2 import Dinov2Backbone

        return Dinov2Backbone.from_name(name, device=resolve_device(device), **options)
    raise ValueError(f"unknown backbone {name!r}; use 'handcrafted' or dinov2_vit{{s,b,l,g}}14[_reg4]")
