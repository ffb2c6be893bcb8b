"""A colour/texture backbone that needs no weights: the offline default.

Per cell of ``stride`` x ``stride`` pixels it pools:

* a soft 2-D histogram of rg chromaticity (r = R / (R + G + B), g = G / (R + G + B)) on a
  ``chroma_bins`` x ``chroma_bins`` grid - independent of how brightly a surface is lit, so the
  same object under other lighting keeps its features; dark pixels, whose chromaticity is noise,
  count less;
* a soft histogram of lightness (``lightness_bins``, down-weighted: lighting moves it);
* a magnitude-weighted histogram of gradient orientations (``orientation_bins``, unsigned),

then appends the same histograms pooled over the 3 x 3 and the 7 x 7 neighbouring cells (``context``:
the cell's surroundings at two scales - the near one carries the object's own parts, the wide one its
layout; together they separate objects of one colour far better than either alone), takes square
roots (Hellinger mapping: a dot product of such vectors compares distributions) and L2-normalises.
Histograms make linear classifiers expressive: a weight per colour bin can pick out "red and
yellow, in stripes" against any background.

The cell size follows the image (``stride`` 0, the default): about 60 cells on the short side
(``CELLS_SHORT_SIDE``; stride 4 at 320x240, 8 at 640x480, 12 at 1280x720), so an object covers the
same number of cells whatever the camera's resolution, and the cost per frame stays nearly constant.
A fixed ``stride`` (even) overrides it.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from isar_ros.core.backbones.base import Backbone, FeatureGrid
from isar_ros.core.images import require_rgb
from isar_ros.errors import InvalidInput

CHROMA_RANGE = (0.05, 0.65)  # rg chromaticity of real surfaces; grey is (1/3, 1/3)
CELLS_SHORT_SIDE = 60  # cells on the image's short side when the stride follows the image
DARK_LEVEL = 60.0  # R + G + B below which chromaticity counts less (it is mostly noise there)


def _triangle_weights(
    values: np.ndarray, lo: float, hi: float, bins: int, circular: bool = False
) -> np.ndarray:
    """Soft assignment of ``values`` (H x W) to ``bins`` evenly spaced centres: H x W x bins, rows sum to
    1."""
    if circular:
        position = (values - lo) / (hi - lo) * bins
        distance = np.abs(position[..., None] - np.arange(bins, dtype=np.float32))
        distance = np.minimum(distance, bins - distance)
    else:
        position = np.clip((values - lo) / (hi - lo) * (bins - 1), 0, bins - 1)
        distance = np.abs(position[..., None] - np.arange(bins, dtype=np.float32))
    return np.maximum(1.0 - distance, 0.0).astype(np.float32)


class HandcraftedBackbone(Backbone):
    thread_safe = True  # extract() keeps no state; OpenCV and NumPy release the GIL in the heavy steps

    def __init__(
        self,
        stride: int = 0,
        chroma_bins: int = 7,
        lightness_bins: int = 4,
        orientation_bins: int = 6,
        lightness_weight: float = 0.25,
        texture_weight: float = 0.7,
        context: tuple[int, ...] = (3, 7),
        device: torch.device | None = None,
    ):
        self.stride = int(stride)
        self.chroma_bins, self.lightness_bins, self.orientation_bins = (
            chroma_bins,
            lightness_bins,
            orientation_bins,
        )
        self.lightness_weight, self.texture_weight = lightness_weight, texture_weight
        self.context = tuple(int(c) for c in context)
        self.device = device if device is not None else torch.device("cpu")
        self.channels = chroma_bins * chroma_bins + lightness_bins + orientation_bins
        self.feature_dim = (1 + len(self.context)) * self.channels
        self.backbone_id = (
            f"handcrafted-v3-s{stride or 'auto'}-c{chroma_bins}-l{lightness_bins}-o{orientation_bins}"
            f"-w{lightness_weight:g}-{texture_weight:g}-x{'.'.join(map(str, self.context))}"
        )

    def stride_for(self, width: int, height: int) -> int:
        """The cell size in pixels for a ``width`` x ``height`` image (even, at least 2)."""
        if self.stride:
            return self.stride
        return max(2, 2 * round(min(width, height) / (2 * CELLS_SHORT_SIDE)))

    def pixel_histograms(self, rgb: np.ndarray) -> np.ndarray:
        """H x W x channels per-pixel soft histogram contributions (before pooling)."""
        height, width = rgb.shape[:2]
        colour = rgb.astype(np.float32)
        total = colour.sum(axis=-1)
        chromaticity = colour[..., :2] / np.maximum(total, 1.0)[..., None]
        reliability = np.minimum(total / DARK_LEVEL, 1.0)
        wr = _triangle_weights(chromaticity[..., 0], *CHROMA_RANGE, self.chroma_bins)
        wg = _triangle_weights(chromaticity[..., 1], *CHROMA_RANGE, self.chroma_bins)
        chroma = (wr[..., :, None] * (wg * reliability[..., None])[..., None, :]).reshape(height, width, -1)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
        lightness = _triangle_weights(gray, 20.0, 235.0, self.lightness_bins) * self.lightness_weight
        gray /= 255.0
        gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
        strength = np.minimum(np.sqrt(gx * gx + gy * gy) * 4.0, 1.0) * self.texture_weight
        orientation = _triangle_weights(
            np.arctan2(gy, gx) % np.pi, 0.0, np.pi, self.orientation_bins, circular=True
        )
        return np.concatenate([chroma, lightness, orientation * strength[..., None]], axis=-1)

    @torch.inference_mode()
    def extract(self, rgb: np.ndarray) -> FeatureGrid:
        require_rgb(rgb)
        height, width = rgb.shape[:2]
        stride = self.stride_for(width, height)
        rows, cols = height // stride, width // stride
        if rows < 1 or cols < 1 or stride % 2:
            raise InvalidInput(
                f"image {width}x{height} is smaller than one {stride}-pixel cell (stride must be even)"
            )
        # Histograms are computed at half resolution: 4x fewer pixels, nearly the same cell statistics.
        half = cv2.resize(
            rgb[: rows * stride, : cols * stride],
            (cols * stride // 2, rows * stride // 2),
            interpolation=cv2.INTER_AREA,
        )
        pixels = self.pixel_histograms(half)
        cells = cv2.resize(pixels, (cols, rows), interpolation=cv2.INTER_AREA)  # mean over each cell
        contexts = [cv2.blur(cells, (c, c), borderType=cv2.BORDER_REFLECT) for c in self.context]
        features = np.sqrt(np.maximum(np.concatenate([cells, *contexts], axis=-1), 0))
        features /= np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-6)
        return FeatureGrid(torch.from_numpy(features).to(self.device), (width, height))
