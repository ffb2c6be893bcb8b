"""ISAR scenes as rosbag2 files: read back independently, and byte-compatible with rclpy."""

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message

from isar_ros.isar.dataset import IsarDataset
from isar_ros.msgio.bag_types import typestore
from isar_ros.msgio.image_codec import image_to_numpy, numpy_to_image
from isar_ros.msgio.timing import REPLAY_START_S as START_TIME_S
from sim_bridge.bags import export_dataset, export_scene


@pytest.fixture(scope="module")
def train_bag(tiny_dataset, tmp_path_factory):
    scene = IsarDataset(tiny_dataset).tasks[0].train_scenes[0]
    bag = tmp_path_factory.mktemp("bags") / "train"
    summary = export_scene(scene, bag, "mcap", compressed=True)
    return scene, bag, summary


def read_all(bag):
    """Every message, decoded with the definitions embedded in the bag (rosbags' AnyReader, not our types)."""
    from rosbags.highlevel import AnyReader

    with AnyReader([bag]) as reader:
        connections = list(reader.connections)
        return [
            (c.topic, t, reader.deserialize(raw, c.msgtype), raw) for c, t, raw in reader.messages()
        ], connections


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_every_frame_stamp_and_pixel_equals_the_scene_folder(tiny_dataset, tmp_path, storage):
    scene = IsarDataset(tiny_dataset).tasks[0].test_scenes[0]
    export_scene(scene, tmp_path / "bag", storage)
    messages, connections = read_all(tmp_path / "bag")
    by_topic = {}
    for topic, t, msg, _ in messages:
        by_topic.setdefault(topic, []).append((t, msg))
    assert {c.topic for c in connections} >= {
        "/image",
        "/depth",
        "/camera_info",
        "/camera_pose",
        "/ground_truth",
        "/clock",
    }
    assert len(by_topic["/image"]) == len(scene)
    for index, frame in enumerate(scene):
        expected_ns = int(round((START_TIME_S + index / 30.0) * 1e9))
        stamps = set()
        for topic in ("/image", "/depth", "/camera_info", "/camera_pose", "/ground_truth"):
            t, msg = by_topic[topic][index]
            assert t == expected_ns
            stamps.add(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
        assert stamps == {expected_ns}
        np.testing.assert_array_equal(image_to_numpy(by_topic["/image"][index][1]), frame.rgb())
        np.testing.assert_array_equal(image_to_numpy(by_topic["/depth"][index][1]), frame.depth_mm())
        np.testing.assert_array_equal(
            image_to_numpy(by_topic["/ground_truth"][index][1]), frame.ground_truth()
        )
        pose = by_topic["/camera_pose"][index][1].pose.position
        np.testing.assert_allclose([pose.x, pose.y, pose.z], frame.pose()[:3, 3])


def test_metadata_prompts_and_compressed_images(train_bag):
    scene, bag, summary = train_bag
    import yaml

    custom = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"]
    assert (
        custom["isar_task"] == scene.task_name
        and custom["isar_split"] == "train"
        and custom["isar_scene"] == scene.name
    )
    assert set(custom["isar_modes"].split(",")) == {"single_shot", "multi_shot"}
    messages, _ = read_all(bag)
    prompts = [(t, m) for topic, t, m, _ in messages if topic == "/prompts/multi_shot"]
    expected = [(name, p) for name, ps in scene.prompts("multi_shot").items() for p in ps]
    assert len(prompts) == len(expected)
    for (t, msg), (name, p) in zip(prompts, expected, strict=False):
        assert msg.name == str(p.object_id)
        assert (msg.prompt.points[0].x, msg.prompt.points[0].y) == p.point_xy
        assert t == int(round((START_TIME_S + scene.frame_names.index(name) / 30.0) * 1e9))
    jpeg = next(m for topic, _, m, _ in messages if topic == "/image/compressed")
    assert bytes(jpeg.data) == scene.frame(0).rgb_path.read_bytes()
    assert summary["frames"] == len(scene) and summary["bytes"] > 0


def test_custom_message_bytes_are_compatible_with_rclpy(train_bag):
    from isar_ros_msgs.msg import Instance, InstanceSegmentation, LabelledPrompt

    _, bag, _ = train_bag
    messages, _ = read_all(bag)
    topic, _, ours, raw = next(m for m in messages if m[0] == "/prompts/single_shot")
    decoded = deserialize_message(bytes(raw), LabelledPrompt)  # our exporter's bytes, rclpy's decoder
    assert decoded.name == ours.name and decoded.prompt.box.width == ours.prompt.box.width
    assert (decoded.prompt.points[0].x, decoded.prompt.points[0].y) == (
        ours.prompt.points[0].x,
        ours.prompt.points[0].y,
    )
    labels = np.zeros((4, 5), np.uint16)
    labels[1:3, 2:4] = 1661
    msg = InstanceSegmentation(memory_version=7, label_image=numpy_to_image(labels, "mono16"))
    msg.instances.append(Instance(object_id=1661, name="mug", score=0.75, area=4))
    back = typestore().deserialize_cdr(
        serialize_message(msg), "isar_ros_msgs/msg/InstanceSegmentation"
    )  # rclpy's bytes, our types
    assert back.memory_version == 7 and back.instances[0].name == "mug" and back.instances[0].score == 0.75
    np.testing.assert_array_equal(image_to_numpy(back.label_image), labels)


def test_whole_dataset_export_resumes(tiny_dataset, tmp_path):
    first = export_dataset(tiny_dataset, tmp_path, progress=False)
    scenes = sum(len(t.train_scenes) + len(t.test_scenes) for t in IsarDataset(tiny_dataset).tasks)
    assert len(first) == scenes
    victim = tmp_path / first[0]["bag"].split(str(tmp_path) + "/")[1]
    import shutil

    shutil.rmtree(victim)  # as if the run had stopped before this bag was complete
    again = export_dataset(tiny_dataset, tmp_path, progress=False)
    assert [r["bag"] for r in again] == [str(victim)]


def test_a_bag_reads_like_its_scene_folder(train_bag):
    from sim_bridge.bags import BagScene

    scene, bag, _ = train_bag
    replayed = BagScene(bag)
    assert (replayed.task_name, replayed.name, replayed.split, len(replayed)) == (
        scene.task_name,
        scene.name,
        "train",
        len(scene),
    )
    assert replayed.intrinsics == scene.intrinsics
    for index in (0, len(scene) - 1):
        a, b = replayed.frame(index), scene.frame(index)
        np.testing.assert_array_equal(a.rgb(), b.rgb())
        np.testing.assert_array_equal(a.depth_mm(), b.depth_mm())
        np.testing.assert_array_equal(a.ground_truth(), b.ground_truth())
        np.testing.assert_allclose(a.pose_optical(), b.pose_optical(), atol=1e-9)
    for mode in ("single_shot", "multi_shot"):
        assert replayed.prompts(mode) == scene.prompts(mode)


def test_a_finished_bag_is_named_after_its_folder_and_nothing_is_left_behind(train_bag):
    """Regression: the storage file used to be named scene.partial.mcap inside the finished folder."""
    _, bag, _ = train_bag
    assert sorted(p.name for p in bag.iterdir()) == ["metadata.yaml", "train.mcap"]
    assert "train.mcap" in (bag / "metadata.yaml").read_text()
    assert not list(bag.parent.glob(".*partial*"))
