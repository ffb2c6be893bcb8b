"""``isar_baseline``: the ISAR authors' pipeline, re-implemented from its description (docs/isar-format.md).

For side-by-side comparison with ``isar_ros``. It needs the DINOv2 ViT-L/14 and SAM ViT-H checkpoints
(options ``backbone`` and ``sam`` pick others) and says which file is missing and where to put it.
On a CPU it is slow (SAM ViT-H encodes an image in tens of seconds): use a GPU.

* Features: DINOv2 last-layer normalised patch tokens of the image stretched to 560x560 (40x40),
  ImageNet normalisation, each patch L2-normalised.
* Training mask per prompt: SAM on the image resized to 512x512, point and box together, one mask;
  a patch is positive when the mask covers more than 80 % of it.
* Per object a linear classifier against all other patches of its prompt frames (plus an optional
  background bank, ``background_bank=FILE.npy``: the authors' own bank is not public), balanced by
  weighted sampling; hinge loss, no regularisation, Adam, lr 0.1 for 6 epochs then 0.01 for 5,
  batch 2048.
* Test frame: features bicubically upsampled to 512x512 and L2-normalised per pixel; f = w.x + b;
  mask = f > 1/||w||; components larger than 20 % of the positive area kept; SAM prompt points = up
  to 8 local maxima of f inside the mask plus the global maximum (always - the baseline's known
  weakness); SAM's automatic mask generator on those points (pred_iou 0.88, stability 0.95, box NMS
  0.5, min region 500 px); Hungarian matching of objects to candidate masks by summed score; an
  object is painted only when its summed score is >= 0; nearest-neighbour resize to the input.

Official quirk kept by default: with several train scenes only the last scene's prompts are used
(``all_train_scenes=true`` uses every scene's).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from isar_ros.core.regions import components_above_total_share
from isar_ros.errors import ConfigurationError
from isar_ros.isar.dataset import Frame, Task
from isar_ros.isar.methods import Method

SAM_SIZE = 512
STRETCH = 560
POSITIVE_COVERAGE = 0.8
COMPONENT_FRACTION = 0.2
LOCAL_MAXIMA = 8
TRAIN_SCHEDULE = ((0.1, 6), (0.01, 5))  # (learning rate, epochs)
BATCH = 2048


class _CvResizeLongestSide:
    """SAM's ResizeLongestSide with OpenCV instead of torchvision for the image (coordinates as SAM's)."""

    def __init__(self, wrapped: Any):
        self.wrapped = wrapped
        self.target_length = wrapped.target_length

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        height, width = self.wrapped.get_preprocess_shape(image.shape[0], image.shape[1], self.target_length)
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def train_linear(positives: np.ndarray, negatives: np.ndarray, seed: int = 0) -> tuple[np.ndarray, float]:
    """Hinge loss, no regularisation, Adam (lr 0.1 x 6 epochs, then 0.01 x 5), batch 2048, balanced
    sampling."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.concatenate([positives, negatives])).float()
    y = torch.cat([torch.ones(len(positives)), -torch.ones(len(negatives))])
    weights = torch.cat(
        [
            torch.full((len(positives),), 0.5 / len(positives)),
            torch.full((len(negatives),), 0.5 / len(negatives)),
        ]
    )
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.Adam([w, b], lr=TRAIN_SCHEDULE[0][0])
    for lr, epochs in TRAIN_SCHEDULE:
        for group in optimiser.param_groups:
            group["lr"] = lr
        for _ in range(epochs):
            order = torch.multinomial(weights, len(x), replacement=True, generator=generator)
            for start in range(0, len(order), BATCH):
                batch = order[start : start + BATCH]
                loss = torch.clamp(1 - y[batch] * (x[batch] @ w + b), min=0).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    return w.detach().numpy().astype(np.float32), float(b.detach())


def local_maxima(
    score: np.ndarray, mask: np.ndarray, count: int = LOCAL_MAXIMA, size: int = 15
) -> list[tuple[int, int]]:
    """Up to ``count`` strongest local maxima (x, y) of ``score`` inside ``mask``."""
    dilated = cv2.dilate(score, np.ones((size, size), np.uint8))
    peaks = np.argwhere((score >= dilated) & mask)
    order = np.argsort(-score[peaks[:, 0], peaks[:, 1]])[:count]
    return [(int(peaks[i, 1]), int(peaks[i, 0])) for i in order]


