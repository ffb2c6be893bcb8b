"""Benchmark methods built on the perception core: ``isar_ros`` (ours) and ``isar_baseline``."""

from __future__ import annotations

import numpy as np

from isar_ros.core.inference import InferenceConfig
from isar_ros.core.perception import Perception, PerceptionConfig
from isar_ros.core.prompt_mask import Prompt
from isar_ros.errors import ConfigurationError
from isar_ros.isar.dataset import Frame, Task
from isar_ros.isar.methods import Method
from isar_ros.isar.rules import object_name
from isar_ros.settings import convert, specs

PERCEPTION_OPTIONS = {"backbone", "device", "mask_predictor", "sam_checkpoint"}
# How each ISAR prompt (a click and a box) is given to teaching: as it is, or as an operator who only
# drags boxes or only clicks would give it (``--option prompts=click``).
PROMPT_KINDS = {
    "click_box": lambda p: Prompt.from_isar(p.point_xy, p.box_xyxy),
    "box": lambda p: Prompt.from_isar(None, p.box_xyxy),
    "click": lambda p: Prompt.from_isar(p.point_xy, None),
}


def perception_config(options: dict[str, str]) -> PerceptionConfig:
    """Method options (strings from ``--option key=value``) -> PerceptionConfig, checked as node parameters
    are.

    Keys: backbone, device, mask_predictor, sam_checkpoint, and every InferenceConfig field
    (matcher, presence, presence_offset, mask_offset, edge_aware, temporal, refine, ...).
    """
    perception = {s.name: s for s in specs(PerceptionConfig, PERCEPTION_OPTIONS)}
    inference = {s.name: s for s in specs(InferenceConfig)}
    chosen: dict[str, object] = {}
    tuned: dict[str, object] = {}
    for key, value in options.items():
        if key in perception:
            chosen[key] = convert(perception[key], value)
        elif key in inference:
            tuned[key] = convert(inference[key], value)
        else:
            raise ConfigurationError(
                f"unknown isar_ros option {key!r}; known: {', '.join(sorted(perception | inference))}"
            )
    return PerceptionConfig(**chosen, inference=InferenceConfig(**tuned))  # type: ignore[arg-type]


class IsarRosMethod(Method):
    """Ours: teach every prompted object from its prompts (mask predictor -> exemplars -> classifier), then
    find all."""

    name = "isar_ros"

    def __init__(self, options: dict | None = None):
        options = dict(options or {})
        kind = options.pop("prompts", "click_box")
        if kind not in PROMPT_KINDS:
            raise ConfigurationError(f"unknown prompts {kind!r}; use one of {', '.join(PROMPT_KINDS)}")
        self.prompt = PROMPT_KINDS[kind]
        self.perception = Perception(perception_config(options))
        self.to_isar = np.zeros(1, np.int64)
        inference = self.perception.config.inference
        # Depth and poses cost a file read and the 3-D location per frame: only when a setting uses them.
        self.uses_geometry = inference.pose_prior or inference.depth_trim

    def train(self, task: Task, mode: str, from_truth: bool = False) -> None:
        """Teach prompt by prompt in frame order, as an operator (or the sim bridge's TeachObject calls)
        would:
        the first prompt of an object creates it, later ones add exemplars.

        ``from_truth``: teach from the ground-truth masks instead of the mask predictor's - a development
        upper bound (how much the teaching masks limit what follows, ``scripts/presence_probe.py
        --teach-from-truth``), never what the suite reports."""
        self.perception.clear()
        mapping: dict[int, int] = {}  # ISAR id -> our id
        for scene, name, prompts in task.prompts(mode):
            source = scene.frame_by_name(name)
            frame = self.perception.encode(source.rgb())
            truth = source.ground_truth() if from_truth else None
            for p in prompts:
                result = self.perception.teach(
                    [(frame, [self.prompt(p)])],
                    name=object_name(p.object_id),
                    object_id=mapping.get(p.object_id, 0),
                    masks=None if truth is None else [truth == p.object_id],
                )
                mapping[p.object_id] = result.object_id
        self.to_isar = np.zeros(max(mapping.values(), default=0) + 1, np.int64)
        for theirs, ours in mapping.items():
            self.to_isar[ours] = theirs

    def reset(self) -> None:
        self.perception.reset()

    def predict(self, frame: Frame) -> np.ndarray:
        geometry = frame.geometry() if self.uses_geometry else None
        segmentation = self.perception.find(self.perception.encode(frame.rgb()), geometry)
        return self.to_isar[segmentation.labels]
