"""Why is an object missed, or reported when absent? Presence and mask quality apart, per data set.

    .venv/bin/python scripts/presence_probe.py data/eval/synthetic-default-s0 data/eval/davis2016-dev \
        [--option presence_offset=0.3] [--backbone-option stride=8 --backbone-option context=3] [--jobs 2] \
        [--by-size] [--teach-from-truth]

For every test frame and every tracked object of each ISAR-layout data set (single- and multi-shot):

* recall: the share of frames showing the object (ground truth non-empty) in which it is reported;
* IoU when found: the mean IoU over those reported frames (the mask's quality alone);
* IoU: the mean IoU over all frames showing it (what mIoU is made of: recall times quality);
* false det. not visible / visible: the share of frames without the object in which it is reported,
  and of frames with it in which its mask is a false detection (the metric's own rule,
  :func:`isar_ros.isar.metric.score_frame`).

`--by-size` adds the recall of each data set's visible objects binned by the share of the frame their
ground truth covers (an object lost whenever it is large, or small, shows there). `--teach-from-truth`
teaches from the ground-truth masks instead of the mask predictor's: how much better everything after
teaching would be with perfect teaching masks (an upper bound for work on them, not a result).

A development tool (printed numbers, no files): it separates the presence decision from the masks,
which the suite's mIoU mixes. `--backbone-option` values are parsed as JSON where they can be
(`context=[3,7]`), else kept as strings. The official numbers come from `isar-ros evaluate`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from multiprocessing import Pool
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from isar_ros.core.perception import Perception  # noqa: E402
from isar_ros.isar.core_methods import IsarRosMethod, perception_config  # noqa: E402
from isar_ros.isar.dataset import MODES, IsarDataset  # noqa: E402
from isar_ros.isar.metric import score_frame  # noqa: E402

FIELDS = ("recall", "iou_found", "iou", "false_not_visible", "false_visible")
SIZE_BINS = (0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 1.0)  # share of the frame covered by the object


def key_values(pairs: list[str], parse_json: bool) -> dict:
    result: dict = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if parse_json:
            try:
                result[key] = json.loads(value)
                continue
            except json.JSONDecodeError:
                pass
        result[key] = value
    return result


def probe(job: tuple[str, dict, dict, bool]) -> tuple[str, dict]:
    path, options, backbone_options, from_truth = job
    method = IsarRosMethod(options)
    if backbone_options:
        config = perception_config({k: v for k, v in options.items() if k != "prompts"})  # the method's own
        method.perception = Perception(replace(config, backbone_options=backbone_options))
    dataset = IsarDataset(path)
    result = {}
    for mode in MODES:
        visible = found = absent = reported_absent = missed = 0
        iou_found: list[float] = []
        iou_all: list[float] = []
        sizes: list[tuple[float, bool]] = []  # (share of the frame, reported) per visible object and frame
        for task in dataset.tasks:
            method.train(task, mode, from_truth=from_truth)
            for scene in task.test_scenes:
                method.reset()
                for frame in scene:
                    labels = method.predict(frame)
                    truth = frame.ground_truth()
                    for object_id in task.semantic_ids:
                        predicted = labels == object_id
                        score = score_frame(predicted, truth == object_id)
                        if score.iou is None:  # not visible
                            absent += 1
                            reported_absent += score.false_detection
                            continue
                        visible += 1
                        iou_all.append(score.iou)
                        missed += score.false_detection
                        sizes.append((float(np.mean(truth == object_id)), bool(predicted.any())))
                        if predicted.any():
                            found += 1
                            iou_found.append(score.iou)
        result[mode] = {
            "recall": found / max(visible, 1),
            "iou_found": float(np.mean(iou_found)) if iou_found else 0.0,
            "iou": float(np.mean(iou_all)) if iou_all else 0.0,
            "false_not_visible": reported_absent / max(absent, 1),
            "false_visible": missed / max(visible, 1),
            "by_size": recall_by_size(sizes),
        }
    return Path(path).name, result


def recall_by_size(sizes: list[tuple[float, bool]]) -> list[tuple[int, float]]:
    """(frames, recall) per :data:`SIZE_BINS` bin of (share of the frame, reported) pairs."""
    share = np.array([s for s, _ in sizes])
    reported = np.array([r for _, r in sizes], bool)
    result = []
    for low, high in zip(SIZE_BINS[:-1], SIZE_BINS[1:], strict=True):
        inside = (share >= low) & (share < high)
        result.append((int(inside.sum()), float(reported[inside].mean()) if inside.any() else float("nan")))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="+", help="ISAR-layout data set folders")
    parser.add_argument("--option", action="append", default=[], help="isar_ros method option key=value")
    parser.add_argument(
        "--backbone-option", action="append", default=[], help="backbone constructor argument key=value"
    )
    parser.add_argument("--jobs", type=int, default=2, help="data sets probed in parallel")
    parser.add_argument(
        "--by-size", action="store_true", help="also the recall by the object's share of the frame"
    )
    parser.add_argument(
        "--teach-from-truth",
        action="store_true",
        help="teach from the ground-truth masks, not the mask predictor's (an upper bound, not a result)",
    )
    args = parser.parse_args()
    options = key_values(args.option, parse_json=False)
    backbone_options = key_values(args.backbone_option, parse_json=True)
    jobs = [(path, options, backbone_options, args.teach_from_truth) for path in args.data]
    with Pool(max(1, args.jobs)) as pool:
        results = pool.map(probe, jobs, chunksize=1)
    header = "recall, IoU when found, IoU, false det. not visible, false det. visible"
    print(f"{'data set':28s} single-shot ({header}) | multi-shot")
    for name, result in results:
        cells = [" ".join(f"{result[mode][f]:.3f}" for f in FIELDS) for mode in MODES]
        print(f"{name:28s} {' | '.join(cells)}")
    if args.by_size:
        bins = ", ".join(
            f"{100 * a:g}-{100 * b:g} %" for a, b in zip(SIZE_BINS[:-1], SIZE_BINS[1:], strict=True)
        )
        print(f"recall by the object's share of the frame ({bins}; frames in brackets)")
        for name, result in results:
            for mode in MODES:
                cells = " ".join(f"{r:.2f} ({n})" for n, r in result[mode]["by_size"])
                print(f"{name:28s} {mode:12s} {cells}")
    for mode in MODES:
        means = {f: float(np.mean([r[mode][f] for _, r in results])) for f in FIELDS}
        worst = min(r[mode]["iou"] for _, r in results)
        print(
            f"mean {mode:12s} "
            + " ".join(f"{f}={v:.3f}" for f, v in means.items())
            + f" worst_iou={worst:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
