"""The ISAR metric, with the official evaluator's semantics (docs/isar-format.md, "The metric").

Per tracked object and frame (:func:`score_frame`):

* visible (ground truth non-empty): IoU; boundary F with zero tolerance; a misclassification when
  IoU < 0.4; a false detection (visible) when IoU < 0.1 and |pred| > |gt| * IoU;
* not visible: no IoU at all; a false detection (not visible) when the prediction is non-empty.

Averaging: frames -> object (per scene) -> scene (unweighted over tracked ids) -> mode (unweighted
over test scenes). An id never visible in a scene has no mean IoU: the official scene mean then is
NaN (``mIoU``); ``mIoU_nan_skipping`` skips such ids instead. Both are reported, named as such.

Predictions come as label images (object id per pixel, :func:`masks_from_labels`) or as the
official colour images (BGR, each object painted in its ``color_map`` colour,
:func:`masks_from_colors`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

MISCLASSIFICATION_IOU = 0.4
FALSE_DETECTION_IOU = 0.1


def masks_from_labels(labels: np.ndarray, object_ids: Iterable[int]) -> dict[int, np.ndarray]:
    """Label image (object id per pixel, 0 = none) -> boolean mask per id."""
    return {i: labels == i for i in object_ids}


def masks_from_colors(
    prediction_bgr: np.ndarray, color_map: Mapping[int, tuple[int, int, int]], object_ids: Iterable[int]
) -> dict[int, np.ndarray]:
    """Official colour prediction (H x W x 3, BGR) -> mask per id: pixels exactly equal to its colour."""
    masks = {}
    for i in object_ids:
        color = np.asarray(color_map[i], dtype=prediction_bgr.dtype)
        masks[i] = np.all(prediction_bgr == color, axis=-1)
    return masks


def paint_colors(labels: np.ndarray, color_map: Mapping[int, tuple[int, int, int]]) -> np.ndarray:
    """Label image -> official colour prediction (BGR), unknown ids and 0 black."""
    out = np.zeros((*labels.shape, 3), np.uint8)
    for i in np.unique(labels):
        if i != 0 and int(i) in color_map:
            out[labels == i] = color_map[int(i)]
    return out


def boundary(mask: np.ndarray) -> np.ndarray:
    """1-pixel external contour of ``mask`` (findContours RETR_EXTERNAL, CHAIN_APPROX_NONE, drawn 1 px)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    drawn = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(drawn, contours, -1, 1, thickness=1)
    return drawn.astype(bool)


def boundary_f(pred: np.ndarray, gt: np.ndarray) -> float:
    """F1 between the contours of ``pred`` and ``gt`` with zero pixel tolerance (0 for an empty pred)."""
    if not pred.any():
        return 0.0
    pred_b, gt_b = boundary(pred), boundary(gt)
    hits = np.count_nonzero(pred_b & gt_b)
    if hits == 0:
        return 0.0
    precision = hits / np.count_nonzero(pred_b)
    recall = hits / np.count_nonzero(gt_b)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class FrameScore:
    visible: bool
    iou: float | None  # None when not visible: no IoU is recorded
    boundary_f: float | None
    misclassified: bool
    false_detection: bool  # "visible" or "not visible" kind, according to `visible`


def score_frame(pred: np.ndarray, gt: np.ndarray) -> FrameScore:
    """Score one object in one frame from boolean masks."""
    pred_area = int(np.count_nonzero(pred))
    gt_area = int(np.count_nonzero(gt))
    if gt_area == 0:
        return FrameScore(False, None, None, False, pred_area > 0)
    intersection = int(np.count_nonzero(pred & gt))
    union = pred_area + gt_area - intersection
    iou = intersection / union if pred_area else 0.0
    return FrameScore(
        visible=True,
        iou=iou,
        boundary_f=boundary_f(pred, gt),
        misclassified=iou < MISCLASSIFICATION_IOU,
        false_detection=iou < FALSE_DETECTION_IOU and pred_area > gt_area * iou,
    )


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else math.nan


