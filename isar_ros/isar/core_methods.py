"""Benchmark methods built on the perception core: ``isar_ros`` (ours) and ``isar_baseline``."""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from isar_ros.core.inference import InferenceConfig
from isar_ros.core.perception import Perception, PerceptionConfig
from isar_ros.core.prompt_mask import Prompt
from isar_ros.isar.dataset import Frame, Task
from isar_ros.isar.methods import Method, register


def _convert(value: str, default):
    if isinstance(default, bool):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise ValueError(f"expected a boolean, got {value!r}")
        return value.lower() in ("true", "1", "yes", "on")
    return type(default)(value) if default is not None else value


def perception_config(options: dict) -> PerceptionConfig:
    """Method options (strings from --option key=value) -> PerceptionConfig.

    Keys: backbone, device, mask_predictor, sam_checkpoint, and every InferenceConfig field
    (matcher, presence, presence_offset, mask_offset, edge_aware, temporal, refine, ...).
    """
    config = PerceptionConfig()
    inference = {}
    for key, value in options.items():
        if key in ("backbone", "device", "mask_predictor", "sam_checkpoint"):
            setattr(config, key, value)
        elif key in {f.name for f in fields(InferenceConfig)}:
            inference[key] = _convert(value, getattr(config.inference, key))
        else:
            raise KeyError(f"unknown isar_ros option {key!r}")
    config.inference = InferenceConfig(**{**config.inference.__dict__, **inference})
    return config


class IsarRosMethod(Method):
    """Ours: teach every prompted object from its prompts (mask predictor -> exemplars -> classifier), then find all."""

    name = "isar_ros"

    def __init__(self, options: dict | None = None):
        self.perception = Perception(perception_config(options or {}))
        self.to_isar = np.zeros(1, np.int64)

    def train(self, task: Task, mode: str) -> None:
        """Teach prompt by prompt in frame order, as an operator (or the sim bridge's TeachObject calls) would:
        the first prompt of an object creates it, later ones add exemplars."""
        self.perception.clear()
        mapping: dict[int, int] = {}  # ISAR id -> our id
        for scene, name, prompts in task.prompts(mode):
            frame = self.perception.encode(scene.frame_by_name(name).rgb())
            for p in prompts:
                result = self.perception.teach([(frame, [Prompt.from_isar(p.point_xy, p.box_xyxy)])], name=str(p.object_id),
                                               object_id=mapping.get(p.object_id, 0))
                mapping[p.object_id] = result.object_id
        self.to_isar = np.zeros(max(mapping.values(), default=0) + 1, np.int64)
        for theirs, ours in mapping.items():
            self.to_isar[ours] = theirs

    def reset(self) -> None:
        self.perception.reset()

    def predict(self, frame: Frame) -> np.ndarray:
        segmentation = self.perception.find(self.perception.encode(frame.rgb()))
        return self.to_isar[segmentation.labels]


register("isar_ros", lambda options: IsarRosMethod(options))
