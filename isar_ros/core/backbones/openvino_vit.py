"""Run our DINOv2 ViT with OpenVINO on the CPU (``backend: openvino``), 2.5-3x faster than torch eager.

The network is exported from :class:`~isar_ros.core.backbones.dinov2.DinoVisionTransformer` itself (the
official weights, loaded as for torch) at one input size: the position embedding is interpolated for
that size first and baked in, since OpenVINO's converter cannot trace the bicubic ``scale_factor``
interpolation. Each input size is exported once and kept on disk, keyed by the weights' SHA-256, the
model name and the size: ``<cache>/<name>-<hash16>-<W>x<H>.xml/.bin`` (OpenVINO IR); OpenVINO's own
compiled-blob cache sits beside it in ``compiled/``, so a second start loads in well under a second.
The cache folder is ``$ISAR_OPENVINO_CACHE`` or ``$XDG_CACHE_HOME/isar_ros/openvino``
(``~/.cache/isar_ros/openvino``).

Precision: ``fp32``, ``bf16`` (CPUs with AVX-512 BF16 or AMX; refused elsewhere), ``auto`` (bf16
where the CPU has it, else fp32), chosen at run time from OpenVINO's ``OPTIMIZATION_CAPABILITIES``, or
``int8``: a copy of the network quantised by NNCF (post-training, statistics from the user's own camera
images: :meth:`OpenVinoVit.quantize`, ``isar-ros quantize``), kept beside the export as
``<name>-<hash16>-<W>x<H>-int8.xml``; its layers that stay in floating point run in bf16 where the CPU
has it. OpenVINO is an optional dependency (``pip install openvino``; ``pip install nncf`` to quantise);
asking for this backend without it says what to install.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from isar_ros.errors import ConfigurationError, InvalidInput

PRECISIONS = ("auto", "fp32", "bf16", "int8")
# SmoothQuant's migration strength for the attention and MLP matrix products: the SmoothQuant paper's
# default. NNCF's transformer default (0.95) gave a minimum patch cosine of 0.981 with torch (random
# ViT-S weights, 448 px); 0.5 gave 0.992 at the same speed, no smoothing 0.995 at 18 % more time.
SMOOTH_QUANT_ALPHA = 0.5


def cache_dir() -> Path:
    explicit = os.environ.get("ISAR_OPENVINO_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "isar_ros" / "openvino"


def _openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise ConfigurationError(
            "backend openvino needs the OpenVINO runtime: pip install openvino (into this environment: "
            ".venv/bin/pip install openvino), or use backend torch"
        ) from None
    return openvino


def _nncf() -> Any:
    try:
        import nncf
    except ImportError:
        raise ConfigurationError(
            "quantising to int8 needs NNCF: pip install nncf (into this environment: .venv/bin/pip install "
            "nncf), or use precision fp32, bf16 or auto"
        ) from None
    return nncf


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of the model's parameters and buffers (names, shapes and bytes), in state-dict order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


class _FixedSize(nn.Module):
    """The ViT at one input size, its interpolated position embedding a constant."""

    def __init__(self, model: Any, rows: int, cols: int):
        super().__init__()
        self.model = model  # a DinoVisionTransformer
        with torch.no_grad():
            self.register_buffer("pos", model.interpolate_pos_encoding(rows, cols).detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x, pos=self.pos)


class OpenVinoVit:
    """``vit(x)``: B x 3 x H x W normalised float32 -> B x rows x cols x D, through OpenVINO on the CPU."""

    def __init__(self, model: nn.Module, name: str, precision: str = "auto", cache: Path | None = None):
        if precision not in PRECISIONS:
            raise ConfigurationError(
                f"backend openvino takes precision {', '.join(PRECISIONS)}, not {precision!r}"
                + (" (fp16 is for backend torch on a GPU)" if precision == "fp16" else "")
            )
        self.ov = _openvino()
        self.core = self.ov.Core()
        capabilities = self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if precision == "auto":
            precision = "bf16" if "BF16" in capabilities else "fp32"
        elif precision == "bf16" and "BF16" not in capabilities:
            raise ConfigurationError(
                "precision bf16 needs a CPU with AVX-512 BF16 or AMX (this one offers "
                f"{', '.join(capabilities)}); use precision fp32 or auto"
            )
        self.precision, self.has_bf16 = precision, "BF16" in capabilities
        self.model, self.name = model.eval(), name
        self.cache = Path(cache) if cache else cache_dir()
        self.digest = weights_digest(model)[:16]
        if precision == "int8" and not any(self.cache.glob(f"{name}-{self.digest}-*-int8.xml")):
            raise ConfigurationError(self._quantize_first("these weights"))
        self.core.set_property({"CACHE_DIR": str(self.cache / "compiled")})  # OpenVINO's compiled blobs
        self.compiled: dict[tuple[int, int], Any] = {}

    def _quantize_first(self, what: str) -> str:
        return (
            f"precision int8 needs the network quantised on your own camera images for {what}: run "
            f"`isar-ros quantize {self.name} --images FOLDER` with the node's short_side and camera size "
            f"(docs/benchmarks.md; none in {self.cache})"
        )

    def ir_path(self, height: int, width: int) -> Path:
        return self.cache / f"{self.name}-{self.digest}-{width}x{height}.xml"

    def int8_path(self, height: int, width: int) -> Path:
        return self.cache / f"{self.name}-{self.digest}-{width}x{height}-int8.xml"

    def load(self, path: Path, precision: str) -> Any:
        """An IR compiled for this CPU; the layers left in floating point (an int8 network's too) run in
        bf16 where ``precision`` asks for it or is int8 on a CPU that has bf16."""
        bf16 = precision == "bf16" or (precision == "int8" and self.has_bf16)
        hints = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32", "PERFORMANCE_HINT": "LATENCY"}
        return self.core.compile_model(str(path), "CPU", hints)

    def _compiled(self, height: int, width: int) -> Any:
        key = (height, width)
        if key not in self.compiled:
            if self.precision == "int8":
                path = self.int8_path(height, width)
                if not path.is_file():
                    raise ConfigurationError(self._quantize_first(f"a {width}x{height} network input"))
            else:
                path = self._exported(height, width)
            self.compiled[key] = self.load(path, self.precision)
        return self.compiled[key]

    def quantize(self, inputs: list[np.ndarray]) -> Path:
        """Write the int8 network for the input size of ``inputs`` (each 1 x 3 x H x W, normalised as the
        network takes them: the calibration images) and return its path. NNCF's post-training
        quantisation: activation ranges from these images, SmoothQuant on the matrix products; the layers
        NNCF keeps in floating point for transformers (normalisation, softmax) stay so."""
        nncf = _nncf()
        from nncf.quantization.advanced_parameters import (
            AdvancedQuantizationParameters,
            AdvancedSmoothQuantParameters,
        )

        if not inputs:
            raise InvalidInput("quantising needs at least one calibration image")
        height, width = (int(n) for n in inputs[0].shape[2:])
        if any(tuple(x.shape) != (1, 3, height, width) for x in inputs):
            raise InvalidInput(f"calibration inputs must all be 1 x 3 x {height} x {width}")
        source = self._exported(height, width)
        smoothing = AdvancedSmoothQuantParameters(matmul=SMOOTH_QUANT_ALPHA)
        quantized = nncf.quantize(
            self.core.read_model(str(source)),
            nncf.Dataset([np.ascontiguousarray(x, np.float32) for x in inputs]),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(inputs),
            advanced_parameters=AdvancedQuantizationParameters(smooth_quant_alphas=smoothing),
        )
        path = self.int8_path(height, width)
        self._save(quantized, path)
        self.compiled.pop((height, width), None)  # a new calibration replaces the one in use
        return path

    def _exported(self, height: int, width: int) -> Path:
        """The float network's IR for this input size, exported on first use."""
        path = self.ir_path(height, width)
        if not path.is_file():
            self._export(path, height, width)
        return path

    def _export(self, path: Path, height: int, width: int) -> None:
        """Convert our module at one input size and write its IR."""
        wrapper = _FixedSize(self.model, height // 14, width // 14).eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes are fixed: the trace holds
            converted = self.ov.convert_model(wrapper, example_input=torch.zeros(1, 3, height, width))
        self._save(converted, path)

    def _save(self, network: Any, path: Path) -> None:
        """Write an IR atomically: the .bin first, then the .xml that names it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as folder:
            staged = Path(folder) / path.name
            self.ov.save_model(network, str(staged), compress_to_fp16=False)
            os.replace(staged.with_suffix(".bin"), path.with_suffix(".bin"))
            os.replace(staged, path)

    def __call__(self, x: torch.Tensor, compiled: Any = None) -> torch.Tensor:
        """Features of ``x``: by this size's network, or by ``compiled`` (from :meth:`load`)."""
        compiled = compiled or self._compiled(int(x.shape[2]), int(x.shape[3]))
        result = compiled(np.ascontiguousarray(x.detach().cpu().numpy(), np.float32))
        return torch.from_numpy(np.asarray(result[compiled.output(0)]))
