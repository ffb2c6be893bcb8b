"""DINOv2 ViT-S/B/L/G with patch 14, with and without registers, written with the official parameter names.

The official ``dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth`` files are plain state dicts;
:meth:`Dinov2Backbone.from_name` finds one (see :mod:`isar_ros.core.weights`) and loads it with
``strict=True``. Position embeddings are interpolated exactly as the original (bicubic, scale
factor ((rows + 0.1) / M, (cols + 0.1) / M) for an M x M trained grid, no antialiasing): other
libraries' interpolation differs by up to 0.06 at non-native sizes.

Features are the last layer's normalised patch tokens, each L2-normalised. Input size policy:

* ``keep_aspect`` (default): the short side resized to ``short_side`` pixels, both sides rounded to
  multiples of 14 (aspect ratio kept, e.g. 640x480 -> 602x448 -> a 43 x 32 grid);
* ``stretch``: resized to ``stretch_size`` x ``stretch_size`` ignoring the aspect ratio, as the
  ISAR authors do (560 -> a 40 x 40 grid).

``backend``: ``torch`` (any device) or ``openvino`` (CPU, :mod:`.openvino_vit`). ``precision``:

* torch: ``auto`` = bf16 autocast on a CUDA GPU that has it (fp16 on older ones), fp32 on a CPU;
  ``fp32``; ``bf16`` (autocast, CPU or GPU); ``fp16`` (autocast, CUDA only);
* openvino: ``auto`` = bf16 where the CPU has AVX-512 BF16 or AMX, else fp32; ``fp32``; ``bf16``;
  ``int8`` (quantised on the user's own images first: :meth:`Dinov2Backbone.quantize`).

On a GPU the image is copied once into pinned host memory and uploaded asynchronously; resizing,
normalisation, the network and the feature normalisation run on the GPU, and the features stay there for
the scoring (the finder's object model lives on the same device). ``compile=True`` wraps the network in
``torch.compile`` (its first frame per input size compiles, seconds to a minute).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from isar_ros.core.backbones.base import Backbone, FeatureGrid
from isar_ros.core.images import require_rgb
from isar_ros.errors import ConfigurationError, InvalidInput

PATCH = 14
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAINED_IMAGE_SIZE = 518  # pos_embed holds 37 x 37 patches + the class token
BACKENDS = ("torch", "openvino")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The torch path's autocast type for ``precision`` on ``device`` (None = plain fp32)."""
    if precision not in PRECISIONS:
        raise ConfigurationError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "int8":
        raise ConfigurationError("precision int8 is for backend openvino (quantised with isar-ros quantize)")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigurationError(
            f"precision fp16 needs a CUDA GPU (device is {device}); "
            "on a CPU use fp32, bf16 or backend openvino"
        )
    return _AUTOCAST.get(precision)


@dataclass(frozen=True)
class Quantized:
    """What :meth:`Dinov2Backbone.quantize` wrote, and how close its features are to fp32 torch's."""

    path: Path
    calibration_images: int
    check_images: int
    seconds: float
    min_cosine: float  # over every patch of the check images (NaN without check images)
    mean_cosine: float


@dataclass(frozen=True)
class VitSpec:
    dim: int
    depth: int
    heads: int
    swiglu: bool = False


SPECS = {
    "s": VitSpec(384, 12, 6),
    "b": VitSpec(768, 12, 12),
    "l": VitSpec(1024, 24, 16),
    "g": VitSpec(1536, 40, 24, swiglu=True),
}


