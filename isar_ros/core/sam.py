"""SAM (segment-anything ViT-B/L/H) as a mask predictor, without torchvision.

segment-anything imports torchvision in two places only: ``resize``/``to_pil_image`` (its image
transform, which we replace by our own preprocessing: longest side to 1024, SAM's normalisation
and padding) and ``batched_nms``/``box_area`` (its automatic mask generator). It is imported under a
scoped stand-in for those four functions (NMS and box area implemented here in torch) that is
removed from ``sys.modules`` right after, so nothing else sees a fake torchvision.

Checkpoints are loaded by us with ``torch.load(weights_only=True)`` and ``strict=True`` (SAM's own
builder would unpickle arbitrary objects).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from isar_ros.core.prompt_mask import POSITIVE, MaskPredictor, Prompt
from isar_ros.errors import ConfigurationError, InvalidInput

SAM_VARIANTS = {
    "sam_vit_b": dict(
        encoder_embed_dim=768,
        encoder_depth=12,
        encoder_num_heads=12,
        encoder_global_attn_indexes=[2, 5, 8, 11],
    ),
    "sam_vit_l": dict(
        encoder_embed_dim=1024,
        encoder_depth=24,
        encoder_num_heads=16,
        encoder_global_attn_indexes=[5, 11, 17, 23],
    ),
    "sam_vit_h": dict(
        encoder_embed_dim=1280,
        encoder_depth=32,
        encoder_num_heads=16,
        encoder_global_attn_indexes=[7, 15, 23, 31],
    ),
}
_STAND_IN = (
    "torchvision",
    "torchvision.ops",
    "torchvision.ops.boxes",
    "torchvision.transforms",
    "torchvision.transforms.functional",
)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Greedy non-maximum suppression per category; indices of the kept boxes by decreasing score."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    shifted = boxes + offsets[:, None]  # boxes of different categories never overlap
    order = scores.argsort(descending=True)
    keep = []
    areas = box_area(shifted)
    while order.numel():
        best = order[0]
        keep.append(best)
        rest = order[1:]
        lt = torch.maximum(shifted[best, :2], shifted[rest, :2])
        rb = torch.minimum(shifted[best, 2:], shifted[rest, 2:])
        inter = (rb - lt).clamp(min=0).prod(dim=1)
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[iou <= iou_threshold]
    return torch.stack(keep)


def _not_used(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError(
        "isar_ros preprocesses images for SAM itself; segment_anything's PIL transform is not available"
    )


@contextmanager
def _torchvision_stand_in() -> Iterator[None]:
    """Provide the four torchvision functions segment_anything imports, only while it is imported."""
    if "torchvision" in sys.modules:
        yield
        return
    modules = {name: types.ModuleType(name) for name in _STAND_IN}
    for module, name, value in (
        ("torchvision.ops.boxes", "batched_nms", batched_nms),
        ("torchvision.ops.boxes", "box_area", box_area),
        ("torchvision.transforms.functional", "resize", _not_used),
        ("torchvision.transforms.functional", "to_pil_image", _not_used),
    ):
        setattr(modules[module], name, value)
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name in _STAND_IN:
            sys.modules.pop(name, None)


def import_segment_anything() -> tuple[Any, Any]:
    """(the segment_anything.build_sam module, SamAutomaticMaskGenerator), imported without torchvision."""
    import importlib

    with _torchvision_stand_in():
        build_module = importlib.import_module(
            "segment_anything.build_sam"
        )  # the package re-exports a function by that name
        generator = importlib.import_module(
            "segment_anything.automatic_mask_generator"
        ).SamAutomaticMaskGenerator
    return build_module, generator


def build_sam_model(variant: str | None = None, **architecture: Any) -> Any:
    """An untrained SAM of an official ``variant`` (or of an explicit architecture, for tests)."""
    build_sam, _ = import_segment_anything()
    if variant is not None:
        if variant not in SAM_VARIANTS:
            raise ConfigurationError(f"unknown SAM variant {variant!r}; use one of {', '.join(SAM_VARIANTS)}")
        architecture = SAM_VARIANTS[variant]
    return build_sam._build_sam(checkpoint=None, **architecture)


def load_sam_state(model: torch.nn.Module, path: str | Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise InvalidInput(f"{path} is not a checkpoint of this SAM model: {str(error)[:500]}") from error


class SamMaskPredictor(MaskPredictor):
    """SAM driven module by module: ``set_image`` runs the image encoder once; ``predict`` the prompt
    decoder."""

    name = "sam"

    def __init__(self, model: Any, device: torch.device | str = "cpu", bf16: bool = False):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.bf16 = bf16
        self.embedding: torch.Tensor | None = None
        self.original_size = (0, 0)
        self.input_size = (0, 0)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "auto", variant: str | None = None
    ) -> SamMaskPredictor:
        from isar_ros.core.backbones.factory import resolve_device
        from isar_ros.core.weights import sam_variant_of

        model = build_sam_model(variant or sam_variant_of(path))
        load_sam_state(model, path)
        return cls(model, resolve_device(device))

    @torch.inference_mode()
    def set_image(self, rgb: np.ndarray) -> None:
        target = self.model.image_encoder.img_size
        height, width = rgb.shape[:2]
        scale = target / max(height, width)
        new_h, new_w = int(height * scale + 0.5), int(width * scale + 0.5)
        resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(resized).to(self.device).permute(2, 0, 1)[None].float()
        x = self.model.preprocess(x)  # SAM's normalisation, then padding to target x target
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            self.embedding = self.model.image_encoder(x).float()
        self.original_size, self.input_size = (height, width), (new_h, new_w)

    @torch.inference_mode()
    def predict(self, prompt: Prompt) -> np.ndarray:
        if self.embedding is None:
            raise RuntimeError("call set_image() before predict()")
        height, width = self.original_size
        prompt.validate(width, height)
        scale = torch.tensor([self.input_size[1] / width, self.input_size[0] / height], device=self.device)
        points = None
        labels = np.asarray(prompt.labels).ravel()
        if len(labels):
            coords = (
                torch.as_tensor(np.asarray(prompt.points_xy, np.float32).reshape(-1, 2), device=self.device)
                * scale
            )
            points = (coords[None], torch.as_tensor(labels, device=self.device)[None])
        box = prompt.clipped_box(width, height)
        boxes = (
            None
            if box is None
            else (
                torch.as_tensor(box, dtype=torch.float32, device=self.device).reshape(2, 2) * scale
            ).reshape(1, 4)
        )
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=None)
        multimask = box is None and int((labels == POSITIVE).sum()) == 1 and len(labels) == 1
        low_res, quality = self.model.mask_decoder(
            image_embeddings=self.embedding,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        best = int(quality[0].argmax())
        masks = self.model.postprocess_masks(low_res[:, best : best + 1], self.input_size, self.original_size)
        return (masks[0, 0] > self.model.mask_threshold).cpu().numpy()
