"""The end-to-end demo through the real nodes: teach from train prompts, find in test scenes, score.

For each mode and task: a fresh teach node starts with an empty memory; a sim bridge process
replays each train scene's prompts as TeachObject calls to the teach node; then, for each test
scene, the inference node's temporal state is reset and a sim bridge replays the scene in lockstep
with the inference node (the next frame goes out when the segmentation of the last one came back:
no frame is dropped), while this process records every published InstanceSegmentation. The
recordings are scored with the ISAR metric, exactly as ``isar-ros benchmark`` scores a method.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from isar_ros.isar.dataset import MODES, IsarDataset
from isar_ros.isar.rules import isar_id_of
from isar_ros.isar.runner import BenchmarkResult, SceneRecord, score_scene
from isar_ros.msgio import timing, topics
from isar_ros.ros.environment import pick_domain_id, ros_environment
from isar_ros.ros.launcher import Graph, NodeFailed, NodeSpec

INSTANCES_TOPIC = topics.absolute(topics.INFERENCE_NODE, topics.INSTANCES)


class DemoClient:
    """This process's own ROS node: service clients, and the recorder of published segmentations."""

    def __init__(self):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticStatus
        from isar_ros_msgs.msg import InstanceSegmentation
        from isar_ros_msgs.srv import ListObjects
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from std_srvs.srv import Trigger

        self.rclpy = rclpy
        self.node = rclpy.create_node("isar_demo")
        self.list_client = self.node.create_client(ListObjects, "/isar_teach/list")
        self.reset_client = self.node.create_client(Trigger, "/isar_inference/reset")
        self.ListRequest, self.TriggerRequest = ListObjects.Request, Trigger.Request
        self.ready_clients: set = set()
        self.lock = threading.Lock()
        self.recording: dict[tuple[int, int], tuple[np.ndarray, int, float]] | None = None
        self.inference_memory_version = -1
        self.instances_readers = 0  # subscriptions the inference node's instances publisher has matched
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(InstanceSegmentation, INSTANCES_TOPIC, self.on_instances, reliable)
        self.node.create_subscription(DiagnosticStatus, "/isar_inference/status", self.on_status, 10)
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def on_instances(self, msg) -> None:
        from isar_ros.msgio.image_codec import image_to_numpy

        with self.lock:
            if self.recording is not None:
                key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
                self.recording[key] = (
                    image_to_numpy(msg.label_image),
                    msg.memory_version,
                    time.perf_counter(),
                )

    def on_status(self, msg) -> None:
        values = {kv.key: kv.value for kv in msg.values}
        self.inference_memory_version = int(values.get("memory_version", -1))
        self.instances_readers = int(values.get("instances_subscribers", 0))

    def call(self, client, request, timeout: float = 60.0):
        from isar_ros.ros import services

        # A new client's first request waits for discovery to settle. Later servers of the same name (a
        # fresh teach node per task) are called only seconds after they started, when discovery is done.
        ready = (
            client.wait_for_service(timeout_sec=timeout)
            if client in self.ready_clients
            else services.wait_until_ready(client, timeout)
        )
        if not ready:
            raise TimeoutError(
                f"service {client.srv_name} did not come up within {timeout:.0f} s (see the node logs)"
            )
        self.ready_clients.add(client)
        return services.call(client, request, timeout)

    def objects(self):
        response = self.call(self.list_client, self.ListRequest())
        return response.memory_version, {o.object_id: o.name for o in response.objects}

    def wait_for_inference_memory(self, version: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.inference_memory_version != version:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the inference node did not get memory version {version} within {timeout:.0f} s"
                )
            time.sleep(0.05)

    def wait_for_instances_readers(self, count: int, timeout: float = 30.0) -> None:
        """Until the inference node's instances publisher has matched ``count`` subscriptions (its status
        says so). This process seeing a new subscriber is not enough: the publisher discovers it on its own
        time, and what it sends before that is lost to that subscriber (a recorder saw none of a fast
        scene's answers)."""
        deadline = time.monotonic() + timeout
        while self.instances_readers < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the inference node's {INSTANCES_TOPIC} reached {self.instances_readers} of {count} "
                    f"subscribers after {timeout:.0f} s"
                )
            time.sleep(0.05)

    def start_recording(self) -> None:
        self.call(self.reset_client, self.TriggerRequest())
        with self.lock:
            self.recording = {}

    def stop_recording(self) -> dict:
        with self.lock:
            recorded, self.recording = self.recording, None
        return recorded or {}

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=10.0)  # before rclpy goes, or the process can abort at exit
        self.node.destroy_node()


