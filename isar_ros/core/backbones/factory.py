"""Pick a backbone and a device from a configuration (names as the README's weights table)."""

from __future__ import annotations

import os
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


def intra_op_threads(
    requested: int, backbone: str, device: str, workers: int, cores: int | None = None
) -> int:
    """How many threads each torch operation may use in a process with ``workers`` busy threads.

    ``requested`` > 0 is taken as it is. 0 (automatic): with the hand-crafted backbone on a CPU and more
    than one worker, the cores divided among the workers (at least one). Its features are numpy and
    OpenCV; torch only scores and filters, in small operations whose thread fan-out, with each worker
    fanning out at once, oversubscribes the cores (the inference node at 640x480: 17-21 Hz with torch's
    default of one thread per core, 25 Hz with one per worker on two cores; docs/benchmarks.md).
    Otherwise torch's default (a network's layers use every core). Returns 0 for "leave torch's default".
    """
    if requested > 0:
        return requested
    if backbone != "handcrafted" or workers < 2 or resolve_device(device).type != "cpu":
        return 0
    return max(1, (cores or os.cpu_count() or 1) // workers)


def use_intra_op_threads(threads: int) -> int:
    """Set torch's per-operation thread count for this process (0: leave it as it is); the count now in
    effect."""
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


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
