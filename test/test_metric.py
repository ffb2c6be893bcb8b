"""The ISAR metric on hand-made masks with answers worked out by hand."""

import math

import numpy as np
import pytest

from isar_ros.isar.metric import (
    SceneScore,
    attribute_means,
    boundary_f,
    masks_from_colors,
    mean_over_scenes,
    paint_colors,
    score_frame,
)

H, W = 12, 16


def box(r0, r1, c0, c1):
    mask = np.zeros((H, W), bool)
    mask[r0:r1, c0:c1] = True
    return mask


def test_perfect_prediction():
    s = score_frame(box(2, 7, 2, 7), box(2, 7, 2, 7))
    assert (s.visible, s.iou, s.boundary_f, s.misclassified, s.false_detection) == (
        True,
        1.0,
        1.0,
        False,
        False,
    )


def test_partial_prediction_inside():
    s = score_frame(box(0, 10, 0, 5), box(0, 10, 0, 10))  # 50 of 100 pixels
    assert s.iou == 0.5 and not s.misclassified and not s.false_detection


def test_shifted_prediction_is_misclassified_but_not_a_false_detection():
    s = score_frame(box(0, 10, 5, 15), box(0, 10, 0, 10))  # 50 / 150
    assert s.iou == pytest.approx(1 / 3) and s.misclassified and not s.false_detection


def test_disjoint_prediction_is_a_false_detection_visible():
    s = score_frame(box(0, 3, 12, 15), box(5, 10, 0, 5))
    assert s.iou == 0.0 and s.boundary_f == 0.0 and s.misclassified and s.false_detection


def test_empty_prediction_of_a_visible_object():
    s = score_frame(np.zeros((H, W), bool), box(5, 10, 0, 5))
    # |pred| = 0 is not > |gt| * IoU = 0: a miss is not a false detection
    assert (s.iou, s.boundary_f, s.misclassified, s.false_detection) == (0.0, 0.0, True, False)


def test_absent_object_painted_is_a_false_detection_not_visible():
    s = score_frame(box(0, 2, 0, 2), np.zeros((H, W), bool))
    assert (s.visible, s.iou, s.boundary_f, s.false_detection) == (False, None, None, True)


def test_absent_object_not_painted_records_nothing():
    s = score_frame(np.zeros((H, W), bool), np.zeros((H, W), bool))
    assert (s.visible, s.iou, s.false_detection) == (False, None, False)


def test_boundary_f_has_zero_tolerance():
    gt = box(2, 7, 2, 7)  # 5x5: a 16-pixel contour
    shifted = box(2, 7, 3, 8)  # one pixel to the right: contours share rows 2 and 6, columns 3..6 -> 8 pixels
    assert boundary_f(shifted, gt) == pytest.approx(0.5)  # precision 8/16, recall 8/16
    assert score_frame(shifted, gt).iou == pytest.approx(20 / 30)


def test_scene_averages_visible_frames_only_and_nan_for_never_visible_ids():
    score = SceneScore.for_ids([1, 2])
    gt_visible = np.zeros((H, W), np.uint16)
    gt_visible[0:10, 0:10] = 1
    score.add_frame("0000000", {1: gt_visible == 1}, gt_visible)  # id 1: IoU 1
    score.add_frame("0000001", {1: box(0, 10, 0, 5)}, gt_visible)  # id 1: IoU 0.5
    score.add_frame("0000002", {1: box(0, 1, 0, 1)}, np.zeros((H, W), np.uint16))  # not visible, painted
    assert score.objects[1].miou == pytest.approx(0.75)
    assert math.isnan(score.objects[2].miou)  # id 2 never visible
    assert math.isnan(score.miou)  # official: NaN propagates
    assert score.miou_nan_skipping == pytest.approx(0.75)
    assert score.misclassification_rate == 0.0
    assert score.false_detection_ratio_not_visible() == {1: 1.0, 2: 0.0}
    assert score.false_detection_ratio_visible() == {1: 0.0}
    official = score.official()
    assert official["iou_detailed"] == {"1": {"0000000.jpg": 1.0, "0000001.jpg": 0.5}, "2": {}}
    assert set(official) == {
        "mIoU",
        "mBoundF",
        "misclassification_rate",
        "false_detection_ratio_visible",
        "false_detection_ratio_not_visible",
        "iou_detailed",
    }


def test_misclassification_rate_is_per_object_then_mean():
    score = SceneScore.for_ids([1, 2])
    gt = np.zeros((H, W), np.uint16)
    gt[0:4, 0:4], gt[6:10, 6:10] = 1, 2
    score.add_frame("a", {1: gt == 1}, gt)  # 1 right, 2 missed
    score.add_frame("b", {}, gt)  # both missed
    # id 1: 1 of 2 frames misclassified, id 2: 2 of 2 -> mean 0.75
    assert score.misclassification_rate == pytest.approx(0.75)
    assert score.miou == pytest.approx((0.5 + 0.0) / 2)


def test_colour_predictions_are_decoded_exactly():
    colors = {1660: (10, 20, 30), 1661: (200, 100, 0)}
    labels = np.zeros((H, W), np.uint16)
    labels[1:3, 1:3], labels[5:9, 5:9] = 1660, 1661
    image = paint_colors(labels, colors)
    assert tuple(image[1, 1]) == (10, 20, 30)  # BGR as in color_map
    image[8, 8] = (200, 100, 1)  # one channel off by one: no longer the object's colour
    masks = masks_from_colors(image, colors, [1660, 1661])
    assert masks[1660].sum() == 4 and masks[1661].sum() == 15


def test_mode_and_attribute_means():
    a, b = SceneScore.for_ids([1]), SceneScore.for_ids([1])
    gt = np.zeros((H, W), np.uint16)
    gt[0:10, 0:10] = 1
    a.add_frame("0", {1: gt == 1}, gt)
    b.add_frame("0", {1: box(0, 10, 0, 5)}, gt)
    a.seconds, b.seconds = 0.5, 0.5
    summary = mean_over_scenes([a, b])
    assert (
        summary["mIoU"] == pytest.approx(0.75)
        and summary["scenes"] == 2
        and summary["fps"] == pytest.approx(2.0)
    )
    attrs = attribute_means([(a, {"CLA": True}), (b, {"CLA": False})], ["CLA", "FST"])
    assert attrs["CLA"]["mIoU"] == 1.0 and attrs["CLA"]["scenes"] == 1
    assert attrs["FST"]["scenes"] == 0 and math.isnan(attrs["FST"]["mIoU"])
