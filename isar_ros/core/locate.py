"""Where an instance is in 3-D: its mask's depth pixels back-projected, robust to holes and bleeding.

:func:`locate` takes an instance's mask, the depth image registered to the colour image (planar
depth in metres, H x W; 0, NaN or inf where the sensor saw nothing) and the camera, and returns the
centroid and axis-aligned extent of the object's *visible surface*:

1. the mask's interior: it is eroded by a radius that grows with its size (1 px below 400 px, 2 px
   below 4000 px, 3 px above) - the rim is where a mask bleeds onto what surrounds the object, which a
   depth test cannot catch where the object stands on a surface of the same depth;
2. of those, the pixels with a valid depth (finite, > 0, below ``max_depth_m``) - holes are skipped;
3. depth consistency: pixels whose depth is further than ``max(k * 1.4826 * MAD, min_tolerance_m)``
   from the median depth are dropped - the pixels a mask bleeds onto the background behind (or an
   occluder in front of) the object, which are a minority of the mask;
4. the kept pixels are back-projected (x = (u - cx) z / fx, y = (v - cy) z / fy, z, pixel coordinates
   as the image indexes them) into the camera's optical frame (x right, y down, z forward);
5. centroid = their mean (so the world centroid is exactly the camera one moved by the pose),
   extent = the spread between their 2nd and 98th percentiles along each axis of the frame.

With the camera's pose (``T_world_camera``, optical frame to world) the same points give the world-frame
centroid and the extent along the world axes. Fewer than ``min_pixels`` kept pixels: no location.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from isar_ros.core.geometry import Location, PinholeCamera
from isar_ros.core.segmentation import Instance, Segmentation
from isar_ros.errors import InvalidInput

CROP_MARGIN = 4  # > the largest erosion radius of interior()


@dataclass(frozen=True)
class LocateConfig:
    min_pixels: int = 20
    max_depth_m: float = 20.0
    mad_factor: float = 3.0  # depth-consistency band: this many robust standard deviations ...
    min_tolerance_m: float = 0.03  # ... but never narrower than this
    percentile: float = 2.0  # extent between this and 100 - this percentile
    trim_tolerance_m: float = 0.1  # trim_to_depth keeps pixels this close to the object's depth band


def _summary(points: np.ndarray, config: LocateConfig) -> Location:
    low, high = np.percentile(points, [config.percentile, 100.0 - config.percentile], axis=0)
    return Location(points.mean(axis=0), high - low, len(points))


def interior(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """``mask`` eroded by 1-3 px by its size; the mask itself when eroding would leave too little."""
    area = int(np.count_nonzero(mask))
    radius = 1 if area < 400 else 2 if area < 4000 else 3
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    eroded = cv2.erode(mask.astype(np.uint8), kernel).astype(bool)
    return eroded if np.count_nonzero(eroded) >= min_pixels else mask.astype(bool)


def surface_points(
    mask: np.ndarray, depth_m: np.ndarray, camera: PinholeCamera, config: LocateConfig | None = None
) -> np.ndarray:
    """(N, 3) optical-frame points of the mask's depth-consistent pixels (N may be 0)."""
    config = config or LocateConfig()
    if mask.shape != depth_m.shape:
        raise ValueError(
            f"mask {mask.shape} and depth {depth_m.shape} differ in size; depth must be registered"
        )
    v, u, z = _interior_depths(mask, depth_m, config)
    if len(z) < config.min_pixels:
        return np.zeros((0, 3))
    median, tolerance = _band(z, config, config.min_tolerance_m)
    keep = np.abs(z - median) <= tolerance
    v, u, z = v[keep], u[keep], z[keep]
    return np.stack([(u - camera.cx) * z / camera.fx, (v - camera.cy) * z / camera.fy, z], axis=1)


def locate(
    mask: np.ndarray,
    depth_m: np.ndarray,
    camera: PinholeCamera,
    T_world_camera: np.ndarray | None = None,
    config: LocateConfig | None = None,
) -> tuple[Location | None, Location | None]:
    """(camera-frame location, world-frame location) of the instance ``mask``; None where not available."""
    config = config or LocateConfig()
    points = surface_points(mask, depth_m, camera, config)
    if len(points) < config.min_pixels:
        return None, None
    in_camera = _summary(points, config)
    if T_world_camera is None:
        return in_camera, None
    world = points @ T_world_camera[:3, :3].T + T_world_camera[:3, 3]
    return in_camera, _summary(world, config)


