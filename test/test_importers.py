"""Importers into the ISAR layout, on small fixtures in each public format built here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from isar_ros.isar import importers, registry
from isar_ros.isar.dataset import IsarDataset
from isar_ros.isar.importers import ImportFormatError, ImportOptions
from isar_ros.isar.runner import run_benchmark

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"


def rgb_frame(k: int, size=(96, 128)) -> np.ndarray:
    rng = np.random.default_rng(k)
    return rng.integers(0, 255, (*size, 3), dtype=np.uint8)


def square(k: int, size=(96, 128), side=40) -> np.ndarray:
    """A square that moves one pixel per frame; large enough to be prompted."""
    mask = np.zeros(size, np.uint8)
    mask[20 + k % 10 : 20 + k % 10 + side, 10 + k : 10 + k + side] = 1
    return mask


def write_davis(root: Path, sequences: dict[str, int], palette: bool = False) -> None:
    for name, frames in sequences.items():
        images, annotations = root / "JPEGImages" / "480p" / name, root / "Annotations" / "480p" / name
        images.mkdir(parents=True)
        annotations.mkdir(parents=True)
        for k in range(frames):
            cv2.imwrite(str(images / f"{k:05d}.jpg"), rgb_frame(k))
            if palette:  # DAVIS 2017: two objects, a void border (255)
                mask = square(k).astype(np.uint8)
                mask[60:90, 80:120] = 2
                mask[0, :] = 255
                image = Image.fromarray(mask, mode="P")
                image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9))
                image.save(annotations / f"{k:05d}.png")
            else:  # DAVIS 2016: 0 / 255
                cv2.imwrite(str(annotations / f"{k:05d}.png"), square(k) * 255)


def oracle_scores_one(folder: Path) -> None:
    """Imported ground truth scored as a prediction gives 1.0 wherever the objects are visible."""
    dataset = IsarDataset(folder)
    result = run_benchmark(dataset, registry.create("oracle"), progress=False)
    for records in result.modes.values():
        for record in records:
            if not np.isnan(record.score.miou_nan_skipping):
                assert record.score.miou_nan_skipping == 1.0, record.scene


def test_davis_2016_videos_become_tasks_with_train_test_and_absent_object_scenes(tmp_path):
    write_davis(tmp_path / "davis", {"bear": 25, "car": 25})
    out = tmp_path / "isar"
    summaries = importers.import_videos(
        importers.davis_videos(tmp_path / "davis"), out, ImportOptions(train_frames=12)
    )
    assert [s["task"] for s in summaries] == ["bear", "car"]
    task = IsarDataset(out).task("bear")
    assert task.semantic_ids == [1660]
    assert [s.name for s in task.train_scenes] == ["train"] and len(task.train_scenes[0]) == 12
    assert [s.name for s in task.test_scenes] == ["absent_car", "test"]
    test = next(s for s in task.test_scenes if s.name == "test")
    assert len(test) == 13
    np.testing.assert_array_equal(test.frame(0).ground_truth(), square(12).astype(np.int64) * 1660)
    absent = next(s for s in task.test_scenes if s.name == "absent_car")
    assert all(not frame.ground_truth().any() for frame in absent)
    prompts = task.train_scenes[0].prompts("multi_shot")
    assert sorted(prompts) == ["0000000", "0000010"]  # every 10th frame, as ISAR prompts
    single = task.train_scenes[0].prompts("single_shot")
    assert sum(len(p) for p in single.values()) == 1
    oracle_scores_one(out)


def test_davis_2017_palette_masks_give_one_id_per_object_and_void_is_background(tmp_path):
    write_davis(tmp_path / "davis17", {"dogs": 22, "other": 22}, palette=True)
    out = tmp_path / "isar"
    importers.import_videos(
        importers.davis_videos(tmp_path / "davis17"), out, ImportOptions(train_frames=11, absent=0)
    )
    task = IsarDataset(out).task("dogs")
    assert task.semantic_ids == [1660, 1661]
    gt = task.train_scenes[0].frame(0).ground_truth()
    assert set(np.unique(gt).tolist()) == {0, 1660, 1661} and not gt[0].any()  # the void row is background
    oracle_scores_one(out)


def test_perseg_objects_are_taught_from_one_photo_and_resized(tmp_path):
    source = tmp_path / "perseg"
    source.mkdir()
    for name in ("cat", "duck"):
        for k, side in enumerate((200, 160, 1000)):
            cv2.imwrite(str(source / f"{name}_{k:02d}.jpg"), rgb_frame(k, (side, side)))
            mask = np.zeros((side, side), np.uint8)
            mask[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 1
            Image.fromarray(mask, mode="P").save(source / f"{name}_{k:02d}.png")
    out = tmp_path / "isar"
    importers.import_perseg(source, out, ImportOptions(max_side=320))
    task = IsarDataset(out).task("cat")
    assert [s.name for s in task.train_scenes] == ["train"]
    assert sorted(s.name for s in task.test_scenes) == ["absent_duck_00", "cat_01", "cat_02"]
    big = next(s for s in task.test_scenes if s.name == "cat_02")
    assert big.image_size == (320, 320) and big.frame(0).ground_truth().max() == 1660
    oracle_scores_one(out)


def write_bop(root: Path) -> None:
    K = [500.0, 0, 64.0, 0, 500.0, 48.0, 0, 0, 1]
    for scene, objects in (("000001", (1, 2)), ("000002", (2, 5))):
        folder = root / scene
        for sub in ("rgb", "depth", "mask_visib"):
            (folder / sub).mkdir(parents=True)
        gt, cameras = {}, {}
        for frame in range(3):
            cv2.imwrite(str(folder / "rgb" / f"{frame:06d}.png"), rgb_frame(frame))
            cv2.imwrite(
                str(folder / "depth" / f"{frame:06d}.png"), np.full((96, 128), 8000, np.uint16)
            )  # 0.1 mm units
            gt[str(frame)] = [
                {"obj_id": obj, "cam_R_m2c": [1, 0, 0, 0, 1, 0, 0, 0, 1], "cam_t_m2c": [0, 0, 800]}
                for obj in objects
            ]
            cameras[str(frame)] = {
                "cam_K": K,
                "depth_scale": 0.1,
                "cam_R_w2c": [1, 0, 0, 0, 1, 0, 0, 0, 1],
                "cam_t_w2c": [0, 0, -1000.0 * frame],
            }
            for k, _ in enumerate(objects):
                mask = np.zeros((96, 128), np.uint8)
                mask[10 + 40 * k : 40 + 40 * k, 20:80] = 255
                cv2.imwrite(str(folder / "mask_visib" / f"{frame:06d}_{k:06d}.png"), mask)
        (folder / "scene_gt.json").write_text(json.dumps(gt))
        (folder / "scene_camera.json").write_text(json.dumps(cameras))


def test_bop_scenes_carry_depth_intrinsics_and_poses(tmp_path):
    write_bop(tmp_path / "bop")
    out = tmp_path / "isar"
    importers.import_bop(tmp_path / "bop", out, ImportOptions(), task="ycb")
    task = IsarDataset(out).task("ycb")
    assert task.semantic_ids == [1660, 1661]  # objects 1 and 2: those of the train scene
    test = task.test_scenes[0]
    gt = test.frame(0).ground_truth()
    assert set(np.unique(gt).tolist()) == {0, 1661}  # object 5 is not tracked; object 2 (k=0) is
    assert test.intrinsics.fx == 500.0 and test.intrinsics.cx == 64.0
    assert float(test.frame(0).depth_m()[0, 0]) == pytest.approx(0.8)  # 8000 x 0.1 mm
    np.testing.assert_allclose(
        test.frame(2).pose_optical()[:3, 3], [0, 0, 2.0], atol=1e-9
    )  # camera 2 m along z
    oracle_scores_one(out)


def test_generic_frames_and_instance_masks(tmp_path):
    video = tmp_path / "generic" / "walk"
    (video / "frames").mkdir(parents=True)
    (video / "masks").mkdir()
    for k in range(24):
        cv2.imwrite(str(video / "frames" / f"{k:04d}.png"), rgb_frame(k))
        ids = square(k).astype(np.uint16) * 3  # object number 3
        cv2.imwrite(str(video / "masks" / f"{k:04d}.png"), ids)
    out = tmp_path / "isar"
    importers.import_videos(
        importers.generic_videos(tmp_path / "generic"), out, ImportOptions(train_frames=12, absent=0)
    )
    assert IsarDataset(out).task("walk").semantic_ids == [1662]
    oracle_scores_one(out)


def test_errors_name_the_file(tmp_path):
    write_davis(tmp_path / "davis", {"bear": 25})
    (tmp_path / "davis" / "JPEGImages" / "480p" / "bear" / "00003.jpg").unlink()
    with pytest.raises(ImportFormatError, match=r"bear/00003.jpg: missing frame"):
        importers.davis_videos(tmp_path / "davis")
    with pytest.raises(ImportFormatError, match="JPEGImages/480p: missing"):
        importers.davis_videos(tmp_path / "nothing")
    short = tmp_path / "short"
    write_davis(short, {"tiny": 5})
    with pytest.raises(ImportFormatError, match="5 frames, but 20 are needed"):
        importers.import_videos(importers.davis_videos(short), tmp_path / "out", ImportOptions())


@pytest.mark.skipif(not (REAL / "davis2016").is_dir(), reason=f"the real development data is not at {REAL}")
def test_the_real_davis_and_perseg_data_import_with_the_command(tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "isar_ros.cli", "import", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )

    davis = run(
        "davis", str(REAL / "davis2016"), "--out", str(tmp_path / "davis"), "--sequences", "blackswan", "dog"
    )
    assert davis.returncode == 0, davis.stderr
    assert "imported 2 task(s)" in davis.stdout
    task = IsarDataset(tmp_path / "davis").task("blackswan")
    assert len(task.train_scenes[0]) == 20 and {s.name for s in task.test_scenes} == {"test", "absent_dog"}
    perseg = run("perseg", str(REAL / "perseg"), "--out", str(tmp_path / "perseg"))
    assert perseg.returncode == 0 and "imported 3 task(s)" in perseg.stdout, perseg.stderr
    assert max(IsarDataset(tmp_path / "perseg").task("cat").test_scenes[0].image_size) <= 640
