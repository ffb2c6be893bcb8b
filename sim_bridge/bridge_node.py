"""Sim bridge node: replays an ISAR-format scene as ROS topics (``isar_sim_bridge``).

Per frame, all with one identical stamp (sim time = ``start_time_s`` + frame index / 30 s, the scene's
own timing, whatever the replay rate): ``image`` (rgb8), ``depth`` (16UC1, mm), ``camera_info``,
``camera_pose`` (PoseStamped of the optical frame in ``world_frame``; also TF where tf2_ros is
installed), ``ground_truth`` (16UC1 instance ids, optional) and ``/clock``.

Sources: a scene folder (``data``, ``task``, ``split``, ``scene``) or a scene bag (``bag``) written by
``isar-ros bag export`` - the same topics either way; a train bag's prompts come from its prompt topics.

Replay control: ``rate_hz``, ``loop``, ``~/pause`` (std_srvs/SetBool), ``~/step`` (std_srvs/Trigger,
one frame while paused), and ``pace_topic``: publish the next frame only once an
InstanceSegmentation with the current stamp came back (or ``pace_timeout_s`` passed) - a lockstep
replay that drops nothing, for scoring. ``teach`` = single_shot / multi_shot replays the train
scene's prompts as ``TeachObject`` calls to ``teach_service`` (object name = ISAR id) before playing.

Live rendering through habitat-sim is not offered here: it cannot be installed on these machines.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point32, PoseStamped, Quaternion
from isar_ros_msgs.msg import InstanceSegmentation
from isar_ros_msgs.msg import Prompt as PromptMsg
from isar_ros_msgs.srv import TeachObject
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.duration import Duration
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, RegionOfInterest
from std_msgs.msg import Header
from std_srvs.srv import SetBool, Trigger

from isar_ros.core.geometry import PinholeCamera, matrix_to_quaternion_xyzw
from isar_ros.errors import ConfigurationError
from isar_ros.isar.dataset import IsarDataset
from isar_ros.isar.layout import MODES, SPLITS
from isar_ros.isar.rules import object_name
from isar_ros.msgio import timing, topics
from isar_ros.msgio.image_codec import numpy_to_image
from isar_ros.ros import qos, services
from isar_ros.ros.node_main import run_node
from isar_ros.ros.parameters import NodeParameters
from isar_ros.settings import setting, specs
from sim_bridge.bags import BagScene

TEACH_TIMEOUT_S = (
    120.0  # one TeachObject answer; a lost one is logged and skipped instead of hanging the replay
)

REPLAY_QOS = qos.REPLAY


def stamp_at(seconds: float) -> Time:
    sec, nanosec = timing.split_seconds(seconds)
    return Time(sec=sec, nanosec=nanosec)


def camera_info(intrinsics: PinholeCamera, header: Header) -> CameraInfo:
    info = CameraInfo(
        header=header, width=intrinsics.width, height=intrinsics.height, distortion_model="plumb_bob"
    )
    info.k = [intrinsics.fx, 0.0, intrinsics.cx, 0.0, intrinsics.fy, intrinsics.cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [
        intrinsics.fx,
        0.0,
        intrinsics.cx,
        0.0,
        0.0,
        intrinsics.fy,
        intrinsics.cy,
        0.0,
        0.0,
        0.0,
        1.0,
        0.0,
    ]
    info.d = [0.0] * 5
    return info


def pose_msg(T: np.ndarray, header: Header) -> PoseStamped:
    x, y, z, w = matrix_to_quaternion_xyzw(T[:3, :3])
    msg = PoseStamped(header=header)
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in T[:3, 3])
    msg.pose.orientation = Quaternion(x=float(x), y=float(y), z=float(z), w=float(w))
    return msg


def teach_requests(scene, mode: str, start_time_s: float):
    """(isar id, TeachObject.Request) per prompted frame and object, in frame order (images attached)."""
    for name, prompts in scene.prompts(mode).items():
        frame = scene.frame_by_name(name)
        header = Header(
            stamp=stamp_at(timing.frame_seconds(frame.index, start_time_s)), frame_id="camera_optical"
        )
        image = numpy_to_image(frame.rgb(), "rgb8", header=header)
        for p in prompts:
            x0, y0, x1, y1 = p.box_xyxy
            prompt = PromptMsg(
                header=header,
                points=[Point32(x=float(p.point_xy[0]), y=float(p.point_xy[1]))],
                labels=[1],
                has_box=True,
                box=RegionOfInterest(x_offset=x0, y_offset=y0, width=x1 - x0 + 1, height=y1 - y0 + 1),
            )
            yield (
                p.object_id,
                TeachObject.Request(name=object_name(p.object_id), prompts=[prompt], image=image),
            )


def find_scene(data: str, task_name: str, split: str, wanted: str):
    dataset = IsarDataset(data)
    task = dataset.task(task_name) if task_name else dataset.tasks[0]
    scenes = task.train_scenes if split == "train" else task.test_scenes
    matches = [s for s in scenes if s.name == wanted] if wanted else scenes[:1]
    if not matches:
        raise ConfigurationError(
            f"no {split} scene {wanted!r} in task {task.name}; scenes: {[s.name for s in scenes]}"
        )
    return matches[0]


@dataclass
class SimBridgeSettings:
    data: str = setting("data/isar_demo", "ISAR-format dataset folder")
    task: str = setting("", "task folder name (empty: the first)")
    split: str = setting("test", "train or test", choices=SPLITS)
    scene: str = setting("", "scene folder name (empty: the first of the split)")
    bag: str = setting("", "a scene bag written by `isar-ros bag export`; replaces data/task/split/scene")
    rate_hz: float = setting(
        timing.SCENE_FPS, "frames published per second of wall time", low=0.01, high=10000.0
    )
    loop: bool = setting(False, "start again after the last frame")
    paused: bool = setting(False, "start paused (~/pause false to play, ~/step for one frame)")
    publish_ground_truth: bool = setting(True, "publish ground_truth (16UC1 instance ids)")
    frame_id: str = setting("camera_optical", "frame of the camera (optical axes)")
    world_frame: str = setting("world", "fixed frame of camera_pose")
    start_time_s: float = setting(timing.REPLAY_START_S, "sim time of frame 0, seconds", low=0.0, high=1e9)
    teach: str = setting(
        "none",
        "none, single_shot or multi_shot: replay the train prompts as TeachObject calls",
        choices=("none", *MODES),
    )
    teach_service: str = setting("/isar_teach/teach", "TeachObject service to call")
    play: bool = setting(True, "publish the frames (false: only teach)")
    exit_when_done: bool = setting(False, "shut down after the last frame (and teaching)")
    pace_topic: str = setting(
        "", "InstanceSegmentation topic to wait for before the next frame (empty: free-running)"
    )
    pace_timeout_s: float = setting(5.0, "longest wait for the paced answer, seconds", low=0.0, high=3600.0)


class SimBridgeNode(Node):
    def __init__(self) -> None:
        super().__init__(topics.SIM_BRIDGE_NODE)
        v = NodeParameters(self, specs(SimBridgeSettings)).values
        bag = v["bag"]
        self.scene = BagScene(bag) if bag else find_scene(v["data"], v["task"], v["split"], v["scene"])
        self.rate_hz, self.loop, self.paused = v["rate_hz"], v["loop"], v["paused"]
        self.publish_gt, self.frame_id, self.world_frame = (
            v["publish_ground_truth"],
            v["frame_id"],
            v["world_frame"],
        )
        self.start_time_s, self.teach_mode, self.teach_service = (
            v["start_time_s"],
            v["teach"],
            v["teach_service"],
        )
        self.play, self.exit_when_done = v["play"], v["exit_when_done"]
        pace_topic, self.pace_timeout_s = v["pace_topic"], v["pace_timeout_s"]
        self.intrinsics = self.scene.intrinsics

        self.image_pub = self.create_publisher(Image, topics.IMAGE, REPLAY_QOS)
        self.depth_pub = self.create_publisher(Image, topics.DEPTH, REPLAY_QOS)
        self.info_pub = self.create_publisher(CameraInfo, topics.CAMERA_INFO, REPLAY_QOS)
        self.pose_pub = self.create_publisher(PoseStamped, topics.CAMERA_POSE, REPLAY_QOS)
        self.gt_pub = self.create_publisher(Image, topics.GROUND_TRUTH, REPLAY_QOS)
        self.clock_pub = self.create_publisher(Clock, topics.CLOCK, REPLAY_QOS)
        self.tf = self._tf_broadcaster()
        calls = ReentrantCallbackGroup()
        self.create_service(SetBool, "~/pause", self.on_pause, callback_group=calls)
        self.create_service(Trigger, "~/step", self.on_step, callback_group=calls)
        self.teach_client = self.create_client(TeachObject, self.teach_service, callback_group=calls)
        self.pace_answered = threading.Event()
        self.waiting_for: Time | None = None
        self.paced, self.pace_topic = bool(pace_topic), pace_topic
        if pace_topic:
            self.create_subscription(
                InstanceSegmentation, pace_topic, self.on_paced_answer, REPLAY_QOS, callback_group=calls
            )
        self.index, self.loops, self.published = 0, 0, 0
        self.step_requested = False
        self.done = threading.Event()
        self.ready_to_play = threading.Event()
        self.create_timer(1.0 / self.rate_hz, self.tick, callback_group=MutuallyExclusiveCallbackGroup())
        threading.Thread(target=self._teach_then_play, daemon=True).start()
        source = f"bag {bag}" if bag else f"{self.scene.task_name}/{self.scene.split}/{self.scene.name}"
        self.get_logger().info(f"replaying {source} ({len(self.scene)} frames) at {self.rate_hz:g} Hz")

    def _tf_broadcaster(self):
        try:
            from tf2_ros import TransformBroadcaster
        except ImportError:
            return None  # tf2_ros is not on PyPI; camera_pose carries the same pose
        return TransformBroadcaster(self)

    # ---- teaching ---------------------------------------------------------------------------------
    def _teach_then_play(self) -> None:
        if self.teach_mode != "none":
            if not services.wait_until_ready(self.teach_client, timeout=30.0):
                self.get_logger().error(
                    f"teach service {self.teach_service} is not available; nothing taught"
                )
            else:
                taught: dict[int, int] = {}
                for isar_id, request in teach_requests(self.scene, self.teach_mode, self.start_time_s):
                    request.object_id = taught.get(isar_id, 0)
                    try:
                        response = services.call(self.teach_client, request, timeout=TEACH_TIMEOUT_S)
                    except TimeoutError as error:
                        self.get_logger().error(f"teaching object {isar_id}: {error}; going on without it")
                        continue
                    if response.success:
                        taught[isar_id] = response.object_id
                    else:
                        self.get_logger().error(f"teaching object {isar_id} failed: {response.message}")
                self.get_logger().info(
                    f"taught {len(taught)} objects from {self.scene.name} ({self.teach_mode})"
                )
        self.ready_to_play.set()
        if not self.play:
            self.finish()

    # ---- playback ---------------------------------------------------------------------------------
    def on_paced_answer(self, msg: InstanceSegmentation) -> None:
        if self.waiting_for is not None and msg.header.stamp == self.waiting_for:
            self.pace_answered.set()

    def tick(self) -> None:
        if not self.ready_to_play.is_set() or self.done.is_set():
            return
        if self.paused and not self.step_requested:
            return
        if self.paced and (
            self.image_pub.get_subscription_count() == 0 or self.count_publishers(self.pace_topic) == 0
        ):
            # lockstep: wait until discovery has matched the image's subscriber and the answering publisher
            return
        if self.waiting_for is not None and not self.pace_answered.wait(timeout=self.pace_timeout_s):
            self.get_logger().warn(
                f"no answer for frame {self.index - 1} within {self.pace_timeout_s} s; going on"
            )
        self.step_requested = False
        if self.index >= len(self.scene):
            if not self.loop:
                self.finish()
                return
            self.index, self.loops = 0, self.loops + 1
        self.publish_frame(self.index)
        self.index += 1

    def publish_frame(self, index: int) -> None:
        frame = self.scene.frame(index)
        seconds = timing.frame_seconds(self.loops * len(self.scene) + index, self.start_time_s)
        stamp = stamp_at(seconds)
        header = Header(stamp=stamp, frame_id=self.frame_id)
        self.clock_pub.publish(Clock(clock=stamp))
        self.info_pub.publish(camera_info(self.intrinsics, header))
        pose = frame.pose_optical()
        if pose is not None:
            self.pose_pub.publish(pose_msg(pose, Header(stamp=stamp, frame_id=self.world_frame)))
            if self.tf is not None:
                self._send_tf(pose, stamp)
        depth = frame.depth_mm()
        if depth is not None:
            self.depth_pub.publish(numpy_to_image(depth, "16UC1", header=header))
        if self.publish_gt:
            gt = frame.ground_truth()
            if gt is not None:
                self.gt_pub.publish(
                    numpy_to_image(np.clip(gt, 0, 65535).astype(np.uint16), "16UC1", header=header)
                )
        self.pace_answered.clear()
        self.waiting_for = stamp if self.paced else None
        self.image_pub.publish(numpy_to_image(frame.rgb(), "rgb8", header=header))
        self.published += 1

    def _send_tf(self, pose: np.ndarray, stamp: Time) -> None:
        from geometry_msgs.msg import TransformStamped

        msg = pose_msg(pose, Header())
        t = TransformStamped()
        t.header.stamp, t.header.frame_id, t.child_frame_id = stamp, self.world_frame, self.frame_id
        t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = (
            msg.pose.position.x,
            msg.pose.position.y,
            msg.pose.position.z,
        )
        t.transform.rotation = msg.pose.orientation
        self.tf.sendTransform(t)

    def finish(self) -> None:
        self.done.set()
        self.get_logger().info(f"done: published {self.published} frames")
        if self.exit_when_done:
            for publisher in (
                self.image_pub,
                self.depth_pub,
                self.info_pub,
                self.pose_pub,
                self.gt_pub,
                self.clock_pub,
            ):
                publisher.wait_for_all_acked(Duration(seconds=2.0))  # deliver the last frames before leaving
            rclpy.try_shutdown()  # ends spin in main()

    def on_pause(self, request: SetBool.Request, response: SetBool.Response):
        self.paused = request.data
        response.success, response.message = True, "paused" if self.paused else "playing"
        return response

    def on_step(self, _request, response: Trigger.Response):
        self.step_requested = True
        response.success, response.message = True, f"stepping to frame {self.index}"
        return response


def main(args=None) -> int:
    return run_node(SimBridgeNode, lambda: MultiThreadedExecutor(num_threads=3), args=args)


if __name__ == "__main__":
    raise SystemExit(main())
