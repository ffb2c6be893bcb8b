"""Generator -> reader -> runner round trip, geometry consistency, and the reader's errors."""

import json
import math
import shutil

import cv2
import numpy as np
import pytest

from isar_ros.core.geometry import PinholeCamera
from isar_ros.isar import registry
from isar_ros.isar.dataset import T_OPENGL_OPTICAL, IsarDataset, IsarFormatError
from isar_ros.isar.report import write_reports
from isar_ros.isar.rules import make_prompts, prompt_min_area
from isar_ros.isar.runner import run_benchmark
from sim_bridge.generator import GeneratorConfig, generate


def test_layout_matches_isar(tiny_dataset):
    dataset = IsarDataset(tiny_dataset)
    assert len(dataset.tasks) == 2
    task = dataset.tasks[0]
    assert task.semantic_ids and all(i >= 1660 for i in task.semantic_ids)
    scene = task.train_scenes[0]
    assert scene.frame_names[:2] == ["0000000", "0000001"] and len(scene) == 30
    frame = scene.frame(0)
    assert frame.rgb().shape == (180, 320, 3) and frame.rgb().dtype == np.uint8
    assert frame.depth_mm().dtype == np.uint16 and frame.depth_mm().max() > 1000  # millimetres
    assert frame.ground_truth().dtype == np.uint16
    assert scene.color_map[0] == (0, 0, 0)
    assert set(scene.attributes) == {"DYN", "CLA", "CLT", "SML", "SMF", "FST"}
    assert scene.attributes["CLA"]  # the default configuration has a same-class twin
    assert scene.intrinsics == PinholeCamera(160.0, 160.0, 160.0, 90.0, 320, 180)
    pose = frame.pose()
    assert pose.shape == (4, 4) and np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(frame.pose_optical(), pose @ T_OPENGL_OPTICAL)
    # the merged colour map is written into every test scene
    assert task.test_scenes[0].color_map == task.color_map


def test_prompts_follow_the_isar_rules(tiny_dataset):
    task = IsarDataset(tiny_dataset).tasks[0]
    scene = task.train_scenes[0]
    multi, single = scene.prompts("multi_shot"), scene.prompts("single_shot")
    threshold = prompt_min_area(320, 180)
    prompted = set()
    for name, prompts in multi.items():
        assert int(name) % 10 == 0
        gt = scene.frame_by_name(name).ground_truth()
        for p in prompts:
            mask = gt == p.object_id
            assert mask.sum() > threshold
            assert mask[p.point_xy[1], p.point_xy[0]]  # the point is a pixel of the mask
            ys, xs = np.nonzero(mask)
            assert p.box_xyxy == (xs.min(), ys.min(), xs.max(), ys.max())  # tight, inclusive
            prompted.add(p.object_id)
    assert sorted(prompted) == task.semantic_ids
    singles = [(name, p.object_id) for name, ps in single.items() for p in ps]
    assert sorted(i for _, i in singles) == task.semantic_ids  # one view per object
    for name, object_id in singles:  # ... its largest candidate view
        areas = {n: (scene.frame_by_name(n).ground_truth() == object_id).sum() for n in multi}
        assert areas[name] == max(areas.values())


def test_make_prompts_single_is_the_largest_view():
    frames = []
    for index, size in [(0, 40), (5, 90), (10, 60), (20, 50)]:
        ids = np.zeros((720, 1280), np.uint16)
        ids[:size, :size] = 1700
        frames.append((index, f"{index:07d}", ids))
    single, multi = make_prompts(frames, [1700], np.random.default_rng(0))
    assert sorted(multi) == ["0000000", "0000010", "0000020"]  # every 10th; frame 5 is no candidate
    assert "0000000" in multi and list(single) == ["0000010"]  # 60x60 > 50x50 > 40x40 (all > 1000 px)


def test_oracle_scores_one_and_empty_zero(tiny_dataset, tmp_path):
    dataset = IsarDataset(tiny_dataset)
    oracle = run_benchmark(dataset, registry.create("oracle"), progress=False)
    for mode in ("single_shot", "multi_shot"):
        summary = oracle.mode_summary(mode)
        assert summary["mIoU_nan_skipping"] == 1.0 and summary["mBoundF_nan_skipping"] == 1.0
        assert summary["misclassification_rate"] == 0.0 and summary["false_detection_not_visible"] == 0.0
    empty = run_benchmark(dataset, registry.create("empty"), progress=False)
    for mode in ("single_shot", "multi_shot"):
        summary = empty.mode_summary(mode)
        assert summary["mIoU_nan_skipping"] == 0.0 and summary["misclassification_rate"] == 1.0
        assert summary["false_detection_not_visible"] == 0.0
    paths = write_reports(oracle, tmp_path)
    official = json.loads(paths["official"].read_text())
    scenes = {s.name for t in dataset.tasks for s in t.test_scenes}
    assert set(official["multi_object"]) == {"single_shot", "multi_shot"}
    assert set(official["multi_object"]["multi_shot"]) == scenes
    assert "| multi_shot | 1.000 |" in paths["summary"].read_text() or "NaN" in paths["summary"].read_text()
    assert paths["plot"].stat().st_size > 1000


