"""The evaluation suite: data sets prepared once, every metric reported per data set and pooled, resumable."""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pytest

from isar_ros.errors import ConfigurationError
from isar_ros.isar.evaluation import compare, evaluate, load_suite
from sim_bridge.generator import GeneratorConfig, generate

SETTINGS = {f.name for f in fields(GeneratorConfig)}


def generator(settings, folder):
    generate(GeneratorConfig(**settings), folder, progress=False)


def suite_file(tmp_path, method="oracle", extra=""):
    path = tmp_path / "suite.yaml"
    path.write_text(f"""
name: tiny
method: {method}
cache: {tmp_path / "cache"}
generator: {{tasks: 1, frames: 12, width: 160, height: 96, test_scenes: 1, workers: 1}}
datasets:
  - {{group: synthetic, split: dev, seeds: [3, 4], generate: {{}}}}
  - {{group: synthetic-moving, split: test, seeds: [5], generate: {{moving_objects: true}}}}
  - {{group: real, split: dev, import: {{kind: davis, source: {tmp_path / "absent"}}}}}
{extra}""")
    return path


def test_a_suite_reports_every_metric_per_data_set_and_pooled_and_resumes(tmp_path, capsys):
    suite = load_suite(suite_file(tmp_path), SETTINGS)
    assert [d.name for d in suite.datasets] == ["synthetic-s3", "synthetic-s4", "synthetic-moving-s5", "real"]
    report = evaluate(suite, tmp_path / "out", generator, progress=False)
    assert "not here" in capsys.readouterr().out and report["skipped"] == [
        "real"
    ]  # an absent source is named
    assert set(report["datasets"]) == {"synthetic-s3", "synthetic-s4", "synthetic-moving-s5"}
    for mode in ("single_shot", "multi_shot"):
        assert report["pooled"]["dev"][mode]["mIoU_nan_skipping"]["mean"] == 1.0  # the oracle is perfect
        assert report["pooled"]["dev"][mode]["false_detection_visible"]["mean"] == 0.0
        assert report["pooled"]["test"][mode]["mIoU_nan_skipping"]["min"] == 1.0
    assert report["groups"]["synthetic"]["datasets"] == ["synthetic-s3", "synthetic-s4"]
    for name in ("report.json", "report.md", "report.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert (
        "| synthetic-s3 | dev | single_shot | 1.000 | 1.000 |" in (tmp_path / "out" / "report.md").read_text()
    )
    stored = tmp_path / "out" / "datasets" / "synthetic-s3.json"
    before = stored.stat().st_mtime_ns
    again = evaluate(load_suite(suite_file(tmp_path), SETTINGS), tmp_path / "out", generator, progress=False)
    assert stored.stat().st_mtime_ns == before  # resumed: nothing scored twice
    assert again["datasets"]["synthetic-s3"] == report["datasets"]["synthetic-s3"]
    empty = evaluate(
        load_suite(suite_file(tmp_path, "empty"), SETTINGS), tmp_path / "out_empty", generator, progress=False
    )
    text = compare(empty, json.loads((tmp_path / "out" / "report.json").read_text()))
    assert (
        "dev single_shot: mIoU 0.000 (-1.000)" in text
        and "synthetic-s3: mIoU (NaN-skip.) single_shot -1.000" in text
    )


@pytest.mark.parametrize(
    "edit,message",
    [
        ("  - {group: x, split: dev, generate: {colour: red}}", "unknown generator settings ['colour']"),
        ("  - {group: x, split: train, generate: {}}", "split must be dev or test"),
        ("  - {group: x, split: dev, import: {kind: kitti, source: .}}", "import needs kind"),
        ("  - {group: synthetic-s3, split: dev, generate: {}}", "data set names repeat"),
    ],
)
def test_a_wrong_suite_entry_is_named(tmp_path, edit, message):
    with pytest.raises(ConfigurationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_suite(suite_file(tmp_path, extra=edit), SETTINGS)


def test_the_method_teaches_from_the_prompt_kind_asked_for(tmp_path):
    """``--option prompts=click|box`` gives teaching what an operator who only clicks, or only drags boxes,
    would give; the ISAR prompt (click and box) is the default, and an unknown kind is refused."""
    from isar_ros.isar.core_methods import IsarRosMethod
    from isar_ros.isar.dataset import IsarDataset

    generator({"tasks": 1, "frames": 6, "width": 160, "height": 96, "test_scenes": 1, "workers": 1}, tmp_path)
    task = IsarDataset(tmp_path).tasks[0]
    given: dict[str, list] = {}
    for kind in ("click_box", "box", "click"):
        method = IsarRosMethod({"prompts": kind})
        teach, prompts = method.perception.teach, given.setdefault(kind, [])

        def recorded(prompted, teach=teach, prompts=prompts, **options):
            prompts.extend(prompt for _, frame_prompts in prompted for prompt in frame_prompts)
            return teach(prompted, **options)

        method.perception.teach = recorded
        method.train(task, "single_shot")
    assert len(given["click"]) == len(given["box"]) == len(given["click_box"]) > 0
    assert all(p.box_xyxy is None and len(p.points_xy) == 1 for p in given["click"])
    assert all(p.box_xyxy is not None and len(p.points_xy) == 0 for p in given["box"])
    assert all(p.box_xyxy is not None and len(p.points_xy) == 1 for p in given["click_box"])
    with pytest.raises(ConfigurationError, match="unknown prompts 'tap'; use one of click_box, box, click"):
        IsarRosMethod({"prompts": "tap"})


def test_teaching_from_the_truth_gives_the_ground_truth_masks_and_only_when_asked(tmp_path):
    """The development upper bound (``presence_probe.py --teach-from-truth``) teaches each prompted object
    its exact ground-truth mask; by default the mask predictor makes the masks (none are given)."""
    from isar_ros.isar.core_methods import IsarRosMethod
    from isar_ros.isar.dataset import IsarDataset

    generator({"tasks": 1, "frames": 6, "width": 160, "height": 96, "test_scenes": 1, "workers": 1}, tmp_path)
    task = IsarDataset(tmp_path).tasks[0]
    truths = {
        p.object_id: scene.frame_by_name(name).ground_truth() == p.object_id
        for scene, name, prompts in task.prompts("single_shot")
        for p in prompts
    }
    given: dict[bool, list] = {}
    for from_truth in (False, True):
        method = IsarRosMethod()
        teach, seen = method.perception.teach, given.setdefault(from_truth, [])

        def recorded(prompted, teach=teach, seen=seen, **options):
            seen.append(options.get("masks"))
            return teach(prompted, **options)

        method.perception.teach = recorded
        method.train(task, "single_shot", from_truth=from_truth)
    assert len(given[True]) == len(truths) > 1 and all(m is None for m in given[False])
    for object_id, masks in zip(truths, given[True], strict=True):
        assert len(masks) == 1 and masks[0].any()
        np.testing.assert_array_equal(masks[0], truths[object_id])
