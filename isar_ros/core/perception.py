"""The perception facade: what the ROS nodes and the benchmark method call.

::

    perception = Perception(PerceptionConfig())              # offline default: handcrafted + GrabCut
    frame = perception.encode(rgb)                            # features once per frame
    result = perception.teach([(frame, [prompt])], name="mug")   # -> TeachResult(object_id, masks)
    segmentation = perception.find(perception.encode(other_rgb))
    perception.snapshot()                                     # what inference nodes are sent

``encode`` pays the expensive steps once per frame (backbone features; the mask predictor's image
encoding happens once in ``teach`` however many prompts refer to that frame). Callers never reach
inside the memory: :meth:`Perception.snapshot`, :attr:`Perception.version`,
:meth:`Perception.objects` and :meth:`Perception.id_by_name` answer what they need to know.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from isar_ros.core.backbones import Backbone, FeatureGrid
from isar_ros.core.backbones.factory import create_backbone
from isar_ros.core.geometry import FrameGeometry
from isar_ros.core.images import require_rgb, thumbnail
from isar_ros.core.inference import InferenceConfig, InstanceFinder, ObjectModel
from isar_ros.core.mask_predictors import create_mask_predictor
from isar_ros.core.memory import InstanceMemory, MemoryConfig
from isar_ros.core.memory_snapshot import MemorySnapshot, SnapshotObject
from isar_ros.core.memory_store import load_memory, save_memory
from isar_ros.core.prompt_mask import MaskPredictor, Prompt, PromptError
from isar_ros.core.seeding import content_seed
from isar_ros.core.segmentation import Segmentation
from isar_ros.settings import setting

T = TypeVar("T")


@dataclass
class PerceptionConfig:
    backbone: str = setting("handcrafted", "handcrafted (no weights) or dinov2_vit{s,b,l,g}14[_reg4]")
    device: str = setting("auto", "auto (cuda when available), cpu or cuda[:N]")
    backend: str = setting(
        "torch",
        "DINOv2 runtime: torch (any device) or openvino (CPU, fastest with AVX-512; pip install openvino)",
        choices=("torch", "openvino"),
    )
    precision: str = setting(
        "auto",
        "DINOv2 precision: auto (torch: bf16/fp16 autocast on a GPU, fp32 on a CPU; openvino: bf16 where "
        "the CPU has it), fp32, bf16, fp16 (torch on a GPU) or int8 (openvino, after isar-ros quantize)",
        choices=("auto", "fp32", "bf16", "fp16", "int8"),
    )
    compile: bool = setting(False, "DINOv2 on torch: torch.compile the network (first frame compiles)")
    short_side: int = setting(
        448, "DINOv2 input short side, pixels (224 / 336 / 448: speed against detail)", low=112, high=1036
    )
    backbone_options: dict = field(default_factory=dict)
    mask_predictor: str = setting(
        "auto", "auto (SAM if its checkpoint is found), sam or grabcut", choices=("auto", "sam", "grabcut")
    )
    sam_checkpoint: str = setting("", "explicit SAM checkpoint file (empty: search the weights folder)")
    augmentations: int = 2  # photometric variants per teach call (other lighting, other rooms)
    teach_threads: int = setting(
        2,
        "threads for a teach call's independent steps: masks (GrabCut; SAM runs one at a time) and "
        "features (the hand-crafted backbone; DINOv2 runs one at a time) of its frames",
        low=1,
        high=64,
    )
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def backbone_kwargs(self) -> dict:
        """Options for :func:`create_backbone`: the DINOv2 runtime settings, then ``backbone_options``."""
        runtime = {
            "backend": self.backend,
            "precision": self.precision,
            "short_side": self.short_side,
            "compile": self.compile,
        }
        return {**(runtime if self.backbone.startswith("dinov2_") else {}), **self.backbone_options}


@dataclass
class EncodedFrame:
    rgb: np.ndarray
    grid: FeatureGrid
    seconds: float = 0.0


@dataclass
class TeachResult:
    object_id: int
    masks: list[np.ndarray]  # one per prompted frame: the union of that frame's prompt masks
    seconds: float


def light_change(rng: np.random.Generator) -> np.ndarray:
    """Per-channel gains for :func:`relight`: an overall gain of 0.65..1.2 times a tint of 0.85..1.0."""
    return (rng.uniform(0.65, 1.2) * rng.uniform(0.85, 1.0, 3)).astype(np.float32)


def relight(rgb: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """The same view under other light (``gains`` from :func:`light_change`)."""
    return np.clip(rgb.astype(np.float32) * gains, 0, 255).astype(np.uint8)


# A new object taught from one frame is also taught from that frame this many times closer
# (:func:`closer_view`): the surroundings there as background, the object's look there in its appearance
# while it has that one view (InstanceMemory.teach). Dev suite: single-shot synthetic 0.654 -> 0.677 with
# fewer false detections, PerSeg 0.517 -> 0.671 (docs/evaluation.md, "A view from closer"; 1.6 was the
# first value tried, not tuned).
CLOSER_VIEW = 1.6


def closer_view(
    rgb: np.ndarray, mask: np.ndarray, factor: float = CLOSER_VIEW
) -> tuple[np.ndarray, np.ndarray]:
    """The view ``factor`` times closer and its mask: the window of 1/``factor`` of the frame centred on
    the mask's box (moved inside the frame where the box is near an edge), resized back to the frame."""
    height, width = mask.shape
    rows, cols = np.nonzero(mask)
    h, w = max(1, round(height / factor)), max(1, round(width / factor))
    top = int(np.clip((rows.min() + rows.max() + 1) // 2 - h // 2, 0, height - h))
    left = int(np.clip((cols.min() + cols.max() + 1) // 2 - w // 2, 0, width - w))
    window = (slice(top, top + h), slice(left, left + w))
    closer = cv2.resize(rgb[window], (width, height), interpolation=cv2.INTER_LINEAR)
    closer_mask = cv2.resize(mask[window].astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return closer, closer_mask.astype(bool)


def masks_of(predictor: MaskPredictor, rgb: np.ndarray, prompts: list[Prompt]) -> np.ndarray:
    """The union of the masks ``predictor`` gives for ``prompts`` on one image (prompts checked first)."""
    height, width = require_rgb(rgb).shape[:2]
    for prompt in prompts:
        prompt.validate(width, height)
    predictor.set_image(rgb)
    mask = np.zeros((height, width), bool)
    for prompt in prompts:
        mask |= predictor.predict(prompt)
    return mask


class Perception:
    """Backbone + mask predictor + instance memory + instance finder, behind one small API."""

    def __init__(
        self,
        config: PerceptionConfig | None = None,
        backbone: Backbone | None = None,
        mask_predictor: MaskPredictor | None = None,
        refiner: MaskPredictor | None = None,
    ):
        self.config = config or PerceptionConfig()
        self.backbone = backbone or create_backbone(
            self.config.backbone, self.config.device, **self.config.backbone_kwargs()
        )
        self._mask_predictor = mask_predictor
        self._pool: ThreadPoolExecutor | None = None
        self._predictors = threading.local()  # each mask thread's own predictor
        self.memory = InstanceMemory(self.backbone.backbone_id, self.backbone.feature_dim, self.config.memory)
        if refiner is None and self.config.inference.refine == "sam":
            refiner = create_mask_predictor("sam", self.config.sam_checkpoint, self.config.device)
        self.finder = InstanceFinder(self._model(), self.config.inference, refiner)

    @property
    def mask_predictor(self) -> MaskPredictor:
        if self._mask_predictor is None:  # loading SAM is costly: only when teaching needs it
            self._mask_predictor = create_mask_predictor(
                self.config.mask_predictor, self.config.sam_checkpoint, self.config.device
            )
        return self._mask_predictor

    # ---- what callers may know about the memory -------------------------------------------------
    def snapshot(self) -> MemorySnapshot:
        """The memory as inference sees it (what the ``memory`` topic carries)."""
        return self.memory.snapshot()

    @property
    def version(self) -> int:
        return self.memory.version

    def objects(self) -> tuple[SnapshotObject, ...]:
        """The taught objects in id order."""
        return self.snapshot().objects

    def id_by_name(self, name: str) -> int:
        return self.memory.id_by_name(name)

    def thumbnails(self, object_id: int) -> list[np.ndarray]:
        """Small RGB crops of the object's first prompted frames (empty for memories saved without)."""
        obj = self.memory.objects.get(object_id)
        return list(obj.exemplars.thumbnails) if obj is not None else []

    def _model(self) -> ObjectModel:
        return ObjectModel(self.snapshot(), self.backbone.device)

    # ---- frames ---------------------------------------------------------------------------------
    def encode(self, rgb: np.ndarray) -> EncodedFrame:
        require_rgb(rgb)
        start = time.perf_counter()
        grid = self.backbone.extract(rgb)
        return EncodedFrame(rgb, grid, time.perf_counter() - start)

    def masks_for(self, rgb: np.ndarray, prompts: list[Prompt]) -> np.ndarray:
        """The union of the masks of ``prompts`` on one image (what teaching would learn; a preview)."""
        return masks_of(self.mask_predictor, rgb, prompts)

    def _threaded(self, count: int, allowed: bool) -> bool:
        return count > 1 and allowed and self.config.teach_threads > 1

    def _start(self, calls: Sequence[Callable[[], T]], threads_allowed: bool) -> list[Future[T]]:
        """Run ``calls`` (one future each, in order): in the teach threads when allowed and there is more
        than one, else here one after the other (an exception is raised where the result is read)."""
        if self._threaded(len(calls), threads_allowed):
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.config.teach_threads, thread_name_prefix="isar-teach")
            return [self._pool.submit(call) for call in calls]
        done = []
        for call in calls:
            future: Future[T] = Future()
            try:
                future.set_result(call())
            except Exception as error:
                future.set_exception(error)
            done.append(future)
        return done

    def _start_masks(self, frames: list[tuple[np.ndarray, list[Prompt]]]) -> list[Future[np.ndarray]]:
        """The masks of several frames, in the teach threads when the mask predictor allows it (GrabCut;
        SAM runs one at a time). Every prompt is checked first: PromptError before any work."""
        for rgb, prompts in frames:
            height, width = require_rgb(rgb).shape[:2]
            for prompt in prompts:
                prompt.validate(width, height)
        if not self._threaded(len(frames), self.mask_predictor.for_another_thread() is not None):
            return self._start([partial(self.masks_for, rgb, prompts) for rgb, prompts in frames], False)
        return self._start([partial(self._mask_in_thread, rgb, prompts) for rgb, prompts in frames], True)

    def _relit_features(self, rgb: np.ndarray, gains: np.ndarray) -> FeatureGrid:
        return self.backbone.extract(relight(rgb, gains))

    def _mask_in_thread(self, rgb: np.ndarray, prompts: list[Prompt]) -> np.ndarray:
        predictor = getattr(self._predictors, "predictor", None) or self.mask_predictor.for_another_thread()
        assert predictor is not None, "threads are used only for predictors that allow them"
        self._predictors.predictor = predictor
        return masks_of(predictor, rgb, prompts)

    # ---- changes --------------------------------------------------------------------------------
    def teach_images(
        self, images: list[tuple[np.ndarray, list[Prompt]]], name: str = "", object_id: int = 0
    ) -> TeachResult:
        """:meth:`teach` from images not yet encoded (what the teach node does with a request): the masks
        and, with a backbone that allows it (the hand-crafted one), the features are computed in the
        ``teach_threads`` worker threads."""
        start = time.perf_counter()
        if not images:
            raise PromptError("no prompted frame given")
        masks = self._start_masks(images)
        frames = self._start([partial(self.encode, rgb) for rgb, _ in images], self.backbone.thread_safe)
        exemplars = [(frame.result(), prompts) for frame, (_, prompts) in zip(frames, images, strict=True)]
        result = self.teach(exemplars, name, object_id, masks=[f.result() for f in masks])
        result.seconds = time.perf_counter() - start
        return result

    def teach(
        self,
        exemplars: list[tuple[EncodedFrame, list[Prompt]]],
        name: str = "",
        object_id: int = 0,
        masks: list[np.ndarray] | None = None,
    ) -> TeachResult:
        """Teach one object from prompts on one or more frames (or from given ``masks``).

        A ``name`` that exists adds views to that object. Raises PromptError / MemoryFormatError with
        a clear message; the memory is unchanged then.
        """
        start = time.perf_counter()
        if not exemplars:
            raise PromptError("no prompted frame given")
        pending = self._start_masks([(f.rgb, p) for f, p in exemplars]) if masks is None else []
        # Photometric variants matter for one-shot teaching; a call with several frames already shows
        # the object under several views, so the call gets `augmentations` variants in all, spread
        # over its frames (a one-frame call: exactly as before). Encoded while the masks are made.
        # The light changes are drawn here, in order; the variants are made and encoded in the threads.
        rng = np.random.default_rng(content_seed(exemplars[0][0].rgb))
        gains = [light_change(rng) for _ in range(self.config.augmentations)]
        extract = [
            partial(self._relit_features, exemplars[i % len(exemplars)][0].rgb, gain)
            for i, gain in enumerate(gains)
        ]
        variants = self._start(extract, self.backbone.thread_safe)
        if masks is None:
            masks = [f.result() for f in pending]
        views = [(f.grid.features.cpu().numpy(), m) for (f, _), m in zip(exemplars, masks, strict=False)]
        views += [(v.result().features.cpu().numpy(), masks[i % len(masks)]) for i, v in enumerate(variants)]
        thumbnails = [thumbnail(f.rgb, m) for (f, _), m in zip(exemplars, masks, strict=False)]
        closer = None
        if len(exemplars) == 1 and masks[0].any() and self.memory.is_new(name, object_id):
            rgb, mask = closer_view(exemplars[0][0].rgb, masks[0])
            if mask.any():  # a mask in parts at opposite corners can leave the window without any of it
                closer = (self.backbone.extract(rgb).features.cpu().numpy(), mask)
        object_id = self.memory.teach(
            views, name, object_id, num_exemplars=len(exemplars), thumbnails=thumbnails, closer=closer
        )
        self.finder.set_model(self._model())
        return TeachResult(object_id, masks, time.perf_counter() - start)

    def clear(self) -> None:
        """Forget everything (a fresh memory for the same backbone)."""
        self.memory = InstanceMemory(self.backbone.backbone_id, self.backbone.feature_dim, self.config.memory)
        self.finder.set_model(self._model())
        self.finder.reset()

    def forget(self, object_id: int) -> None:
        self.memory.forget(object_id)
        self.finder.set_model(self._model())

    def rename(self, object_id: int, name: str) -> None:
        self.memory.rename(object_id, name)
        self.finder.set_model(self._model())

    # ---- finding --------------------------------------------------------------------------------
    def find(self, frame: EncodedFrame, geometry: FrameGeometry | None = None) -> Segmentation:
        """Every taught object in ``frame``; with ``geometry`` (depth, intrinsics, pose) also located in
        3-D, and depth trimming and the pose prior as configured."""
        segmentation = self.finder.find(frame.grid, frame.rgb, geometry)
        segmentation.timings_ms["features"] = frame.seconds * 1000
        return segmentation

    def reset(self) -> None:
        """A new image sequence starts: drop temporal state."""
        self.finder.reset()

    # ---- persistence ----------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        return save_memory(self.memory, directory)

    def load(self, directory: str | os.PathLike) -> None:
        """Replace the memory by a saved one; on any error the current memory stays as it was."""
        self.memory = load_memory(directory, self.backbone.backbone_id, self.config.memory)
        self.finder.set_model(self._model())