class IsarBaselineMethod(Method):
    name = "isar_baseline"

    def __init__(self, options: dict[str, Any] | None = None, backbone: Any = None, sam: Any = None):
        options = dict(options or {})
        self.all_train_scenes = str(options.pop("all_train_scenes", "false")).lower() in ("1", "true", "yes")
        bank = options.pop("background_bank", "")
        self.background = np.load(bank, allow_pickle=False).astype(np.float32) if bank else None
        device = options.pop("device", "auto")
        if backbone is None:
            from isar_ros.core.backbones.dinov2 import Dinov2Backbone
            from isar_ros.core.backbones.factory import resolve_device

            backbone = Dinov2Backbone.from_name(
                options.pop("backbone", "dinov2_vitl14"),
                resolve_device(device),
                input_policy="stretch",
                stretch_size=STRETCH,
            )
        if sam is None:
            from isar_ros.core.sam import SamMaskPredictor
            from isar_ros.core.weights import find_checkpoint

            name = options.pop("sam", "sam_vit_h")
            sam = SamMaskPredictor.from_checkpoint(find_checkpoint(name), device=device, variant=name)
        if options:
            raise ConfigurationError(f"unknown isar_baseline options: {sorted(options)}")
        self.backbone, self.sam = backbone, sam
        self.weights = np.zeros((0, backbone.feature_dim), np.float32)
        self.biases = np.zeros(0, np.float32)
        self.ids: list[int] = []

    def _features(self, rgb: np.ndarray) -> np.ndarray:
        return self.backbone.extract(rgb).features.cpu().numpy()  # 40 x 40 x C, L2-normalised

    def train(self, task: Task, mode: str) -> None:
        from isar_ros.core.prompt_mask import Prompt

        prompts = task.prompts(mode)
        if not self.all_train_scenes and prompts:
            last = prompts[-1][0]
            prompts = [
                p for p in prompts if p[0] is last
            ]  # the official dict merge keeps the last scene only
        positives: dict[int, list[np.ndarray]] = {}
        negatives: dict[int, list[np.ndarray]] = {}
        for scene, name, frame_prompts in prompts:
            rgb = scene.frame_by_name(name).rgb()
            height, width = rgb.shape[:2]
            small = cv2.resize(rgb, (SAM_SIZE, SAM_SIZE), interpolation=cv2.INTER_LINEAR)
            features = self._features(rgb)
            self.sam.set_image(small)
            sx, sy = SAM_SIZE / width, SAM_SIZE / height
            for p in frame_prompts:
                x0, y0, x1, y1 = p.box_xyxy
                mask = self.sam.predict(
                    Prompt.from_isar(
                        (p.point_xy[0] * sx, p.point_xy[1] * sy), (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
                    )
                )
                coverage = cv2.resize(
                    mask.astype(np.float32), features.shape[1::-1], interpolation=cv2.INTER_AREA
                )
                positive = coverage > POSITIVE_COVERAGE
                positives.setdefault(p.object_id, []).append(features[positive])
                negatives.setdefault(p.object_id, []).append(features[~positive])
        self.ids = sorted(positives)
        weights, biases = [], []
        for object_id in self.ids:
            pos = np.concatenate(positives[object_id])
            neg = np.concatenate(
                negatives[object_id] + ([self.background] if self.background is not None else [])
            )
            if len(pos) == 0:
                weights.append(np.zeros(self.backbone.feature_dim, np.float32))
                biases.append(-1.0)  # no positive patch (object smaller than a patch): never painted
                continue
            w, b = train_linear(pos, neg, seed=object_id)
            weights.append(w)
            biases.append(b)
        self.weights = np.stack(weights) if weights else np.zeros((0, self.backbone.feature_dim), np.float32)
        self.biases = np.asarray(biases, np.float32)

    def predict(self, frame: Frame) -> np.ndarray:
        rgb = frame.rgb()
        height, width = rgb.shape[:2]
        labels = np.zeros((SAM_SIZE, SAM_SIZE), np.int64)
        if not self.ids:
            return cv2.resize(labels.astype(np.uint16), (width, height), interpolation=cv2.INTER_NEAREST)
        grid = torch.from_numpy(self._features(rgb)).permute(2, 0, 1)[None]
        dense = F.normalize(
            F.interpolate(grid, size=(SAM_SIZE, SAM_SIZE), mode="bicubic", align_corners=False)[0], dim=0
        )
        scores = np.einsum("kc,chw->khw", self.weights, dense.numpy()) + self.biases[:, None, None]
        points = []
        for k in range(len(self.ids)):
            threshold = 1.0 / max(float(np.linalg.norm(self.weights[k])), 1e-6)
            mask = components_above_total_share(scores[k] > threshold, COMPONENT_FRACTION)
            points += local_maxima(scores[k], mask)
            y, x = np.unravel_index(np.argmax(scores[k]), scores[k].shape)
            points.append((int(x), int(y)))  # the global maximum, always
        candidates = self._candidates(
            cv2.resize(rgb, (SAM_SIZE, SAM_SIZE), interpolation=cv2.INTER_LINEAR), points
        )
        if candidates:
            from scipy.optimize import linear_sum_assignment

            summed = np.array([[scores[k][c].sum() for c in candidates] for k in range(len(self.ids))])
            rows, cols = linear_sum_assignment(-summed)
            for k, c in zip(rows, cols, strict=False):
                if summed[k, c] >= 0:
                    labels[candidates[c] & (labels == 0)] = self.ids[k]
        return cv2.resize(labels.astype(np.uint16), (width, height), interpolation=cv2.INTER_NEAREST)

    def _candidates(self, image: np.ndarray, points: list[tuple[int, int]]) -> list[np.ndarray]:
        from isar_ros.core.sam import import_segment_anything

        _, generator_class = import_segment_anything()
        grid = np.unique(np.asarray(points, np.float64), axis=0) / SAM_SIZE
        generator = generator_class(
            self.sam.model,
            points_per_side=None,
            point_grids=[grid],
            pred_iou_thresh=0.88,
            stability_score_thresh=0.95,
            box_nms_thresh=0.5,
            min_mask_region_area=500,
        )
        generator.predictor.transform = _CvResizeLongestSide(generator.predictor.transform)
        return [m["segmentation"] for m in generator.generate(image)]
