"""The benchmark runner: train per task and mode, predict every test frame, score, report.

``isar-ros benchmark --data DIR --method NAME --mode both --out DIR`` calls :func:`run_benchmark`
and :func:`isar_ros.isar.report.write_reports`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from isar_ros.isar.dataset import ATTRIBUTES, MODES, IsarDataset, IsarFormatError, Scene
from isar_ros.isar.methods import Method
from isar_ros.isar.metric import (
    SceneScore,
    attribute_means,
    masks_from_labels,
    mean_over_scenes,
    paint_colors,
)


@dataclass
class SceneRecord:
    task: str
    scene: str
    attributes: dict[str, bool]
    score: SceneScore


@dataclass
class BenchmarkResult:
    method: str
    data: str
    modes: dict[str, list[SceneRecord]] = field(default_factory=dict)
    train_seconds: dict[str, float] = field(default_factory=dict)
    uses_geometry: bool = False  # the method read depth, intrinsics and camera poses

    def official(self) -> dict:
        """The official results JSON: keyed by test scene name only (a later task's scene of the same name
        wins)."""
        return {
            "multi_object": {
                mode: {r.scene: r.score.official() for r in records} for mode, records in self.modes.items()
            }
        }

    def mode_summary(self, mode: str) -> dict:
        records = self.modes[mode]
        summary = mean_over_scenes(r.score for r in records)
        summary["attributes"] = attribute_means(((r.score, r.attributes) for r in records), ATTRIBUTES)
        summary["train_seconds"] = self.train_seconds.get(mode, 0.0)
        return summary

    def task_summary(self, task: str) -> dict:
        result = {}
        for mode, records in self.modes.items():
            mine = [r for r in records if r.task == task]
            result[mode] = {
                "mean": mean_over_scenes(r.score for r in mine),
                "scenes": {
                    r.scene: {**r.score.summary(), "attributes": r.attributes, "official": r.score.official()}
                    for r in mine
                },
            }
        return result

    @property
    def tasks(self) -> list[str]:
        return sorted({r.task for records in self.modes.values() for r in records})


def score_scene(
    scene: Scene, tracked_ids: Iterable[int], predictions: Iterable[tuple[str, np.ndarray]]
) -> SceneScore:
    """Score label-image predictions ((frame name, label image) in frame order) against a scene's ground
    truth.

    Frames with no prediction count as empty predictions (what a dropped frame is).
    """
    score = SceneScore.for_ids(tracked_ids)
    by_name = dict(predictions)
    for frame in scene:
        gt = frame.ground_truth()
        if gt is None:
            raise IsarFormatError(f"{scene.path}/semantic_raw: no ground truth for frame {frame.name}")
        labels = by_name.get(frame.name)
        masks = masks_from_labels(labels, score.objects) if labels is not None else {}
        score.add_frame(frame.name, masks, gt)
    return score


def run_benchmark(
    dataset: IsarDataset,
    method: Method,
    modes: Iterable[str] = MODES,
    tasks: Iterable[str] | None = None,
    save_predictions: Path | None = None,
    progress: bool = True,
) -> BenchmarkResult:
    """Train ``method`` per task and mode, run every test scene frame by frame, and score it.

    ``save_predictions``: folder to write the official colour PNGs into
    (``<folder>/<mode>/<task>/<scene>/<frame>.png``), readable by the authors' evaluator.
    """
    from tqdm import tqdm

    modes = list(modes)
    chosen = [dataset.task(t) for t in tasks] if tasks else dataset.tasks
    result = BenchmarkResult(method.name, str(dataset.root), uses_geometry=method.uses_geometry)
    total = len(modes) * sum(len(s) for t in chosen for s in t.test_scenes)
    bar = tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True)
    for mode in modes:
        records = result.modes.setdefault(mode, [])
        for task in chosen:
            bar.set_description(f"{mode} {task.name}: training")
            started = time.perf_counter()
            method.train(task, mode)
            result.train_seconds[mode] = result.train_seconds.get(mode, 0.0) + time.perf_counter() - started
            for scene in task.test_scenes:
                bar.set_description(f"{mode} {task.name}/{scene.name}")
                method.reset()
                score = SceneScore.for_ids(task.semantic_ids)
                folder = save_predictions / mode / task.name / scene.name if save_predictions else None
                if folder:
                    folder.mkdir(parents=True, exist_ok=True)
                for frame in scene:
                    started = time.perf_counter()
                    labels = method.predict(frame)
                    score.seconds += time.perf_counter() - started
                    gt = frame.ground_truth()
                    if gt is None:
                        raise IsarFormatError(
                            f"{scene.path}/semantic_raw: no ground truth for frame {frame.name}"
                        )
                    if labels.shape != gt.shape:
                        raise ValueError(
                            f"{method.name} predicted {labels.shape} for {frame}, ground truth is {gt.shape}"
                        )
                    score.add_frame(frame.name, masks_from_labels(labels, score.objects), gt)
                    if folder:
                        cv2.imwrite(str(folder / f"{frame.name}.png"), paint_colors(labels, scene.color_map))
                    bar.update(1)
                records.append(SceneRecord(task.name, scene.name, scene.attributes, score))
    bar.close()
    return result
