"""The DINOv2 path on a CUDA GPU: latency per stage and the node's rate, printed and saved (numbers, no
assertions).

    .venv/bin/python scripts/benchmark_gpu.py [--models s b l] [--precisions fp32 bf16 fp16]
        [--short-sides 448] [--compile] [--repeats 50] [--out docs/benchmarks-gpu.json]

For each model (ViT-S/B/L, *random* weights in the official layout: speed does not depend on the
weights), precision (torch autocast) and input short side, on a 640x480 camera frame with 5 taught
objects, the median over ``--repeats`` frames (after warm-up) of:

* ``upload``: the image copied to pinned host memory and onto the GPU;
* ``backbone``: resize, normalisation, the ViT and the feature normalisation, on the GPU;
* ``scoring``: every object's patch scores (one matrix product) and the presence decisions, on the GPU
  (the features never come back to the host; only the per-object decisions and masks do);
* ``postprocess``: masks, label image (host);
* the node's rate bound: one worker (``pipeline: false``) 1000 / (sum of the stages), two workers
  (``pipeline: true``, the default) 1000 / (the larger of upload + backbone and scoring + post-processing).

GPU stages are timed with ``torch.cuda.synchronize()`` around them. ``--compile`` adds a torch.compile
run per model (its first frames compile; they are excluded). Without a CUDA GPU (``torch.cuda`` unavailable
or a CPU-only torch build), the script says so and exits with status 2; it never falls back to the CPU,
whose numbers ``scripts/benchmark_core.py`` measures. ``--device cpu`` is a dry run of the same code on the
CPU (the tests use it so that the script is known to run; its numbers are not GPU numbers and are not
saved unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark_core import teach_test_objects, test_image  # noqa: E402

from isar_ros.core.backbones.dinov2 import Dinov2Backbone  # noqa: E402
from isar_ros.core.perception import Perception, PerceptionConfig  # noqa: E402

NO_GPU = 2


def gpu_or_reason() -> str | None:
    """None when a CUDA GPU can be used, else why not."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build: install a CUDA build of torch"
    if not torch.cuda.is_available():
        return "torch sees no CUDA GPU here (no NVIDIA driver or device)"
    return None


def stage_ms(fn, device: torch.device) -> tuple[Any, float]:
    """``fn()`` and its time in ms, the GPU's queue drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result, (time.perf_counter() - start) * 1000


def measure(
    model: str, precision: str, short_side: int, compile_: bool, repeats: int, device: torch.device
) -> dict:
    backbone = Dinov2Backbone.from_name(
        f"dinov2_vit{model}14",
        device,
        random_init=True,
        short_side=short_side,
        precision=precision,
        compile=compile_,
    )
    config = PerceptionConfig(mask_predictor="grabcut", device=device.type)
    perception = Perception(config, backbone=backbone)
    teach_test_objects(perception, 5)
    image, _ = test_image()
    finder = perception.finder
    for _ in range(10 if compile_ else 3):  # warm-up (and compilation)
        finder.find(backbone.extract(image), image)
    stages: dict[str, list[float]] = {"upload": [], "backbone": [], "scoring": [], "postprocess": []}
    for _ in range(repeats):
        _, upload = stage_ms(lambda: backbone._upload(image), device)
        grid, total = stage_ms(lambda: backbone.extract(image), device)
        stages["upload"].append(upload)
        stages["backbone"].append(max(total - upload, 0.0))
        segmentation, _ = stage_ms(lambda grid=grid: finder.find(grid, image), device)
        stages["scoring"].append(segmentation.timings_ms["scoring"])
        stages["postprocess"].append(segmentation.timings_ms["postprocess"])
    median = {name: statistics.median(values) for name, values in stages.items()}
    serial = sum(median.values())
    pipelined = max(median["upload"] + median["backbone"], median["scoring"] + median["postprocess"])
    return {
        "model": f"ViT-{model.upper()}/14",
        "precision": precision,
        "autocast": str(backbone.autocast).replace("torch.", "") if backbone.autocast else "none",
        "compile": compile_,
        "short_side": short_side,
        "grid": list(grid.features.shape[:2]),
        "median_ms": median,
        "node_hz_one_worker": 1000 / serial,
        "node_hz_pipelined": 1000 / pipelined,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["s", "b", "l"], choices=["s", "b", "l", "g"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"])
    parser.add_argument("--short-sides", nargs="+", type=int, default=[448])
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile per model")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, help="results file (default docs/benchmarks-gpu.json on a GPU)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        reason = gpu_or_reason()
        if reason is not None:
            print(
                f"no GPU present: {reason}. Nothing was measured; run this on a machine with an NVIDIA GPU."
            )
            return NO_GPU
        name = torch.cuda.get_device_name()
        args.out = args.out or ROOT / "docs" / "benchmarks-gpu.json"
    else:
        name = "CPU dry run (not GPU numbers)"
    print(f"{name}, torch {torch.__version__}, CUDA {torch.version.cuda}; 640x480 input, 5 objects")
    rows = []
    for model in args.models:
        for side in args.short_sides:
            runs = [(p, False) for p in args.precisions] + ([("auto", True)] if args.compile else [])
            for precision, compile_ in runs:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                row = measure(model, precision, side, compile_, args.repeats, device)
                rows.append(row)
                m = row["median_ms"]
                print(
                    f"  {row['model']:<9} {precision:<5}{' compiled' if compile_ else '':<9} {side}: "
                    f"upload {m['upload']:6.2f}  backbone {m['backbone']:7.2f}  scoring {m['scoring']:6.2f}  "
                    f"post {m['postprocess']:6.2f} ms  -> {row['node_hz_one_worker']:6.1f} Hz one worker, "
                    f"{row['node_hz_pipelined']:6.1f} Hz pipelined"
                    + (f"; peak {row['peak_gpu_mib']:.0f} MiB" if row["peak_gpu_mib"] is not None else "")
                )
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    report = {
        "gpu": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu": platform.processor() or platform.machine(),
        "repeats": args.repeats,
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
        print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
