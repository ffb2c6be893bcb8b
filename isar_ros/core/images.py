"""Checks of images handed to the core."""

from __future__ import annotations

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
