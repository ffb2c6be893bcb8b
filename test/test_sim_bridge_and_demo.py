"""The sim bridge replays scenes exactly; the demo through the nodes scores exactly as the benchmark."""

import json
import subprocess
import sys

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped
from ros_client import RosClient, wait_until
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import SetBool, Trigger

from isar_ros.isar import registry
from isar_ros.isar.dataset import IsarDataset
from isar_ros.isar.runner import run_benchmark
from isar_ros.msgio.image_codec import image_to_numpy
from isar_ros.ros.launcher import Graph, NodeSpec

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture
def client():
    rclpy.init()
    ros = RosClient("bridge_test_client")
    yield ros
    ros.close()
    rclpy.shutdown()


def run_demo(data, out, task, *extra) -> subprocess.CompletedProcess:
    """`isar-ros demo` in multi-shot on one task of ``data``, outputs into ``out``."""
    command = [
        sys.executable,
        "-m",
        "isar_ros.cli",
        "demo",
        "--data",
        str(data),
        "--out",
        str(out),
        "--mode",
        "multi_shot",
    ]
    return subprocess.run([*command, "--task", task, *extra], capture_output=True, text=True, timeout=600)


def stamp(msg):
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def test_bridge_steps_and_plays_a_scene_exactly(client, tiny_dataset, tmp_path):
    task = IsarDataset(tiny_dataset).tasks[0]
    scene = task.test_scenes[0]
    topics = {
        "/image": Image,
        "/depth": Image,
        "/camera_info": CameraInfo,
        "/camera_pose": PoseStamped,
        "/ground_truth": Image,
    }
    for topic, kind in topics.items():
        client.listen(topic, kind)
    client.listen("/clock", Clock)
    with Graph(log_dir=tmp_path) as graph:
        bridge = graph.start(
            NodeSpec(
                "sim_bridge_node",
                {
                    "data": str(tiny_dataset),
                    "task": task.name,
                    "scene": scene.name,
                    "paused": True,
                    "exit_when_done": True,
                    "rate_hz": 60.0,
                },
            )
        )
        wait_until(
            lambda: all(client.node.count_publishers(t) for t in topics), 30, "the bridge's publishers"
        )
        for step in range(1, 4):
            assert client.call("/isar_sim_bridge/step", Trigger, Trigger.Request()).success
            wait_until(lambda step=step: len(client.messages("/image")) >= step, 30, "a stepped frame")
        assert len(client.messages("/image")) == 3  # paused: one frame per step, no more
        for index in range(3):
            frame = scene.frame(index)
            stamps = {t: stamp(client.messages(t)[index]) for t in topics}
            assert len(set(stamps.values())) == 1  # one stamp for all of a frame's messages
            assert (
                client.messages("/clock")[index].clock.sec,
                client.messages("/clock")[index].clock.nanosec,
            ) == stamps["/image"]
            np.testing.assert_array_equal(image_to_numpy(client.messages("/image")[index]), frame.rgb())
            np.testing.assert_array_equal(image_to_numpy(client.messages("/depth")[index]), frame.depth_mm())
            np.testing.assert_array_equal(
                image_to_numpy(client.messages("/ground_truth")[index]), frame.ground_truth()
            )
            info = client.messages("/camera_info")[index]
            assert (info.width, info.height, info.k[0], info.k[2]) == (320, 180, 160.0, 160.0)
            pose = client.messages("/camera_pose")[index].pose
            np.testing.assert_allclose(
                [pose.position.x, pose.position.y, pose.position.z], frame.pose()[:3, 3], atol=1e-9
            )
        times = [stamp(m)[0] + stamp(m)[1] * 1e-9 for m in client.messages("/image")]
        np.testing.assert_allclose(np.diff(times), 1 / 30, atol=1e-6)  # the scene's 30 fps timing
        assert client.call("/isar_sim_bridge/pause", SetBool, SetBool.Request(data=False)).success
        assert bridge.wait(timeout=60) == 0  # played to the end and exited
    try:
        wait_until(lambda: len(client.messages("/image")) == len(scene), 10, "every frame")
    except AssertionError:
        got = [round((stamp(m)[0] + stamp(m)[1] * 1e-9 - 1000.0) * 30) for m in client.messages("/image")]
        raise AssertionError(f"frames received: {got}") from None