def _interior_depths(
    mask: np.ndarray, depth_m: np.ndarray, config: LocateConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, depths) of the mask's interior pixels with a valid depth (finite, > 0, in range)."""
    v, u = np.nonzero(interior(mask, config.min_pixels))
    z = depth_m[v, u].astype(np.float64)
    valid = np.isfinite(z) & (z > 0) & (z < config.max_depth_m)
    return v[valid], u[valid], z[valid]


def _band(z: np.ndarray, config: LocateConfig, floor_m: float) -> tuple[float, float]:
    """(median, half width) of the depth-consistency band of ``z``: ``mad_factor`` robust standard
    deviations, never narrower than ``floor_m``."""
    median = float(np.median(z))
    spread = 1.4826 * float(np.median(np.abs(z - median)))
    return median, max(config.mad_factor * spread, floor_m)


def _crops(segmentation: Segmentation, height: int, width: int) -> Iterator[tuple[Instance, slice, slice]]:
    """Per instance: (instance, row slice, column slice) of its box plus the erosion radius."""
    for instance in segmentation.instances:
        x, y, w, h = instance.box_xywh
        x0, y0 = max(x - CROP_MARGIN, 0), max(y - CROP_MARGIN, 0)
        x1, y1 = min(x + w + CROP_MARGIN, width), min(y + h + CROP_MARGIN, height)
        yield instance, slice(y0, y1), slice(x0, x1)


def _check_size(segmentation: Segmentation, depth_m: np.ndarray) -> None:
    if depth_m.shape != segmentation.labels.shape:
        raise InvalidInput(
            f"depth {depth_m.shape[1]}x{depth_m.shape[0]} does not match the image "
            f"{segmentation.labels.shape[1]}x{segmentation.labels.shape[0]}; publish depth registered to "
            "the colour image"
        )


def trim_to_depth(
    segmentation: Segmentation, depth_m: np.ndarray, config: LocateConfig | None = None
) -> None:
    """Cut from each instance's mask the pixels whose depth lies outside the object's own depth band (the
    median depth of its interior +- max(``mad_factor`` robust standard deviations, ``trim_tolerance_m``)):
    where a mask bleeds onto the wall behind or an object in front. Pixels without depth stay. In place:
    the label image, each instance's box and area; an instance left with no pixel is dropped."""
    config = config or LocateConfig()
    _check_size(segmentation, depth_m)
    kept = []
    for instance, rows, columns in _crops(segmentation, *depth_m.shape):
        labels = segmentation.labels[rows, columns]  # a view: changes land in the label image
        mask = labels == instance.object_id
        _, _, inside = _interior_depths(mask, depth_m[rows, columns], config)
        if len(inside) >= config.min_pixels:
            median, tolerance = _band(inside, config, config.trim_tolerance_m)
            z = depth_m[rows, columns]
            with np.errstate(invalid="ignore"):
                away = mask & np.isfinite(z) & (z > 0) & (np.abs(z - median) > tolerance)
            labels[away] = 0
            mask &= ~away
        instance.area = int(np.count_nonzero(mask))
        if instance.area:
            x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
            instance.box_xywh = (int(x + columns.start), int(y + rows.start), int(w), int(h))
            kept.append(instance)
    segmentation.instances = kept


def locate_instances(
    segmentation: Segmentation,
    depth_m: np.ndarray,
    camera: PinholeCamera,
    T_world_camera: np.ndarray | None = None,
    config: LocateConfig | None = None,
) -> None:
    """Set ``camera_location`` / ``world_location`` of every instance of ``segmentation`` (in place).

    Each instance's mask is the set of pixels the label image gives it, so locations and label image
    agree. Raises ValueError when the depth image does not have the label image's size.
    """
    _check_size(segmentation, depth_m)
    # Work inside each instance's box (plus the erosion radius, so the crop erodes exactly as the whole
    # image would): the same points, at a fraction of the cost of full-image masks.
    for instance, rows, columns in _crops(segmentation, *depth_m.shape):
        x0, y0 = columns.start, rows.start
        crop = PinholeCamera(
            camera.fx, camera.fy, camera.cx - x0, camera.cy - y0, columns.stop - x0, rows.stop - y0
        )
        mask = segmentation.labels[rows, columns] == instance.object_id
        instance.camera_location, instance.world_location = locate(
            mask, depth_m[rows, columns], crop, T_world_camera, config
        )