def nanmean(values: Iterable[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


@dataclass
class ObjectAccumulator:
    ious: dict[str, float] = field(default_factory=dict)  # "<frame>.jpg" -> IoU, visible frames only
    boundary_fs: list[float] = field(default_factory=list)
    visible: int = 0
    not_visible: int = 0
    misclassified: int = 0
    false_visible: int = 0
    false_not_visible: int = 0

    def add(self, frame: str, score: FrameScore) -> None:
        if score.visible:
            self.visible += 1
            self.ious[f"{frame}.jpg"] = score.iou  # type: ignore[assignment]
            self.boundary_fs.append(score.boundary_f)  # type: ignore[arg-type]
            self.misclassified += score.misclassified
            self.false_visible += score.false_detection
        else:
            self.not_visible += 1
            self.false_not_visible += score.false_detection

    @property
    def miou(self) -> float:
        return _mean(self.ious.values())

    @property
    def mboundf(self) -> float:
        return _mean(self.boundary_fs)


@dataclass
class SceneScore:
    """Everything scored for one test scene, in the official results structure."""

    objects: dict[int, ObjectAccumulator]
    frames: int = 0
    seconds: float = 0.0  # time spent by the method predicting this scene's frames

    @classmethod
    def for_ids(cls, object_ids: Iterable[int]) -> SceneScore:
        return cls({int(i): ObjectAccumulator() for i in object_ids})

    def add_frame(self, frame: str, pred_masks: Mapping[int, np.ndarray], gt_ids: np.ndarray) -> None:
        """Score one frame: ``pred_masks`` per tracked id (missing = empty), ``gt_ids`` the semantic_raw
        image."""
        for object_id, accumulator in self.objects.items():
            pred = pred_masks.get(object_id)
            if pred is None:
                pred = np.zeros(gt_ids.shape, bool)
            if pred.shape != gt_ids.shape:
                raise ValueError(
                    f"prediction for id {object_id} is {pred.shape}, ground truth is {gt_ids.shape}"
                )
            accumulator.add(frame, score_frame(pred, gt_ids == object_id))
        self.frames += 1

    @property
    def miou(self) -> float:
        """Official scene mIoU: NaN as soon as one tracked id is never visible in the scene."""
        return _mean(a.miou for a in self.objects.values())

    @property
    def miou_nan_skipping(self) -> float:
        return nanmean(a.miou for a in self.objects.values())

    @property
    def mboundf(self) -> float:
        return _mean(a.mboundf for a in self.objects.values())

    @property
    def mboundf_nan_skipping(self) -> float:
        return nanmean(a.mboundf for a in self.objects.values())

    @property
    def misclassification_rate(self) -> float:
        return _mean(a.misclassified / a.visible for a in self.objects.values() if a.visible)

    def false_detection_ratio_visible(self) -> dict[int, float]:
        return {i: a.false_visible / a.visible for i, a in self.objects.items() if a.visible}

    def false_detection_ratio_not_visible(self) -> dict[int, float]:
        return {i: a.false_not_visible / a.not_visible for i, a in self.objects.items() if a.not_visible}

    @property
    def mean_false_detection_visible(self) -> float:
        return _mean(self.false_detection_ratio_visible().values())

    @property
    def mean_false_detection_not_visible(self) -> float:
        return _mean(self.false_detection_ratio_not_visible().values())

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else math.nan

    def official(self) -> dict:
        """This scene's entry of the official results JSON."""
        return {
            "mIoU": self.miou,
            "mBoundF": self.mboundf,
            "misclassification_rate": self.misclassification_rate,
            "false_detection_ratio_visible": {
                str(i): r for i, r in self.false_detection_ratio_visible().items()
            },
            "false_detection_ratio_not_visible": {
                str(i): r for i, r in self.false_detection_ratio_not_visible().items()
            },
            "iou_detailed": {str(i): dict(a.ious) for i, a in self.objects.items()},
        }

    def summary(self) -> dict:
        """Scalar numbers of this scene (ours: both scene means, fps)."""
        return {
            "mIoU": self.miou,
            "mIoU_nan_skipping": self.miou_nan_skipping,
            "mBoundF": self.mboundf,
            "mBoundF_nan_skipping": self.mboundf_nan_skipping,
            "misclassification_rate": self.misclassification_rate,
            "false_detection_visible": self.mean_false_detection_visible,
            "false_detection_not_visible": self.mean_false_detection_not_visible,
            "frames": self.frames,
            "fps": self.fps,
        }


SUMMARY_KEYS = (
    "mIoU",
    "mIoU_nan_skipping",
    "mBoundF",
    "mBoundF_nan_skipping",
    "misclassification_rate",
    "false_detection_visible",
    "false_detection_not_visible",
)


def mean_over_scenes(scenes: Iterable[SceneScore]) -> dict:
    """Mode-level numbers: unweighted means over test scenes (NaN propagates in the official keys)."""
    scenes = list(scenes)
    summaries = [s.summary() for s in scenes]
    result = {}
    for key in SUMMARY_KEYS:
        values = [s[key] for s in summaries]
        result[key] = nanmean(values) if key.endswith("nan_skipping") else _mean(values)
    frames = sum(s.frames for s in scenes)
    seconds = sum(s.seconds for s in scenes)
    result.update(scenes=len(scenes), frames=frames, fps=frames / seconds if seconds > 0 else math.nan)
    return result


def attribute_means(
    scenes: Iterable[tuple[SceneScore, Mapping[str, bool]]], attributes: Iterable[str]
) -> dict:
    """Per attribute: mean scene mIoU (official and NaN-skipping) over the scenes where it is true."""
    scenes = list(scenes)
    result = {}
    for name in attributes:
        chosen = [s for s, attrs in scenes if attrs.get(name)]
        result[name] = {
            "scenes": len(chosen),
            "mIoU": _mean(s.miou for s in chosen),
            "mIoU_nan_skipping": nanmean(s.miou_nan_skipping for s in chosen),
        }
    return result
