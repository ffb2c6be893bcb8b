"""The priors of finding (pose prior, tracking) and depth trimming, on known answers.

The finder's object scores where feature axis 0 is set (``4 a - 1``; the background, axis 3, scores -1),
its presence threshold is 1 logit, each prior moves it by 0.25 of that. The camera looks along +z at a
wall 2 m away; the object stands 1 m away. Frame one sees it strongly with the camera at the origin, which
puts it on the map; then the camera moves 0.25 m to the right, so the object should appear 16 px (two
patches) further left. Tracking needs no geometry: the object's region of the last frame, grown by half
its size (two patches here), is where it is expected.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from isar_ros.core.backbones.base import FeatureGrid
from isar_ros.core.geometry import FrameGeometry, PinholeCamera, pose_matrix
from isar_ros.core.inference import InferenceConfig, InstanceFinder, ObjectModel
from isar_ros.core.memory_snapshot import MemorySnapshot, ObjectClassifier, SnapshotObject
from isar_ros.core.pose_prior import FORGET_AFTER
from isar_ros.errors import InvalidInput
from isar_ros.isar.dataset import IsarDataset

ROWS, COLS, STRIDE = 12, 16, 8
CAMERA = PinholeCamera(64.0, 64.0, 64.0, 48.0, COLS * STRIDE, ROWS * STRIDE)
PRESENCE_LOGIT = 1.0
STRONG, WEAK, LOOK_ALIKE = 1.0, 0.4625, 0.525  # scores 3.0, 0.85 and 1.1: above, just below, just above 1
AT_START = (slice(4, 8), slice(5, 9))  # where the object shows from the origin
AFTER_MOVE = (slice(4, 8), slice(3, 7))  # ... and from 0.25 m to the right
ELSEWHERE = (slice(4, 8), slice(12, 16))


def finder(pose_prior: bool, track: bool = False) -> InstanceFinder:
    classifier = ObjectClassifier(
        np.array([4.0, 0.0, 0.0, 0.0], np.float32),
        -1.0,
        0.0,
        float(1 / (1 + np.exp(-PRESENCE_LOGIT))),
        np.eye(4, dtype=np.float32)[:1],
        0.5,
    )
    snapshot = MemorySnapshot(1, "test", 4, (SnapshotObject(1, "mug", 1, 4, 16, classifier),))
    config = InferenceConfig(
        temporal=False, edge_aware=False, pose_prior=pose_prior, depth_trim=False, track=track
    )
    return InstanceFinder(ObjectModel(snapshot), config)


def frame(*regions: tuple[tuple[slice, slice], float]) -> tuple[FeatureGrid, np.ndarray]:
    """Features with the object's axis at strength ``a`` in each region, and the depth image: 1 m under
    the regions, the wall (2 m) elsewhere."""
    features = np.zeros((ROWS, COLS, 4), np.float32)
    features[..., 3] = 1.0
    depth = np.full((CAMERA.height, CAMERA.width), 2.0, np.float32)
    for (rows, cols), strength in regions:
        features[rows, cols] = [strength, 0.0, 0.0, np.sqrt(1 - strength**2)]
        depth[rows.start * STRIDE : rows.stop * STRIDE, cols.start * STRIDE : cols.stop * STRIDE] = 1.0
    return FeatureGrid(torch.from_numpy(features), (CAMERA.width, CAMERA.height)), depth


def geometry(depth: np.ndarray, x_m: float | None) -> FrameGeometry:
    pose = None if x_m is None else pose_matrix([x_m, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0])
    return FrameGeometry(depth, CAMERA, pose)


def seen_at_start(pose_prior: bool = True) -> InstanceFinder:
    found = finder(pose_prior)
    grid, depth = frame((AT_START, STRONG))
    segmentation = found.find(grid, None, geometry(depth, 0.0))
    assert [i.name for i in segmentation.instances] == ["mug"]
    assert segmentation.instances[0].world_location is not None
    return found


def names(finder_: InstanceFinder, *regions, x_m: float | None = 0.25) -> list[str]:
    grid, depth = frame(*regions)
    return [i.name for i in finder_.find(grid, None, geometry(depth, x_m)).instances]


def test_the_map_entry_is_projected_where_the_moved_camera_sees_it():
    found = seen_at_start()
    grid, depth = frame((AFTER_MOVE, WEAK))
    expected = found.prior.expect(found.model.ids, geometry(depth, 0.25), (ROWS, COLS))
    near = expected[0].near
    assert near[5, 4] and near[6, 5]  # the centre of where it shows now (u = 40 px, v = 48 px)
    assert not near[:, 12:].any()  # and not the far side of the image
    behind = pose_matrix([0.0, 0.0, 3.0], [0.0, 0.0, 0.0, 1.0])  # the camera walked past it
    assert (
        found.prior.expect(found.model.ids, FrameGeometry(depth, CAMERA, behind), (ROWS, COLS))[0].near
        is None
    )
    hidden = depth.copy()
    hidden[:] = 0.5  # something stands right in front of the camera
    assert found.prior.expect(found.model.ids, geometry(hidden, 0.25), (ROWS, COLS)) == {}
    assert found.prior.expect(found.model.ids, geometry(depth, None), (ROWS, COLS)) == {}


def test_a_weak_view_at_the_expected_place_is_recovered():
    assert names(seen_at_start(pose_prior=False), (AFTER_MOVE, WEAK)) == []
    assert names(seen_at_start(), (AFTER_MOVE, WEAK)) == ["mug"]


def test_a_look_alike_away_from_the_expected_place_is_doubted_and_preferred_less_than_the_place():
    assert names(seen_at_start(pose_prior=False), (ELSEWHERE, LOOK_ALIKE)) == ["mug"]
    assert names(seen_at_start(), (ELSEWHERE, LOOK_ALIKE)) == []
    # Both show: the region at the place is the object, although the look-alike scores higher.
    found = seen_at_start()
    grid, depth = frame((AFTER_MOVE, WEAK), (ELSEWHERE, LOOK_ALIKE))
    labels = found.find(grid, None, geometry(depth, 0.25)).labels
    assert labels[AFTER_MOVE[0].start * STRIDE + 12, AFTER_MOVE[1].start * STRIDE + 12] == 1
    assert not labels[:, ELSEWHERE[1].start * STRIDE :].any()


def test_an_object_that_was_moved_is_doubted_for_a_few_frames_only():
    found = seen_at_start()
    answers = [names(found, (ELSEWHERE, LOOK_ALIKE)) for _ in range(FORGET_AFTER + 2)]
    assert answers[:FORGET_AFTER] == [[]] * FORGET_AFTER  # not at its place: missed, then forgotten
    assert answers[FORGET_AFTER:] == [["mug"]] * 2


def test_without_a_pose_or_without_the_prior_finding_is_unchanged():
    with_prior, without = seen_at_start(), seen_at_start(pose_prior=False)
    for regions in [((AFTER_MOVE, WEAK),), ((ELSEWHERE, LOOK_ALIKE),), ((AT_START, STRONG),)]:
        grid, depth = frame(*regions)
        a = with_prior.find(grid, None, geometry(depth, None))  # the pose did not arrive
        b = without.find(grid, None, geometry(depth, None))
        c = without.find(grid)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(b.labels, c.labels)


def test_a_reset_forgets_the_map_and_a_forgotten_object_loses_its_entry():
    found = seen_at_start()
    found.reset()
    assert names(found, (AFTER_MOVE, WEAK)) == []
    found = seen_at_start()
    found.set_model(ObjectModel.empty("test", 4))
    assert found.prior.map.entries == {}


def test_depth_of_another_size_is_refused_with_the_fix():
    grid, depth = frame((AT_START, STRONG))
    with pytest.raises(InvalidInput, match="registered to the colour image"):
        finder(True).find(grid, None, geometry(depth[:-8], 0.0))


def test_trimming_to_depth_cuts_a_mask_bled_onto_the_background_and_keeps_the_object(tiny_dataset):
    from isar_ros.core.locate import trim_to_depth
    from isar_ros.core.segmentation import Instance, Segmentation

    scene = IsarDataset(tiny_dataset).tasks[0].test_scenes[0]
    checked = 0
    for index in (0, 10, 20):
        gt, depth = scene.frame(index).ground_truth(), scene.frame(index).depth_m()
        for object_id in np.unique(gt):
            mask = gt == object_id
            if object_id < 1660 or mask.sum() < 400:
                continue
            bled = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
            box = cv2.boundingRect(bled.view(np.uint8))
            segmentation = Segmentation(
                bled.astype(np.uint16) * 3, [Instance(3, "x", 0.9, box, int(bled.sum()))]
            )
            trim_to_depth(segmentation, depth)
            trimmed = segmentation.labels == 3
            assert (trimmed & mask).sum() >= 0.98 * mask.sum()  # the object stays
            assert (trimmed & ~mask).sum() < (bled & ~mask).sum()  # the background it bled onto goes
            instance = segmentation.instances[0]
            assert instance.area == trimmed.sum()
            assert instance.box_xywh == tuple(cv2.boundingRect(trimmed.view(np.uint8)))
            checked += 1
    assert checked >= 3


def test_a_benchmark_method_gets_depth_intrinsics_and_the_pose_of_each_frame(tiny_dataset):
    frame_ = IsarDataset(tiny_dataset).tasks[0].test_scenes[0].frame(5)
    geometry_ = frame_.geometry()
    assert geometry_.depth_m.shape == frame_.rgb().shape[:2]
    assert geometry_.camera == frame_.scene.intrinsics
    np.testing.assert_array_equal(geometry_.T_world_camera, frame_.pose_optical())


def test_the_runner_passes_geometry_to_a_method_that_uses_it_and_says_so(tiny_dataset, tmp_path):
    from isar_ros.isar.core_methods import IsarRosMethod
    from isar_ros.isar.report import markdown_summary
    from isar_ros.isar.runner import run_benchmark

    dataset = IsarDataset(tiny_dataset)
    task = dataset.tasks[0].name
    assert IsarRosMethod().uses_geometry  # depth trimming is on by default
    assert not IsarRosMethod({"depth_trim": "false"}).uses_geometry
    method = IsarRosMethod({"pose_prior": "true", "depth_trim": "true"})
    seen = []
    find = method.perception.find
    method.perception.find = lambda frame, geometry=None: seen.append(geometry) or find(frame, geometry)
    result = run_benchmark(dataset, method, modes=["single_shot"], tasks=[task], progress=False)
    assert len(seen) == sum(len(s) for s in dataset.task(task).test_scenes)
    assert all(g is not None and g.T_world_camera is not None for g in seen)
    assert "depth, intrinsics and camera pose" in markdown_summary(result)


# ---- tracking (image only) --------------------------------------------------------------------------


def tracked(*regions: tuple[tuple[slice, slice], float], track: bool = True) -> list[list[str]]:
    """The names found in each of a sequence of frames (each a tuple of regions), without geometry."""
    found = finder(pose_prior=False, track=track)
    return [[i.name for i in found.find(frame(*shown)[0]).instances] for shown in regions]


def test_tracking_recovers_a_weak_view_next_to_where_the_last_frame_found_it():
    sequence = (((AT_START, STRONG),), ((AFTER_MOVE, WEAK),))
    assert tracked(*sequence, track=False) == [["mug"], []]
    assert tracked(*sequence) == [["mug"], ["mug"]]


def test_tracking_doubts_a_look_alike_elsewhere_and_paints_the_place_when_both_show():
    sequence = (((AT_START, STRONG),), ((ELSEWHERE, LOOK_ALIKE),))
    assert tracked(*sequence, track=False) == [["mug"], ["mug"]]
    assert tracked(*sequence) == [["mug"], []]
    found = finder(pose_prior=False, track=True)
    found.find(frame((AT_START, STRONG))[0])
    labels = found.find(frame((AFTER_MOVE, WEAK), (ELSEWHERE, LOOK_ALIKE))[0]).labels
    assert labels[AFTER_MOVE[0].start * STRIDE + 12, AFTER_MOVE[1].start * STRIDE + 12] == 1
    assert not labels[:, ELSEWHERE[1].start * STRIDE :].any()


def test_tracking_follows_a_jump_and_forgets_after_one_frame_without_a_sure_view():
    # A strong view elsewhere passes the raised threshold, and the expectation moves there with it.
    assert tracked(((AT_START, STRONG),), ((ELSEWHERE, STRONG),), ((ELSEWHERE, WEAK),)) == [["mug"]] * 3
    # A frame without it ends the expectation: the look-alike is found as without tracking.
    assert tracked(((AT_START, STRONG),), (), ((ELSEWHERE, LOOK_ALIKE),)) == [["mug"], [], ["mug"]]
    # A view recovered by tracking is not sure: it does not carry the expectation on by itself.
    assert tracked(((AT_START, STRONG),), ((AT_START, WEAK),), ((AT_START, WEAK),)) == [["mug"], ["mug"], []]


def test_a_reset_or_forgetting_the_object_ends_tracking():
    found = finder(pose_prior=False, track=True)
    found.find(frame((AT_START, STRONG))[0])
    found.reset()
    assert found.find(frame((AFTER_MOVE, WEAK))[0]).instances == []
    found.find(frame((AT_START, STRONG))[0])
    found.set_model(ObjectModel.empty("test", 4))
    assert found.track.regions == {}


def test_the_pose_prior_wins_over_tracking_where_both_expect_the_object():
    found = finder(pose_prior=True, track=True)
    grid, depth = frame((AT_START, STRONG))
    found.find(grid, None, geometry(depth, 0.0))
    grid, depth = frame((AFTER_MOVE, WEAK))
    posed, expected, weights = found._expectations(geometry(depth, 0.25), (ROWS, COLS))
    assert expected[0] is posed[0] and weights[0] == found.config.pose_prior_weight
    posed, expected, weights = found._expectations(geometry(depth, None), (ROWS, COLS))  # no pose
    assert posed == {} and expected[0].near[AT_START].all() and weights[0] == found.config.track_weight
