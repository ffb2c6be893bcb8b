"""Overlay pictures of segmentations (for RViz and contact sheets)."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage


def object_color(object_id: int) -> tuple[int, int, int]:
    """A stable, saturated RGB colour per object id."""
    hue = (object_id * 47) % 180
    rgb = cv2.cvtColor(np.array([[[hue, 220, 255]]], np.uint8), cv2.COLOR_HSV2RGB)[0, 0]
    return int(rgb[0]), int(rgb[1]), int(rgb[2])


def overlay(
    rgb: np.ndarray, labels: np.ndarray, names: dict[int, str] | None = None, alpha: float = 0.5
) -> np.ndarray:
    """``rgb`` with each labelled object tinted in its colour, outlined, and named at its box.

    Each object is drawn inside its own box (one pass over ``labels`` finds them all), so the cost
    follows the objects' area, not the image's size times the number of objects."""
    out = rgb.copy()
    for index, box in enumerate(ndimage.find_objects(labels)):  # box of label index + 1, None if absent
        if box is None:
            continue
        object_id = index + 1
        mask = labels[box] == object_id
        region = out[box]
        color = np.array(object_color(object_id), np.float32)
        region[mask] = (region[mask] * (1 - alpha) + color * alpha).astype(np.uint8)
        top, left = box[0].start, box[1].start
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(left, top)
        )
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), 2)
        if names:
            cv2.putText(
                out,
                names.get(object_id, str(object_id)),
                (left, max(top - 4, 12)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
    return out
