"""What finding produces for one frame: a label image and one instance per found object."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from isar_ros.core.geometry import Location


@dataclass
class Instance:
    object_id: int
    name: str
    score: float  # presence confidence in [0, 1]
    box_xywh: tuple[int, int, int, int]  # x_offset, y_offset, width, height, pixels
    area: int
    camera_location: Location | None = None  # 3-D, camera optical frame (core.locate; needs depth)
    world_location: Location | None = None  # 3-D, world frame (needs the camera pose too)


@dataclass
class Segmentation:
    labels: np.ndarray  # H x W uint16: object id per pixel, 0 = none
    instances: list[Instance]
    timings_ms: dict[str, float] = field(default_factory=dict)
    memory_version: int = 0