class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # B x N x D


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLU(nn.Module):
    """ViT-g's feed-forward: hidden width int(4 * dim * 2 / 3) rounded up to a multiple of 8."""

    def __init__(self, dim: int):
        super().__init__()
        hidden = (int(4 * dim * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, spec: VitSpec):
        super().__init__()
        self.norm1 = nn.LayerNorm(spec.dim, eps=1e-6)
        self.attn = Attention(spec.dim, spec.heads)
        self.ls1 = LayerScale(spec.dim)
        self.norm2 = nn.LayerNorm(spec.dim, eps=1e-6)
        self.mlp = SwiGLU(spec.dim) if spec.swiglu else Mlp(spec.dim)
        self.ls2 = LayerScale(spec.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """The DINOv2 ViT, parameter for parameter (``blocks.N`` flat, as in the released checkpoints)."""

    def __init__(self, spec: VitSpec, registers: int = 0, image_size: int = TRAINED_IMAGE_SIZE):
        super().__init__()
        self.spec, self.registers = spec, registers
        grid = image_size // PATCH
        self.patch_embed = PatchEmbed(spec.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, spec.dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, registers, spec.dim)) if registers else None
        self.mask_token = nn.Parameter(torch.zeros(1, spec.dim))  # unused at inference; in the checkpoints
        self.blocks = nn.ModuleList(Block(spec) for _ in range(spec.depth))
        self.norm = nn.LayerNorm(spec.dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def interpolate_pos_encoding(self, rows: int, cols: int) -> torch.Tensor:
        trained = self.pos_embed.shape[1] - 1
        side = int(math.sqrt(trained))
        if rows == cols == side:
            return self.pos_embed
        pos = self.pos_embed.float()
        patches = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(
            patches, scale_factor=((rows + 0.1) / side, (cols + 0.1) / side), mode="bicubic", antialias=False
        )
        patches = patches.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat([pos[:, :1], patches], dim=1).to(self.pos_embed.dtype)

    def forward_features(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """B x 3 x H x W (H, W multiples of 14, ImageNet-normalised) -> B x rows x cols x D normalised patch
        tokens. ``pos``: the position embedding for this size, when already interpolated (export)."""
        batch, _, height, width = x.shape
        if height % PATCH or width % PATCH:
            raise ValueError(f"input {width}x{height} is not a multiple of the patch size {PATCH}")
        rows, cols = height // PATCH, width // PATCH
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(batch, -1, -1), tokens], dim=1)
        tokens = tokens + (self.interpolate_pos_encoding(rows, cols) if pos is None else pos)
        if self.register_tokens is not None:
            tokens = torch.cat(
                [tokens[:, :1], self.register_tokens.expand(batch, -1, -1), tokens[:, 1:]], dim=1
            )
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        return tokens[:, 1 + self.registers :].reshape(batch, rows, cols, -1)


def parse_name(name: str) -> tuple[VitSpec, int]:
    """``dinov2_vits14`` / ``dinov2_vitb14_reg4`` ... -> (spec, registers)."""
    prefix = "dinov2_vit"
    size = name[len(prefix) : len(prefix) + 1] if name.startswith(prefix) else ""
    rest = name[len(prefix) + 1 :]
    if size not in SPECS or rest not in ("14", "14_reg4"):
        raise ConfigurationError(
            f"unknown DINOv2 model {name!r}; use dinov2_vit{{s,b,l,g}}14 or dinov2_vit{{s,b,l,g}}14_reg4"
        )
    return SPECS[size], 4 if rest.endswith("reg4") else 0


def input_size(width: int, height: int, policy: str, short_side: int, stretch_size: int) -> tuple[int, int]:
    """(width, height) the image is resized to before the ViT, by ``policy``."""
    if policy == "stretch":
        side = max(PATCH, round(stretch_size / PATCH) * PATCH)
        return side, side
    if policy != "keep_aspect":
        raise ConfigurationError(f"input policy must be keep_aspect or stretch, not {policy!r}")
    scale = short_side / min(width, height)
    return (
        max(PATCH, round(width * scale / PATCH) * PATCH),
        max(PATCH, round(height * scale / PATCH) * PATCH),
    )


class Dinov2Backbone(Backbone):
    def __init__(
        self,
        model: DinoVisionTransformer,
        name: str,
        device: torch.device,
        input_policy: str = "keep_aspect",
        short_side: int = 448,
        stretch_size: int = 560,
        backend: str = "torch",
        precision: str = "auto",
        compile: bool = False,
    ):
        if backend not in BACKENDS:
            raise ConfigurationError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        if backend == "openvino" and device.type != "cpu":
            raise ConfigurationError(
                f"backend openvino runs on the CPU; device is {device} (use backend torch on a GPU)"
            )
        self.model = model.to(device).eval()
        self.backend = backend
        self.openvino = None
        self.autocast: torch.dtype | None = None
        self.forward: Any = self.model.forward_features
        if backend == "openvino":
            from isar_ros.core.backbones.openvino_vit import OpenVinoVit

            self.openvino = OpenVinoVit(self.model, name, precision)
        else:
            self.autocast = autocast_dtype(precision, device)
            if compile:
                self.forward = torch.compile(self.model.forward_features, dynamic=False)
        self.device = device
        self.feature_dim = model.spec.dim
        # Features at another input size are other features: a memory taught at one is refused at another.
        self.backbone_id = name
        if input_policy == "stretch":
            self.backbone_id += f"-stretch{stretch_size}"
        elif short_side != 448:
            self.backbone_id += f"-s{short_side}"
        self.input_policy, self.short_side, self.stretch_size = input_policy, short_side, stretch_size
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    @classmethod
    def from_name(
        cls,
        name: str,
        device: torch.device,
        checkpoint: str | None = None,
        random_init: bool = False,
        **options: Any,
    ) -> Dinov2Backbone:
        """The official checkpoint for ``name`` (found by isar_ros.core.weights), loaded strictly.

        ``random_init=True`` skips the weights (for speed measurements and tests only).
        """
        spec, registers = parse_name(name)
        model = DinoVisionTransformer(spec, registers)
        if not random_init:
            from isar_ros.core.weights import find_checkpoint

            path = find_checkpoint(name, checkpoint)
            load_checkpoint(model, path)
        return cls(model, name, device, **options)

    @torch.inference_mode()
    def extract(self, rgb: np.ndarray) -> FeatureGrid:
        height, width = rgb.shape[:2]
        x = self.network_input(rgb)
        if self.openvino is not None:
            features = self.openvino(x)[0].float()
        else:
            with torch.autocast(
                self.device.type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None
            ):
                features = self.forward(x)[0].float()
        return FeatureGrid(F.normalize(features, dim=-1), (width, height))

    def network_input(self, rgb: np.ndarray) -> torch.Tensor:
        """``rgb`` (H x W x 3 uint8) resized by the input policy and normalised: 1 x 3 x h x w float32."""
        require_rgb(rgb)
        height, width = rgb.shape[:2]
        size = input_size(width, height, self.input_policy, self.short_side, self.stretch_size)
        x = self._upload(rgb).permute(2, 0, 1)[None].float() / 255.0
        x = F.interpolate(x, size=(size[1], size[0]), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    @torch.inference_mode()
    def quantize(self, calibration: list[np.ndarray], check: list[np.ndarray]) -> Quantized:
        """Quantise the network to int8 for the input size of these camera images (backend openvino) and
        compare the int8 features with this model's fp32 torch features on the ``check`` images, which the
        calibration did not see. All images must be the size of the camera the node will run on; a
        backbone with precision int8 runs the new network from its next frame."""
        if self.openvino is None:
            raise ConfigurationError("quantising needs backend openvino")
        sizes = {image.shape[:2] for image in [*calibration, *check]}
        if len(sizes) != 1:
            raise InvalidInput(
                f"calibration images come in {len(sizes)} sizes; resize them to the camera's size first"
            )
        start = time.perf_counter()
        path = self.openvino.quantize([self.network_input(rgb).cpu().numpy() for rgb in calibration])
        seconds = time.perf_counter() - start
        int8, cosines = self.openvino.load(path, "int8"), []
        for rgb in check:
            x = self.network_input(rgb)
            reference = F.normalize(self.model.forward_features(x)[0].float(), dim=-1)
            quantized = F.normalize(self.openvino(x, int8)[0].float(), dim=-1)
            cosines.append((reference * quantized).sum(-1).flatten())
        agreement = torch.cat(cosines) if cosines else torch.full((1,), float("nan"))  # nothing checked
        return Quantized(
            path, len(calibration), len(check), seconds, float(agreement.min()), float(agreement.mean())
        )

    def _upload(self, rgb: np.ndarray) -> torch.Tensor:
        """The image on the backbone's device: on a GPU through pinned memory, asynchronously."""
        host = torch.from_numpy(rgb)
        if self.device.type != "cuda":
            return host.to(self.device)
        return host.pin_memory().to(self.device, non_blocking=True)


def load_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load an official state dict with ``strict=True``; a mismatch names the file and the keys."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and "pos_embed" not in state:
        state = state["model"]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise InvalidInput(f"{path} is not a checkpoint of this DINOv2 model: {str(error)[:500]}") from error