def source(data: Path, bags: Path | None, task: str, split: str, scene: str) -> dict:
    """Sim bridge parameters for one scene: its folder, or its bag when ``bags`` is given."""
    if bags is not None:
        return {"bag": str(bags / task / split / scene)}
    return {"data": str(data), "task": task, "split": split, "scene": scene}


def run_demo(
    data: Path,
    out: Path,
    modes=MODES,
    tasks=None,
    log=print,
    bags: Path | None = None,
    record: Path | None = None,
) -> BenchmarkResult:
    """Run the demo graph over ``data``; returns the scores (reports are written by the caller).

    ``bags``: replay the scenes from bags written by ``isar-ros bag export-all`` into that folder
    (``<bags>/<task>/<split>/<scene>``) instead of the scene folders; scoring still uses ``data``.
    ``record``: also record each test scene's InstanceSegmentation messages into
    ``<record>/<mode>/<task>/<scene>`` bags (``isar-ros benchmark --recorded`` scores them).
    """
    import rclpy

    dataset = IsarDataset(data)
    env = ros_environment(
        localhost_only=True, domain_id=int(os.environ.get("ISAR_DEMO_DOMAIN_ID", 0)) or pick_domain_id()
    )
    os.environ.update(env)
    out.mkdir(parents=True, exist_ok=True)
    result = BenchmarkResult("isar_ros (ROS nodes)", str(data))
    sheet: list[np.ndarray] = []
    rclpy.init()
    client = DemoClient()
    try:
        with Graph(env, log_dir=out / "logs") as graph:
            graph.start(NodeSpec("inference_node", {"image_reliability": "reliable", "status_period_s": 0.2}))
            log(f"nodes started (ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, logs in {out / 'logs'})")
            chosen = [dataset.task(t) for t in tasks] if tasks else dataset.tasks
            for mode in modes:
                for task in chosen:
                    started = time.perf_counter()
                    # A fresh teach node and memory per task and mode (as the benchmark starts each task
                    # from an empty memory); the inference node stays and picks up each new memory.
                    memory_dir = out / "memory" / mode / task.name
                    shutil.rmtree(memory_dir, ignore_errors=True)
                    teach = graph.start(
                        NodeSpec("teach_node", {"memory_dir": str(memory_dir)}),
                        name=f"teach_node_{mode}_{task.name}",
                    )
                    for scene in task.train_scenes:
                        bridge = graph.start(
                            NodeSpec(
                                "sim_bridge_node",
                                {
                                    **source(data, bags, task.name, "train", scene.name),
                                    "teach": mode,
                                    "play": False,
                                    "exit_when_done": True,
                                },
                            ),
                            name=f"teach_{mode}_{task.name}_{scene.name}",
                        )
                        if bridge.wait(timeout=600) != 0:
                            raise NodeFailed(f"teaching from {scene.name} failed; see {bridge.log_path}")
                    version, objects = client.objects()
                    teach.stop()  # the memory stays on the inference node (and on disk)
                    to_isar = np.zeros(max(objects, default=0) + 1, np.int64)
                    for object_id, name in objects.items():
                        to_isar[object_id] = isar_id_of(name)
                    client.wait_for_inference_memory(version)
                    result.train_seconds[mode] = (
                        result.train_seconds.get(mode, 0.0) + time.perf_counter() - started
                    )
                    log(f"{mode} {task.name}: taught {len(objects)} objects")
                    for scene in task.test_scenes:
                        recorder = None
                        if record is not None:
                            target = record / mode / task.name / scene.name
                            shutil.rmtree(target, ignore_errors=True)
                            target.parent.mkdir(parents=True, exist_ok=True)
                            recorder = graph.start(
                                [
                                    sys.executable,
                                    "-m",
                                    "isar_ros.cli",
                                    "bag",
                                    "record",
                                    "--out",
                                    str(target),
                                    "--task",
                                    task.name,
                                    "--scene",
                                    scene.name,
                                    "--mode",
                                    mode,
                                    "--start-time",
                                    str(timing.REPLAY_START_S),
                                ],
                                name=f"record_{mode}_{task.name}_{scene.name}",
                            )
                            client.wait_for_instances_readers(2)  # this process and the recorder
                        client.start_recording()
                        bridge = graph.start(
                            NodeSpec(
                                "sim_bridge_node",
                                {
                                    **source(data, bags, task.name, "test", scene.name),
                                    "rate_hz": 200.0,
                                    "pace_topic": INSTANCES_TOPIC,
                                    "publish_ground_truth": False,
                                    "exit_when_done": True,
                                    "start_time_s": timing.REPLAY_START_S,
                                },
                            ),
                            name=f"play_{mode}_{task.name}_{scene.name}",
                        )
                        if bridge.wait(timeout=900) != 0:
                            raise NodeFailed(f"replaying {scene.name} failed; see {bridge.log_path}")
                        time.sleep(0.3)  # the last answer may still be in flight
                        recorded = client.stop_recording()
                        if recorder is not None:
                            recorder.stop()  # SIGINT: the bag is closed and complete
                        predictions = {
                            scene.frame_names[timing.frame_index(k)]: to_isar[labels]
                            for k, (labels, _, _) in recorded.items()
                            if 0 <= timing.frame_index(k) < len(scene)
                        }
                        arrivals = sorted(t for _, _, t in recorded.values())
                        score = score_scene(scene, task.semantic_ids, predictions.items())
                        # throughput of the graph: frames answered between the first and the last answer
                        seconds = (
                            (arrivals[-1] - arrivals[0]) * len(arrivals) / max(len(arrivals) - 1, 1)
                            if len(arrivals) > 1
                            else math.nan
                        )
                        score.seconds = seconds
                        result.modes.setdefault(mode, []).append(
                            SceneRecord(task.name, scene.name, scene.attributes, score)
                        )
                        log(
                            f"  {scene.name}: {len(predictions)}/{len(scene)} frames answered, mIoU "
                            f"{score.miou_nan_skipping:.3f}, "
                            f"{len(scene) / seconds:.1f} frames/s"
                        )
                        if mode == modes[-1]:
                            sheet.append(contact_tile(scene, predictions, to_isar))
    finally:
        client.close()
        rclpy.try_shutdown()
    if sheet:
        cv2.imwrite(str(out / "contact_sheet.png"), np.vstack(sheet)[..., ::-1])
    return result


def contact_tile(scene, predictions: dict, to_isar: np.ndarray, count: int = 4) -> np.ndarray:
    """A row of ``count`` frames of a scene with the recorded predictions overlaid (RGB)."""
    from isar_ros.core.visualize import overlay

    names = [scene.frame_names[i] for i in np.linspace(0, len(scene) - 1, count).astype(int)]
    tiles = []
    for name in names:
        rgb = scene.frame_by_name(name).rgb()
        labels = predictions.get(name, np.zeros(rgb.shape[:2], np.int64))
        tile = overlay(rgb, labels.astype(np.int64), {int(i): str(i) for i in np.unique(labels) if i})
        tiles.append(cv2.resize(tile, (320, int(320 * rgb.shape[0] / rgb.shape[1]))))
    row = np.hstack(tiles)
    cv2.putText(row, scene.name, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return row
