"""Benchmark reports: official results JSON, per-task JSON, Markdown summary and attribute plots."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from isar_ros.isar.dataset import ATTRIBUTES
from isar_ros.isar.runner import BenchmarkResult

COLUMNS = [
    ("mIoU", "mIoU"),
    ("mIoU_nan_skipping", "mIoU (NaN-skipping)"),
    ("mBoundF", "mBoundF"),
    ("misclassification_rate", "misclass."),
    ("false_detection_visible", "false det. visible"),
    ("false_detection_not_visible", "false det. not visible"),
    ("fps", "frames/s"),
]


def _fmt(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def markdown_summary(result: BenchmarkResult) -> str:
    lines = [f"# ISAR benchmark: `{result.method}` on `{result.data}`", ""]
    if result.uses_geometry:
        lines += ["The method used each frame's depth, intrinsics and camera pose.", ""]
    lines += [
        "mIoU is the official scene mean (NaN when a tracked object is never visible in a test scene);",
        "the NaN-skipping mean leaves such objects out. Means are unweighted over test scenes.",
        "",
    ]
    header = "| mode | " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "---|" * (len(COLUMNS) + 1)
    lines += ["## Per mode", "", header, rule]
    for mode in result.modes:
        summary = result.mode_summary(mode)
        lines.append(f"| {mode} | " + " | ".join(_fmt(summary.get(key)) for key, _ in COLUMNS) + " |")
    lines += [
        "",
        "## Per task",
        "",
        "| mode | task | " + " | ".join(t for _, t in COLUMNS) + " |",
        "|" + "---|" * (len(COLUMNS) + 2),
    ]
    for mode in result.modes:
        for task in result.tasks:
            mean = result.task_summary(task)[mode]["mean"]
            lines.append(
                f"| {mode} | {task} | " + " | ".join(_fmt(mean.get(key)) for key, _ in COLUMNS) + " |"
            )
    lines += [
        "",
        "## Per attribute (mean scene mIoU over the test scenes with the attribute)",
        "",
        "| mode | " + " | ".join(ATTRIBUTES) + " |",
        "|" + "---|" * (len(ATTRIBUTES) + 1),
    ]
    for mode in result.modes:
        attrs = result.mode_summary(mode)["attributes"]
        cells = [f"{_fmt(attrs[a]['mIoU_nan_skipping'])} ({attrs[a]['scenes']})" for a in ATTRIBUTES]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    lines += ["", "Attribute cells: NaN-skipping mIoU (number of test scenes with the attribute)."]
    return "\n".join(lines) + "\n"


def plot_attributes(result: BenchmarkResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(result.modes)
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(modes), 1)
    labels = ["all", *ATTRIBUTES]
    for k, mode in enumerate(modes):
        summary = result.mode_summary(mode)
        values = [summary["mIoU_nan_skipping"]] + [
            summary["attributes"][a]["mIoU_nan_skipping"] for a in ATTRIBUTES
        ]
        values = [0.0 if math.isnan(v) else v for v in values]
        ax.bar([i + k * width for i in range(len(labels))], values, width, label=mode)
    ax.set_xticks([i + width * (len(modes) - 1) / 2 for i in range(len(labels))], labels)
    ax.set_ylim(0, 1)
    ax.set_ylabel("mIoU (NaN-skipping)")
    ax.set_title(f"{result.method}: mIoU per attribute (0 = no scene with it)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_reports(result: BenchmarkResult, out: Path) -> dict[str, Path]:
    """Write every report into ``out``; returns their paths by kind."""
    out = Path(out)
    paths = {
        "official": out / "results.json",
        "summary": out / "summary.md",
        "plot": out / "attributes.png",
        "modes": out / "summary.json",
    }
    write_json(paths["official"], result.official())
    write_json(paths["modes"], {mode: result.mode_summary(mode) for mode in result.modes})
    for task in result.tasks:
        write_json(out / "tasks" / f"{task}.json", result.task_summary(task))
    paths["summary"].write_text(markdown_summary(result))
    plot_attributes(result, paths["plot"])
    return paths
