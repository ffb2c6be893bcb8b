"""The ISAR rules that turn ground truth into prompts and scene attributes (docs/isar-format.md)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from isar_ros.errors import InvalidInput

PROMPT_EVERY_N_FRAMES = 10
PROMPT_MIN_AREA_PX = 1000  # at the full ISAR resolution below; scaled with the image area
FULL_RESOLUTION = (1280, 720)
SML_MEAN_BOX_RATIO = 0.005
SMF_MIN_BOX_RATIO = 0.001
CLT_MIN_OBJECTS = 6
FST_SPEED_M_S = 1.5
FST_ANGULAR_RAD_S = 1.0


def object_name(isar_id: int) -> str:
    """The name an ISAR object is taught under (sim bridge, benchmark, demo): its id as a decimal string."""
    return str(int(isar_id))


def isar_id_of(name: str) -> int:
    """The ISAR id an object taught by :func:`object_name` stands for; ``ValueError`` for other names."""
    if not name.isdigit():
        raise InvalidInput(
            f"object name {name!r} is not an ISAR id; objects scored against ISAR ground truth must be "
            "taught "
            "under their dataset ids (the sim bridge and the benchmark do this)"
        )
    return int(name)


def prompt_min_area(width: int, height: int) -> float:
    """ISAR's 1000 px threshold, scaled from 1280x720 to this resolution."""
    return PROMPT_MIN_AREA_PX * (width * height) / (FULL_RESOLUTION[0] * FULL_RESOLUTION[1])


def tight_box(mask: np.ndarray) -> list[int]:
    """Inclusive [x_min, y_min, x_max, y_max] of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])]


def make_prompts(
    frames: Iterable[tuple[int, str, np.ndarray]], object_ids: Sequence[int], rng: np.random.Generator
) -> tuple[dict, dict]:
    """ISAR prompts of one train scene from its ground truth.

    ``frames`` yields (index, frame name, instance-id image). Candidate frames are every 10th;
    an object is prompted in a frame when its mask has more pixels than the (scaled) threshold.
    Multi-shot: every qualifying (frame, object). Single-shot: per object, its largest qualifying
    view. Each prompt: a uniformly random pixel of the mask and the mask's tight box.
    Returns (prompts_single, prompts_multi) in the JSON structure of the prompt files.
    """
    multi: dict[str, dict[str, dict]] = {}
    largest: dict[int, tuple[int, str]] = {}
    for index, name, ids in frames:
        if index % PROMPT_EVERY_N_FRAMES:
            continue
        threshold = prompt_min_area(ids.shape[1], ids.shape[0])
        for object_id in object_ids:
            mask = ids == object_id
            area = int(np.count_nonzero(mask))
            if area <= threshold:
                continue
            ys, xs = np.nonzero(mask)
            pick = int(rng.integers(len(xs)))
            multi.setdefault(name, {})[str(object_id)] = {
                "point_prompt": [int(xs[pick]), int(ys[pick])],
                "bbox": tight_box(mask),
            }
            if area > largest.get(object_id, (0, ""))[0]:
                largest[object_id] = (area, name)
    single: dict[str, dict[str, dict]] = {}
    for object_id, (_, name) in sorted(largest.items()):
        single.setdefault(name, {})[str(object_id)] = multi[name][str(object_id)]
    return single, multi


def rotation_angle(rotation: np.ndarray) -> float:
    return math.acos(max(-1.0, min(1.0, (np.trace(rotation) - 1.0) / 2.0)))


@dataclass
class AttributeAccumulator:
    """Streams a scene's frames and computes its attributes by the ISAR rules."""

    tracked_ids: Sequence[int]
    first_object_id: int = 1660
    fps: float = 30.0
    box_ratios: dict[int, list[float]] = field(default_factory=dict)
    min_unclipped_ratio: dict[int, float] = field(default_factory=dict)
    objects_seen: set[int] = field(default_factory=set)
    max_speed: float = 0.0
    max_angular: float = 0.0
    _last_pose: np.ndarray | None = None

    def add(self, ids: np.ndarray, pose: np.ndarray | None) -> None:
        height, width = ids.shape
        present = np.unique(ids)
        self.objects_seen.update(int(i) for i in present if i >= self.first_object_id)
        for object_id in self.tracked_ids:
            if object_id not in present:
                continue
            x0, y0, x1, y1 = tight_box(ids == object_id)
            ratio = (x1 - x0 + 1) * (y1 - y0 + 1) / (width * height)
            self.box_ratios.setdefault(object_id, []).append(ratio)
            if x0 > 0 and y0 > 0 and x1 < width - 1 and y1 < height - 1:
                self.min_unclipped_ratio[object_id] = min(ratio, self.min_unclipped_ratio.get(object_id, 1.0))
        if pose is not None and self._last_pose is not None:
            self.max_speed = max(
                self.max_speed, float(np.linalg.norm(pose[:3, 3] - self._last_pose[:3, 3])) * self.fps
            )
            self.max_angular = max(
                self.max_angular, rotation_angle(self._last_pose[:3, :3].T @ pose[:3, :3]) * self.fps
            )
        self._last_pose = pose

    def attributes(self, dynamic: bool, same_class: bool) -> dict[str, bool]:
        """``dynamic`` (objects move) and ``same_class`` (several objects of one class) come from the scene's
        making."""
        return {
            "DYN": bool(dynamic),
            "CLA": bool(same_class),
            "CLT": len(self.objects_seen) >= CLT_MIN_OBJECTS,
            "SML": any(np.mean(r) < SML_MEAN_BOX_RATIO for r in self.box_ratios.values()),
            "SMF": any(r < SMF_MIN_BOX_RATIO for r in self.min_unclipped_ratio.values()),
            "FST": self.max_speed > FST_SPEED_M_S or self.max_angular > FST_ANGULAR_RAD_S,
        }
