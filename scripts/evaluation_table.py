"""Side-by-side tables of evaluation reports, for docs/evaluation.md.

    .venv/bin/python scripts/evaluation_table.py out/eval/dev-defaults out/eval/test-defaults ...

Prints, per report, the pooled numbers per split and mode and the per-group NaN-skipping mIoU.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

KEYS = (
    ("mIoU", "mIoU"),
    ("mIoU_nan_skipping", "mIoU NaN-skip."),
    ("mBoundF_nan_skipping", "mBoundF"),
    ("misclassification_rate", "misclass."),
    ("false_detection_visible", "false det. visible"),
    ("false_detection_not_visible", "false det. not visible"),
    ("fps", "frames/s"),
)


def f(value: float) -> str:
    return "NaN" if value is None or math.isnan(value) else f"{value:.3f}" if value < 10 else f"{value:.1f}"


def main(folders: list[str]) -> None:
    reports = [(Path(p).name, json.loads((Path(p) / "report.json").read_text())) for p in folders]
    print("| report | split | mode | " + " | ".join(label for _, label in KEYS) + " | worst mIoU NaN-skip. |")
    print("|---" * (len(KEYS) + 4) + "|")
    for name, report in reports:
        for split, pooled in report["pooled"].items():
            for mode in report["modes"]:
                row = pooled[mode]
                print(
                    f"| {name} | {split} | {mode} | "
                    + " | ".join(f(row[k]["mean"]) for k, _ in KEYS)
                    + f" | {f(row['mIoU_nan_skipping']['min'])} |"
                )
    print()
    groups = sorted({g for _, r in reports for g in r["groups"]})
    print("| report | mode | " + " | ".join(groups) + " |")
    print("|---" * (len(groups) + 2) + "|")
    for name, report in reports:
        for mode in report["modes"]:
            cells = []
            for g in groups:
                entry = report["groups"].get(g)
                cells.append(f(entry["modes"][mode]["mIoU_nan_skipping"]["mean"]) if entry else "")
            print(f"| {name} | {mode} | " + " | ".join(cells) + " |")
    print()
    for name, report in reports:
        print(
            f"- `{name}`: suite `{report['suite_file']}`, commit `{report['commit']}`, options "
            f"{report['options'] or '{}'}, "
            f"{len(report['datasets'])} data sets, {report['seconds_all_datasets'] / 60:.1f} min"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
