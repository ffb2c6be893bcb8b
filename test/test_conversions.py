"""Message <-> core conversions: exact round trips, and bad memories refused with the reason."""

import numpy as np
import pytest
from isar_ros_msgs.msg import Prompt as PromptMsg
from std_msgs.msg import Header

from isar_ros.core.memory_snapshot import MemoryFormatError, MemorySnapshot, ObjectClassifier, SnapshotObject
from isar_ros.core.prompt_mask import Prompt, PromptError
from isar_ros.ros.conversions import msg_to_snapshot, prompt_from_msg, prompt_to_msg, snapshot_to_msg


def snapshot(dim=4):
    classifier = ObjectClassifier(
        weights=np.arange(dim, dtype=np.float32),
        bias=-0.5,
        mask_threshold=0.0,
        presence_threshold=0.625,
        prototypes=np.ones((2, dim), np.float32) / 2,
        prototype_threshold=0.75,
        appearance=np.full(dim, 0.5, np.float32),
        appearance_threshold=0.875,
    )
    return MemorySnapshot(3, "handcrafted-test", dim, (SnapshotObject(2, "mug", 2, 3, 40, classifier),))


def test_memory_round_trip_is_exact():
    back = msg_to_snapshot(snapshot_to_msg(snapshot(), Header().stamp))
    original = snapshot()
    assert (back.version, back.backbone_id, back.feature_dim) == (3, "handcrafted-test", 4)
    (o,), (p,) = back.objects, original.objects
    for key in ("object_id", "name", "num_exemplars", "min_patches", "max_patches"):
        assert getattr(o, key) == getattr(p, key)
    for key in (
        "bias",
        "mask_threshold",
        "presence_threshold",
        "prototype_threshold",
        "appearance_threshold",
    ):
        assert getattr(o.classifier, key) == getattr(p.classifier, key)
    for key in ("weights", "prototypes", "appearance"):
        np.testing.assert_array_equal(getattr(o.classifier, key), getattr(p.classifier, key))


@pytest.mark.parametrize(
    "edit,reason",
    [
        (lambda m: setattr(m.objects[0], "weights", [1.0, 2.0]), "has 2 weights, feature_dim is 4"),
        (lambda m: setattr(m.objects[0], "bias", float("nan")), "NaN or infinite"),
        (lambda m: setattr(m.objects[0], "num_prototypes", 3), "prototype values for 3 prototypes"),
        (lambda m: setattr(m.objects[0], "object_id", 0), "id 0"),
        (lambda m: setattr(m.objects[0], "appearance", [1.0]), "has 1 appearance values"),
        (lambda m: setattr(m.objects[0], "appearance_threshold", float("inf")), "NaN or infinite"),
        (lambda m: setattr(m.objects[0], "min_patches", 0), "min_patches 0"),
        (lambda m: setattr(m, "feature_dim", 0), "feature_dim 0"),
    ],
)
def test_bad_memory_messages_are_refused_with_the_reason(edit, reason):
    msg = snapshot_to_msg(snapshot(), Header().stamp)
    edit(msg)
    with pytest.raises(MemoryFormatError, match=reason):
        msg_to_snapshot(msg)


def test_prompt_round_trip_and_empty_box():
    prompt = Prompt(
        np.array([[10.0, 20.0], [30.0, 5.0]], np.float32),
        np.array([1, 0]),
        np.array([5, 6, 50, 60], np.float32),
    )
    back = prompt_from_msg(prompt_to_msg(prompt, Header()))
    np.testing.assert_array_equal(back.points_xy, prompt.points_xy)
    np.testing.assert_array_equal(back.labels, prompt.labels)
    np.testing.assert_array_equal(back.box_xyxy, prompt.box_xyxy)
    msg = PromptMsg(has_box=True)
    with pytest.raises(PromptError, match=r"is empty \(0x0 px\)"):
        prompt_from_msg(msg)
