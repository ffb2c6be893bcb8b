"""Connected regions of boolean masks: which parts of a mask are kept as the object."""

from __future__ import annotations

import cv2
import numpy as np


def components_near_largest(mask: np.ndarray, fraction: float) -> np.ndarray:
    """The 8-connected components of ``mask`` with at least ``fraction`` of the largest one's area
    (our rule: small fragments beside the object are dropped, parts of it split by an occluder are kept)."""
    count, regions, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask.astype(bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    good = np.flatnonzero(areas >= fraction * areas.max()) + 1
    return np.isin(regions, good)


def regions_within(regions: np.ndarray, chosen: np.ndarray, ids: np.ndarray, reach: int) -> np.ndarray:
    """Those of the region ``ids`` (labels in ``regions``) that come within ``reach`` cells of the region
    ``chosen`` (bool, the same shape; chessboard distance): ``chosen``'s own label too where it is one."""
    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    near = cv2.dilate(chosen.astype(np.uint8), kernel) > 0
    return np.intersect1d(ids, regions[near])


def components_above_total_share(mask: np.ndarray, fraction: float) -> np.ndarray:
    """The 8-connected components of ``mask`` larger than ``fraction`` of the mask's whole area
    (the ISAR authors' rule, used by the baseline)."""
    count, regions, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask
    total = stats[1:, cv2.CC_STAT_AREA].sum()
    return np.isin(regions, np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] > fraction * total) + 1)
