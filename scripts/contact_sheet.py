"""A contact sheet of a generated (or real) ISAR dataset: frames with their ground truth overlaid.

.venv/bin/python scripts/contact_sheet.py --data data/isar_demo --out docs/generator_contact_sheet.png
"""

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from isar_ros.core.visualize import overlay  # noqa: E402
from isar_ros.isar.dataset import IsarDataset  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-scene", type=int, default=4)
    parser.add_argument("--width", type=int, default=300)
    args = parser.parse_args()
    rows = []
    for task in IsarDataset(args.data).tasks:
        for scene in task.train_scenes + task.test_scenes:
            tiles = []
            for index in np.linspace(0, len(scene) - 1, args.per_scene).astype(int):
                frame = scene.frame(int(index))
                gt = frame.ground_truth()
                labels = np.where(np.isin(gt, task.semantic_ids), gt, 0)
                tile = overlay(frame.rgb(), labels, {i: str(i) for i in task.semantic_ids})
                tiles.append(cv2.resize(tile, (args.width, int(args.width * tile.shape[0] / tile.shape[1]))))
            row = np.hstack(tiles)
            label = f"{task.name} / {scene.split} / {scene.name}"
            cv2.putText(row, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
            rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.vstack(rows)[..., ::-1])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
