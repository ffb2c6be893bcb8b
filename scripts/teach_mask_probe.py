"""How good are the masks teaching starts from? Taught-mask IoU against the ground truth, per data set.

    .venv/bin/python scripts/teach_mask_probe.py data/eval/davis2016-dev data/eval/perseg-dev \
        data/eval/synthetic-default-s{0..4} [--predictor grabcut] [--mode multi_shot]

Every prompt of the train scenes of each ISAR-layout data set is given to the mask predictor three
ways (``PROMPT_KINDS``, as the benchmark's ``--option prompts``) - as ISAR gives it (``click_box``),
the box alone, and the click alone (what an operator who only clicks gives) - and the mask is compared
with the object's ground truth on that frame. Printed per group (data sets named ``<group>-s<seed>``
are pooled): the mean IoU and the median milliseconds per prompt of each kind. Everything downstream
learns from these masks, so their IoU bounds it.
A development tool (printed numbers, no files); the official numbers come from `isar-ros evaluate`.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from isar_ros.core.mask_predictors import create_mask_predictor  # noqa: E402
from isar_ros.core.prompt_mask import MaskPredictor, Prompt  # noqa: E402
from isar_ros.isar.core_methods import PROMPT_KINDS  # noqa: E402
from isar_ros.isar.dataset import MODES, IsarDataset  # noqa: E402


def group_of(path: Path) -> str:
    return re.sub(r"-s\d+$", "", path.name)


def probe(root: Path, predictor_kind: str, mode: str) -> dict[str, list[tuple[float, float]]]:
    """Kind -> (IoU, milliseconds) per prompt of the data set at ``root``."""
    predictor = create_mask_predictor(predictor_kind)
    results: dict[str, list[tuple[float, float]]] = {kind: [] for kind in PROMPT_KINDS}
    for task in IsarDataset(root).tasks:
        for scene, name, prompts in task.prompts(mode):
            frame = scene.frame_by_name(name)
            truth = frame.ground_truth()
            if truth is None:
                continue
            predictor.set_image(frame.rgb())
            for prompt in prompts:
                expected = truth == prompt.object_id
                if expected.any():
                    for kind, make in PROMPT_KINDS.items():
                        results[kind].append(measure(predictor, make(prompt), expected))
    return results


def measure(predictor: MaskPredictor, prompt: Prompt, expected: np.ndarray) -> tuple[float, float]:
    start = time.perf_counter()
    mask = predictor.predict(prompt)
    milliseconds = (time.perf_counter() - start) * 1000
    return float((mask & expected).sum() / (mask | expected).sum()), milliseconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="+", type=Path, help="ISAR-layout data set folders")
    parser.add_argument("--predictor", default="grabcut", help="grabcut, sam or auto (as the nodes)")
    parser.add_argument("--mode", default="multi_shot", choices=MODES, help="whose prompts")
    args = parser.parse_args()
    pooled: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for root in args.data:
        for kind, values in probe(root, args.predictor, args.mode).items():
            pooled.setdefault(group_of(root), {}).setdefault(kind, []).extend(values)
    print(
        f"{'group':22s} {'prompts':>7s}  " + "  ".join(f"{kind + ': IoU, ms':>20s}" for kind in PROMPT_KINDS)
    )
    for group, by_kind in pooled.items():
        cells = []
        for kind in PROMPT_KINDS:
            ious, times = np.array(by_kind[kind]).reshape(-1, 2).T
            cells.append(f"{ious.mean():12.3f} {np.median(times):7.1f}")
        print(f"{group:22s} {len(by_kind['box']):7d}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
