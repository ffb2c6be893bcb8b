"""Checks of images handed to the core."""

from __future__ import annotations

import cv2
import numpy as np

from isar_ros.errors import InvalidInput


def require_rgb(rgb: object) -> np.ndarray:
    """``rgb`` itself if it is an H x W x 3 uint8 array; :class:`InvalidInput` naming what it is otherwise."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InvalidInput(
            f"expected an H x W x 3 uint8 RGB image, got {getattr(rgb, 'dtype', type(rgb))} "
            f"{getattr(rgb, 'shape', '')}"
        )
    return rgb


THUMBNAIL_SIDE = 96  # longest side of an exemplar's thumbnail, pixels


def thumbnail(rgb: np.ndarray, mask: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """A small RGB crop around ``mask`` (its box plus a 15 % margin, at most ``side`` pixels long) for UIs.

    The object stays in its context: the crop is not cut out along the mask.
    """
    rows, cols = np.nonzero(mask)
    height, width = mask.shape
    if len(rows):
        y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    else:
        y0, y1, x0, x1 = 0, height, 0, width
    margin = int(round(0.15 * max(y1 - y0, x1 - x0)))
    y0, x0 = max(0, y0 - margin), max(0, x0 - margin)
    y1, x1 = min(height, y1 + margin), min(width, x1 + margin)
    crop = rgb[y0:y1, x0:x1]
    scale = min(1.0, side / max(crop.shape[:2]))
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    return np.ascontiguousarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