def test_saved_colour_predictions_score_like_label_images(tiny_dataset, tmp_path):
    from isar_ros.isar.metric import SceneScore, masks_from_colors

    dataset = IsarDataset(tiny_dataset)
    task = dataset.tasks[0]
    result = run_benchmark(
        dataset,
        registry.create("oracle"),
        ["multi_shot"],
        [task.name],
        save_predictions=tmp_path,
        progress=False,
    )
    scene = task.test_scenes[0]
    rescored = SceneScore.for_ids(task.semantic_ids)
    for frame in scene:
        image = cv2.imread(str(tmp_path / "multi_shot" / task.name / scene.name / f"{frame.name}.png"))
        rescored.add_frame(
            frame.name, masks_from_colors(image, scene.color_map, task.semantic_ids), frame.ground_truth()
        )
    assert rescored.official() == result.modes["multi_shot"][0].score.official()


def test_depth_poses_and_intrinsics_agree(tiny_dataset):
    """Object pixels of one frame, back-projected and re-projected into another, land on the same object."""
    scene = IsarDataset(tiny_dataset).tasks[0].train_scenes[0]
    intr = scene.intrinsics
    checked = 0
    for a, b in [(0, 4), (10, 16), (20, 27)]:
        fa, fb = scene.frame(a), scene.frame(b)
        ids_a, ids_b = fa.ground_truth(), fb.ground_truth()
        depth_a, depth_b = fa.depth_mm() / 1000.0, fb.depth_mm() / 1000.0
        v, u = np.nonzero(ids_a >= 1660)
        d = depth_a[v, u]
        points_cam = np.stack(
            [(u - intr.cx) * d / intr.fx, -(v - intr.cy) * d / intr.fy, -d, np.ones_like(d)]
        )
        world = fa.pose() @ points_cam
        in_b = np.linalg.inv(fb.pose()) @ world
        z = -in_b[2]
        ub = np.round(intr.cx + intr.fx * in_b[0] / z).astype(int)
        vb = np.round(intr.cy - intr.fy * in_b[1] / z).astype(int)
        inside = (z > 0.1) & (ub >= 0) & (ub < intr.width) & (vb >= 0) & (vb < intr.height)
        ub, vb, z, source_ids = ub[inside], vb[inside], z[inside], ids_a[v, u][inside]
        unoccluded = np.abs(depth_b[vb, ub] - z) < 0.02
        same = ids_b[vb, ub][unoccluded] == source_ids[unoccluded]
        assert unoccluded.sum() > 100
        assert same.mean() > 0.97, (
            f"frames {a}->{b}: only {same.mean():.3f} of re-projected pixels hit the same object"
        )
        checked += unoccluded.sum()
    assert checked > 1000


def test_generation_is_deterministic(tmp_path):
    config = GeneratorConfig(tasks=1, seed=11, width=96, height=64, frames=3, test_scenes=1, workers=1)
    generate(config, tmp_path / "a", progress=False)
    generate(config, tmp_path / "b", progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


@pytest.fixture
def copy_of(tiny_dataset, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(tiny_dataset, target)
    return target


def test_missing_info_json_is_named(copy_of):
    task = sorted(p for p in copy_of.iterdir())[0]
    (task / "info.json").unlink()
    with pytest.raises(IsarFormatError, match=r"info\.json: file is missing"):
        IsarDataset(copy_of)


def test_unreadable_frame_is_named(copy_of):
    dataset = IsarDataset(copy_of)
    frame = dataset.tasks[0].test_scenes[0].frame(3)
    frame.rgb_path.write_bytes(b"not a jpeg")
    with pytest.raises(IsarFormatError, match=r"0000003\.jpg: unreadable image"):
        frame.rgb()


def test_prompt_outside_the_image_is_named(copy_of):
    scene = IsarDataset(copy_of).tasks[0].train_scenes[0]
    path = scene.path / "prompts_multi.json"
    prompts = json.loads(path.read_text())
    name = next(iter(prompts))
    object_id = next(iter(prompts[name]))
    prompts[name][object_id]["point_prompt"] = [5000, 10]
    path.write_text(json.dumps(prompts))
    with pytest.raises(IsarFormatError, match=r"point \(5000, 10\) is outside the 320x180 image"):
        scene.prompts("multi_shot")


def test_bad_pose_is_named(copy_of):
    scene = IsarDataset(copy_of).tasks[0].test_scenes[0]
    path = scene.path / "camera_poses.json"
    poses = json.loads(path.read_text())
    poses["0000001"]["orientation"] = [math.nan, 0, 0, 1]
    path.write_text(json.dumps(poses))
    with pytest.raises(IsarFormatError, match="camera_poses.json: bad pose entry"):
        scene.frame(0).pose()
