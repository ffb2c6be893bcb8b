"""Pose-aware finding: expect a static object where it was last seen (``pose_prior``, off by default).

With depth and a camera pose for every frame, the finder keeps its own map of where each object was found
(an :class:`~isar_ros.core.object_map.ObjectMap` per stream: world frame, robust median, moves detected).
Before presence is decided, every mapped object's position is projected into the new frame:

* **expected**: in the image and not hidden (the depth at the expected pixel is not nearer than the object
  by more than its size). The object should lie in a disc of one object size (at least ``MIN_SIZE_M``,
  plus one patch) around that pixel. A region touching the disc is chosen over stronger ones elsewhere and
  needs ``pose_prior_weight`` x |threshold| less to count as present - weak views are recovered; a region
  away from the disc needs that much more - look-alikes elsewhere are doubted;
* **out of view** (behind the camera, or outside the image by more than the disc): a region anywhere
  needs that much more;
* hidden, at the image border, or no usable depth: no change.

Only detections that would pass even with the raised threshold go on the map (the finder decides): a
view recovered by the prior, or a marginal look-alike, must not teach the prior where to look - it would
feed itself. An object expected in view but not found at its place ``FORGET_AFTER`` frames in a row loses
its entry
(it was taken away), so a moved object is doubted for a few frames at most; a strong detection elsewhere
still passes meanwhile, and the map follows an object once a few observations agree. Without a pose the
prior does nothing: finding is exactly as without it. The per-stream map starts empty at every reset (a
new sequence) and is not the teach node's shared object map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isar_ros.core.geometry import FrameGeometry
from isar_ros.core.object_map import ObjectMap
from isar_ros.core.segmentation import Instance

MIN_SIZE_M = 0.1  # the expected disc is never smaller than this object size
NEAR_M = 0.1  # an expected position closer than this to the camera plane is out of view
FORGET_AFTER = 5  # frames an expected object may be missing from its place before its entry is dropped
HIDDEN_WINDOW = 2  # the depth at the expected pixel: median of this radius (pixels) around it


@dataclass(frozen=True)
class Expectation:
    near: np.ndarray | None  # rows x cols bool: the patches where the object should be; None = out of view


class PosePrior:
    """Per-stream map of where objects were found, and what it expects in the next frame."""

    def __init__(self) -> None:
        self.map = ObjectMap()
        self.misses: dict[int, int] = {}
        self.frames = 0

    def reset(self) -> None:
        self.map, self.misses, self.frames = ObjectMap(), {}, 0

    def keep_only(self, names: dict[int, str]) -> None:
        self.map.keep_only(names)
        self.misses = {i: n for i, n in self.misses.items() if i in names}

    def expect(
        self, ids: np.ndarray, geometry: FrameGeometry, grid_shape: tuple[int, int]
    ) -> dict[int, Expectation]:
        """Per object index into ``ids`` with a map entry: where it should be in this frame (see the module
        docstring); objects without an entry, hidden or at the border are left out. Empty without a pose."""
        if geometry.T_world_camera is None or not self.map.entries:
            return {}
        world_to_camera = np.linalg.inv(geometry.T_world_camera)
        camera, depth = geometry.camera, geometry.depth_m
        height, width = depth.shape
        rows, cols = grid_shape
        step_x, step_y = width / cols, height / rows
        centres_x, centres_y = np.meshgrid((np.arange(cols) + 0.5) * step_x, (np.arange(rows) + 0.5) * step_y)
        result: dict[int, Expectation] = {}
        for j, object_id in enumerate(ids.tolist()):
            entry = self.map.where(int(object_id))
            if entry is None:
                continue
            x, y, z = world_to_camera[:3, :3] @ entry.position + world_to_camera[:3, 3]
            if z < NEAR_M:
                result[j] = Expectation(None)
                continue
            size = max(float(entry.extent.max(initial=0.0)), MIN_SIZE_M)
            u, v, radius = camera.fx * x / z + camera.cx, camera.fy * y / z + camera.cy, size * camera.fx / z
            if not (-radius <= u < width + radius and -radius <= v < height + radius):
                result[j] = Expectation(None)
                continue
            if not (0 <= u < width and 0 <= v < height):
                continue  # the centre is just outside the image: it may or may not show
            column, row = int(u), int(v)
            window = depth[
                max(row - HIDDEN_WINDOW, 0) : row + HIDDEN_WINDOW + 1,
                max(column - HIDDEN_WINDOW, 0) : column + HIDDEN_WINDOW + 1,
            ]
            valid = window[np.isfinite(window) & (window > 0)]
            if valid.size and float(np.median(valid)) < z - size:
                continue  # something nearer stands in front of it
            reach = radius + max(step_x, step_y)
            result[j] = Expectation((centres_x - u) ** 2 + (centres_y - v) ** 2 <= reach**2)
        return result

    def update(
        self, sure: list[Instance], expected: dict[int, Expectation], ids: np.ndarray, found_near: set[int]
    ) -> None:
        """After a frame: map the instances found surely (those with a world location), and count the
        expected objects (indices into ``ids``) missing from their place (``found_near``: object ids found
        there)."""
        self.frames += 1
        for instance in sure:
            if instance.world_location is not None:
                self.map.observe(
                    instance.object_id,
                    instance.name,
                    instance.world_location.centroid,
                    instance.world_location.extent,
                    float(self.frames),
                    instance.score,
                    "world",
                )
        for j, expectation in expected.items():
            object_id = int(ids[j])
            if expectation.near is None:
                continue  # out of view says nothing about whether it is still there
            if object_id in found_near:
                self.misses.pop(object_id, None)
                continue
            self.misses[object_id] = self.misses.get(object_id, 0) + 1
            if self.misses[object_id] >= FORGET_AFTER:
                self.map.forget(object_id)
                del self.misses[object_id]