def test_demo_through_the_nodes_scores_exactly_as_the_benchmark(tiny_dataset, tmp_path):
    task = IsarDataset(tiny_dataset).tasks[0].name
    out = tmp_path / "demo"
    run = run_demo(tiny_dataset, out, task)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "| multi_shot |" in run.stdout and (out / "contact_sheet.png").stat().st_size > 10_000
    demo = json.loads((out / "results.json").read_text())
    benchmark = run_benchmark(
        IsarDataset(tiny_dataset), registry.create("isar_ros"), ["multi_shot"], [task], progress=False
    )
    assert demo == json.loads(json.dumps(benchmark.official()))  # every frame's IoU, every ratio
    scene = next(iter(demo["multi_object"]["multi_shot"].values()))
    assert any(
        iou > 0.3 for ious in scene["iou_detailed"].values() for iou in ious.values()
    )  # not trivially empty


def test_replaying_exported_bags_scores_as_replaying_the_folders(tiny_dataset, tmp_path):
    from sim_bridge.bags import export_dataset

    task = IsarDataset(tiny_dataset).tasks[0].name
    export_dataset(tiny_dataset, tmp_path / "bags", progress=False)
    runs = {}
    recorded = tmp_path / "recorded"
    for name, extra in {
        "folders": [],
        "bags": ["--bags", str(tmp_path / "bags"), "--record", str(recorded)],
    }.items():
        out = tmp_path / name
        run = run_demo(tiny_dataset, out, task, *extra)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        runs[name] = json.loads((out / "results.json").read_text())
    assert runs["bags"] == runs["folders"]
    # the outputs recorded into bags during the bag replay score the same with `isar-ros benchmark --recorded`
    bags = sorted(str(p) for p in recorded.glob("multi_shot/*/*") if p.is_dir())
    assert bags
    out = tmp_path / "scored"
    args = [
        sys.executable,
        "-m",
        "isar_ros.cli",
        "benchmark",
        "--data",
        str(tiny_dataset),
        "--out",
        str(out),
        "--quiet",
    ]
    run = subprocess.run(
        args + [a for bag in bags for a in ("--recorded", bag)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert json.loads((out / "results.json").read_text()) == runs["bags"]


def test_bridge_replays_an_imported_davis_sequence(client, tmp_path):
    """An imported real video (no depth, no poses) plays like any ISAR scene: every frame, in order."""
    from test_importers import write_davis

    from isar_ros.isar import importers

    write_davis(tmp_path / "davis", {"bear": 25, "car": 25})
    out = tmp_path / "isar"
    importers.import_videos(
        importers.davis_videos(tmp_path / "davis"), out, importers.ImportOptions(train_frames=12)
    )
    scene = next(s for s in IsarDataset(out).task("bear").test_scenes if s.name == "test")
    client.listen("/davis/image", Image)
    with Graph(log_dir=tmp_path / "logs") as graph:
        bridge = graph.start(
            NodeSpec(
                "sim_bridge_node",
                {
                    "data": str(out),
                    "task": "bear",
                    "scene": "test",
                    "rate_hz": 60.0,
                    "paused": True,
                    "exit_when_done": True,
                },
                namespace="davis",
            )
        )
        wait_until(
            lambda: client.node.count_publishers("/davis/image") > 0, 30, "the bridge's image publisher"
        )
        assert client.call("/davis/isar_sim_bridge/pause", SetBool, SetBool.Request(data=False)).success
        assert bridge.wait(timeout=120) == 0
    images = client.messages("/davis/image")
    assert len(images) == len(scene) == 13
    np.testing.assert_array_equal(image_to_numpy(images[5]), scene.frame(5).rgb())
