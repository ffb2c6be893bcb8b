"""Pick a backbone and a device from a configuration (names as the README's weights table)."""

from __future__ import annotations

from typing import Any

import torch

from isar_ros.core.backbones.base import Backbone
from isar_ros.errors import ConfigurationError


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else as torch names it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(
            f"device {device!r} was asked for, but torch sees no CUDA GPU here; use device: auto or cpu"
        )
    return resolved


def create_backbone(name: str = "handcrafted", device: str = "auto", **options: Any) -> Backbone:
    """``handcrafted`` (no weights, the offline default) or ``dinov2_vit{s,b,l,g}14[_reg4]``."""
    if name == "handcrafted":
        from isar_ros.core.backbones.handcrafted import HandcraftedBackbone

        return HandcraftedBackbone(device=resolve_device(device), **options)
    if name.startswith("dinov2_"):
        from isar_ros.core.backbones.dinov2 import Dinov2Backbone

        return Dinov2Backbone.from_name(name, device=resolve_device(device), **options)
    raise ConfigurationError(
        f"unknown backbone {name!r}; use 'handcrafted' or dinov2_vit{{s,b,l,g}}14[_reg4]"
    )
