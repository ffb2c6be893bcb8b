"""How a segmentation method plugs into the benchmark runner, and the two reference methods.

A method is trained on one task and mode from the task's prompted train frames, told when a new
test sequence starts, and asked for one label image per frame (object id per pixel, 0 = none)::

    class MyMethod(Method):
        name = "mine"
        def train(self, task, mode): ...        # task.prompts(mode) lists (scene, frame, prompts)
        def reset(self): ...                    # a new test sequence starts
        def predict(self, frame): ...           # -> H x W integer label image

At prediction a method reads ``frame.rgb()`` and, where it wants them, ``frame.geometry()``: the depth in
metres, the intrinsics and the camera pose of the same frame (ISAR ships them for every frame; the
importers carry them over from BOP and other data sets with depth), or None where the data set has no
depth. A method sets ``uses_geometry`` so the runner reports it; ``frame.ground_truth()`` is the scorer's.

The registry of methods by name (``isar-ros benchmark --method NAME``) is
:mod:`isar_ros.isar.registry`; add a new method there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from isar_ros.isar.dataset import Frame, Task
from isar_ros.isar.layout import IsarFormatError


class Method(ABC):
    """Base class: a method sees only the prompts when training, only the images when predicting."""

    name = "method"
    uses_geometry = False  # reads frame.geometry() (depth, intrinsics, camera pose) when predicting

    @abstractmethod
    def train(self, task: Task, mode: str) -> None:
        """Learn the task's objects from ``task.prompts(mode)``."""

    def reset(self) -> None:  # noqa: B027 - an optional hook: methods without temporal state keep it empty
        """A new test sequence starts: drop any temporal state."""

    @abstractmethod
    def predict(self, frame: Frame) -> np.ndarray:
        """H x W integer label image: ISAR object id per pixel, 0 = none."""


class OracleMethod(Method):
    """Returns the ground truth of the tracked ids: every score is perfect. Checks the runner."""

    name = "oracle"

    def train(self, task: Task, mode: str) -> None:
        self.ids = np.asarray(task.semantic_ids)

    def predict(self, frame: Frame) -> np.ndarray:
        gt = frame.ground_truth()
        if gt is None:
            raise IsarFormatError(
                f"{frame}: the oracle needs ground truth (semantic_raw/) for every test frame"
            )
        return np.where(np.isin(gt, self.ids), gt, 0)


class EmptyMethod(Method):
    """Predicts nothing anywhere: every IoU is 0, no false detections."""

    name = "empty"

    def train(self, task: Task, mode: str) -> None:
        pass

    def predict(self, frame: Frame) -> np.ndarray:
        width, height = frame.scene.image_size
        return np.zeros((height, width), np.uint16)
