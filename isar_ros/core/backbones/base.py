"""The backbone interface: an RGB image in, a grid of L2-normalised patch features out."""

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
    thread_safe: bool = False  # extract() may run in several threads at once (and gains from it)

    @abstractmethod
    def extract(self, rgb: np.ndarray) -> FeatureGrid:
        """``rgb``: H x W x 3 uint8, RGB."""
