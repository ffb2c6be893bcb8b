"""3-D per instance: on generated scenes with known geometry, each visible object's centroid from its
mask, the depth image and the camera is within 2 cm (or 2 % of its distance) of the truth, in the camera
frame and in the world frame - also with depth holes and with a mask that bleeds onto the background."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from isar_ros.core.geometry import pose_matrix
from isar_ros.core.locate import locate, locate_instances, surface_points
from isar_ros.core.segmentation import Instance, Segmentation
from isar_ros.isar.dataset import IsarDataset

MIN_PIXELS = 400  # objects seen this large are located; smaller ones may legitimately be refused


def cases(tiny_dataset):
    """(mask, depth_m, camera, T_world_camera, object id) of every well-visible object in a few frames."""
    scene = IsarDataset(tiny_dataset).tasks[0].test_scenes[0]
    for index in (0, 10, 20):
        frame = scene.frame(index)
        gt, depth = frame.ground_truth(), frame.depth_m()
        for object_id in np.unique(gt):
            mask = gt == object_id
            if object_id >= 1660 and mask.sum() >= MIN_PIXELS:
                yield mask, depth, scene.intrinsics, frame.pose_optical(), int(object_id)


def truth(mask, depth, camera, T):
    """The visible surface's mean point from the generator's ground truth (clean mask, clean depth)."""
    v, u = np.nonzero(mask)
    z = depth[v, u].astype(np.float64)
    points = np.stack([(u - camera.cx) * z / camera.fx, (v - camera.cy) * z / camera.fy, z], axis=1)
    centroid = points.mean(axis=0)
    return centroid, T[:3, :3] @ centroid + T[:3, 3]


def close(found, expected):
    tolerance = max(0.02, 0.02 * float(np.linalg.norm(expected)))
    return float(np.linalg.norm(found - expected)) <= tolerance


def test_clean_masks_locate_objects_where_the_generator_put_them(tiny_dataset):
    checked = 0
    for mask, depth, camera, T, object_id in cases(tiny_dataset):
        in_camera, in_world = locate(mask, depth, camera, T)
        expected_camera, expected_world = truth(mask, depth, camera, T)
        assert close(in_camera.centroid, expected_camera), object_id
        assert close(in_world.centroid, expected_world), object_id
        assert np.all(in_camera.extent > 0) and in_camera.depth_pixels > 0.5 * mask.sum()  # the interior
        checked += 1
    assert checked >= 3


def test_depth_holes_and_a_bleeding_mask_do_not_move_the_centroid(tiny_dataset):
    rng = np.random.default_rng(0)
    checked = 0
    for mask, depth, camera, T, object_id in cases(tiny_dataset):
        expected_camera, expected_world = truth(mask, depth, camera, T)
        holes = depth.copy()
        holes[rng.random(depth.shape) < 0.3] = 0.0  # 30 % of the depth missing
        holes[rng.random(depth.shape) < 0.02] = np.nan
        bled = cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(
            bool
        )  # 3 px onto what is around
        in_camera, in_world = locate(bled, holes, camera, T)
        assert close(in_camera.centroid, expected_camera), (object_id, in_camera.centroid, expected_camera)
        assert close(in_world.centroid, expected_world), object_id
        checked += 1
    assert checked >= 3


def test_no_depth_under_the_mask_gives_no_location_and_sizes_must_match(tiny_dataset):
    mask, depth, camera, T, _ = next(cases(tiny_dataset))
    assert locate(mask, np.zeros_like(depth), camera, T) == (None, None)
    assert surface_points(mask, np.full_like(depth, np.inf), camera).shape == (0, 3)
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    segmentation = Segmentation(mask.astype(np.uint16) * 7, [Instance(7, "x", 0.9, box, int(mask.sum()))])
    locate_instances(segmentation, depth, camera, pose_matrix([0, 0, 0], [0, 0, 0, 1]))
    assert segmentation.instances[0].camera_location is not None
    np.testing.assert_allclose(
        segmentation.instances[0].world_location.centroid, segmentation.instances[0].camera_location.centroid
    )  # identity pose
    with pytest.raises(ValueError, match="registered to the colour image"):
        locate_instances(segmentation, depth[:-1], camera)


def test_locating_inside_each_box_equals_locating_on_the_whole_image(tiny_dataset):
    """locate_instances crops to each instance's box (for speed); the answers are those of the full image."""
    scene = IsarDataset(tiny_dataset).tasks[0].test_scenes[0]
    frame = scene.frame(10)
    gt, depth, T = frame.ground_truth().astype(np.uint16), frame.depth_m(), frame.pose_optical()
    instances = []
    for object_id in np.unique(gt)[1:]:
        ys, xs = np.nonzero(gt == object_id)
        box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        instances.append(Instance(int(object_id), "x", 1.0, box, len(xs)))
    segmentation = Segmentation(gt, instances)
    locate_instances(segmentation, depth, scene.intrinsics, T)
    located = 0
    for instance in segmentation.instances:
        in_camera, in_world = locate(gt == instance.object_id, depth, scene.intrinsics, T)
        assert (instance.camera_location is None) == (in_camera is None)
        if in_camera is not None:
            np.testing.assert_allclose(instance.camera_location.centroid, in_camera.centroid, atol=1e-9)
            np.testing.assert_allclose(instance.world_location.extent, in_world.extent, atol=1e-9)
            assert instance.camera_location.depth_pixels == in_camera.depth_pixels
            located += 1
    assert located >= 3
