"""Inference node: camera images in, instance segmentations out (``isar_inference``, a lifecycle node).

Always works on the newest frame: the image callback only drops the frame into a one-slot mailbox
(a frame still waiting there when a newer one arrives is dropped and counted); a worker thread
takes the newest and runs the backbone, a second one (``pipeline``, the default) runs the instance
finder on it while the first already computes the next frame's features, and publishes
``~/instances`` (header = the image's), ``~/label_image`` (mono16) and ``~/overlay`` (rgb8, when
``publish_overlay``) while something subscribes to them, and ``~/camera_info`` (the camera's, stamped
like the outputs, for RViz and image_proc). A new memory arriving on ``memory`` is checked and swapped
in between two frames; a bad one is refused and the last good memory keeps serving.
Thresholds are parameters that can be changed at run time.

Health goes to ``/diagnostics`` (diagnostic_msgs/DiagnosticArray, what rqt_robot_monitor and
diagnostic_aggregator read) and ``~/status``, judged on the last few seconds: ERROR when images come
in and nothing goes out, WARN for bad frames, no images, no memory, or sim time without ``/clock``.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, fields, replace
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from isar_ros_msgs.msg import InstanceMemory, InstanceSegmentation, ObjectMap
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from isar_ros.core.backbones.factory import (
    create_backbone,
    intra_op_threads,
    use_intra_op_threads,
)
from isar_ros.core.frames import FrameBuffer, stamp_of
from isar_ros.core.geometry import FrameGeometry
from isar_ros.core.inference import InferenceConfig, InstanceFinder, ObjectModel
from isar_ros.core.mask_predictors import create_mask_predictor
from isar_ros.core.memory_snapshot import MemoryFormatError
from isar_ros.core.perception import PerceptionConfig
from isar_ros.core.stats import LatencyMeter, RateMeter, StagePacer
from isar_ros.core.visualize import overlay
from isar_ros.errors import UserError
from isar_ros.msgio import topics
from isar_ros.msgio.image_codec import depth_to_metres, numpy_to_image
from isar_ros.ros import qos
from isar_ros.ros.conversions import (
    camera_from_msg,
    markers,
    msg_to_snapshot,
    observations_msg,
    pose_from_msg,
    segmentation_to_msg,
)
from isar_ros.ros.lifecycle import ManagedNode
from isar_ros.ros.node_main import run_node
from isar_ros.settings import Spec, setting, specs

WINDOW_S = 5.0  # status is judged on this many recent seconds
FRAMES_KEPT = 10  # stamps of depth / camera_info / pose kept for pairing with images


@dataclass
class InferenceNodeSettings:
    publish_overlay: bool = setting(
        True, "publish ~/overlay (rgb8 with the found objects drawn) for RViz", runtime=True
    )
    pipeline: bool = setting(
        True,
        "two workers: the backbone of the next frame runs while this frame is post-processed and published",
    )
    torch_threads: int = setting(
        0,
        "threads per torch operation in this node (0: automatic - with the hand-crafted backbone on a CPU "
        "and the pipeline on, the cores divided between the two workers; else torch's default)",
        low=0,
        high=256,
    )
    image_reliability: str = setting(
        "best_effort",
        "QoS reliability of the camera subscriptions (image, depth, camera_info, pose)",
        choices=qos.IMAGE_RELIABILITY,
    )
    geometry_wait_s: float = setting(
        0.1,
        "a frame waits at most this long for the depth, camera_info and pose of its stamp (only for "
        "those of them that are being published)",
        runtime=True,
        low=0.0,
        high=5.0,
    )
    status_period_s: float = setting(
        1.0, "seconds between status messages", runtime=True, low=0.05, high=3600.0
    )
    memory_warning_s: float = setting(
        10.0,
        "warn when no memory has arrived this many seconds after start",
        runtime=True,
        low=0.0,
        high=3600.0,
    )


INFERENCE_FIELDS = {f.name for f in fields(InferenceConfig)}
BACKBONE_PARAMETERS = {
    "backbone",
    "device",
    "sam_checkpoint",
    "backend",
    "precision",
    "short_side",
    "compile",
}


def parameter_specs() -> list[Spec]:
    """The node's parameters (besides ``autostart``): its own settings, the finder's, the backbone's."""
    return (
        specs(InferenceNodeSettings) + specs(InferenceConfig) + specs(PerceptionConfig, BACKBONE_PARAMETERS)
    )


class InferenceNode(ManagedNode):
    def __init__(self) -> None:
        super().__init__(topics.INFERENCE_NODE, parameter_specs())
        self._running = False
        self._image_subscription: Any = None
        self.workers: list[threading.Thread] = []
        # Made here, not in configure: stopping after a failed configure uses it.
        self._wake = threading.Condition()
        # pipeline: a frame whose features are computed, waiting for the publishing worker (one slot)
        self._handoff: tuple[Image, float, Any, Any] | None = None

    # ---- lifecycle ----------------------------------------------------------------------------------
    def configure(self) -> None:
        values = self.params.values
        backbone = PerceptionConfig(**{k: values[k] for k in BACKBONE_PARAMETERS})
        threads = use_intra_op_threads(
            intra_op_threads(
                values["torch_threads"], backbone.backbone, backbone.device, 2 if values["pipeline"] else 1
            )
        )
        self.backbone = create_backbone(backbone.backbone, backbone.device, **backbone.backbone_kwargs())
        config = InferenceConfig(**{k: values[k] for k in INFERENCE_FIELDS})
        refiner = (
            create_mask_predictor("sam", values["sam_checkpoint"], values["device"])
            if config.refine == "sam"
            else None
        )
        self.finder = InstanceFinder(
            ObjectModel.empty(self.backbone.backbone_id, self.backbone.feature_dim, self.backbone.device),
            config,
            refiner,
        )
        self._pending_model: ObjectModel | None = None
        self._mailbox: tuple[Image, float] | None = None
        self.dropped = self.bad_frames = 0
        self.last_problem = ""
        self.memory_received = False
        self.started = time.monotonic()
        self.frames = FrameBuffer(FRAMES_KEPT)  # depth, camera_info and pose by stamp, paired with images
        self.last_info: CameraInfo | None = None
        self.input_rate, self.output_rate, self.bad_rate = (
            RateMeter(WINDOW_S),
            RateMeter(WINDOW_S),
            RateMeter(WINDOW_S),
        )
        self.latency = LatencyMeter(window_s=WINDOW_S)
        self.locate_ms = LatencyMeter(window_s=WINDOW_S)
        # Per frame: the backbone, and the node's own work beside it (the image's conversion, the finder,
        # pictures, publications; waiting for depth not counted).
        self.backbone_ms = LatencyMeter(window_s=WINDOW_S)
        self.outside_ms = LatencyMeter(window_s=WINDOW_S)
        self.instances_pub = self.create_lifecycle_publisher(
            InstanceSegmentation, topics.INSTANCES, qos.OUTPUTS
        )
        self.label_pub = self.create_lifecycle_publisher(Image, topics.LABEL_IMAGE, qos.OUTPUTS)
        self.overlay_pub = self.create_lifecycle_publisher(Image, topics.OVERLAY, qos.OUTPUTS)
        self.info_pub = self.create_lifecycle_publisher(CameraInfo, topics.OUTPUT_CAMERA_INFO, qos.OUTPUTS)
        self.status_pub = self.create_lifecycle_publisher(DiagnosticStatus, topics.STATUS, qos.OUTPUTS)
        self.diagnostics_pub = self.create_lifecycle_publisher(
            DiagnosticArray, topics.DIAGNOSTICS, qos.OUTPUTS
        )
        self.markers_pub = self.create_lifecycle_publisher(MarkerArray, topics.MARKERS, qos.OUTPUTS)
        self.observations_pub = self.create_lifecycle_publisher(
            ObjectMap, topics.OBSERVATIONS, qos.OBSERVATIONS
        )
        camera = qos.camera_qos(values["image_reliability"])  # the parts of a frame: as its image
        self._configured_subscriptions = [
            self.create_subscription(InstanceMemory, topics.MEMORY, self.on_memory, qos.MEMORY),
            self.create_subscription(CameraInfo, topics.CAMERA_INFO, self.on_camera_info, camera),
            self.create_subscription(Image, topics.DEPTH, lambda m: self._on_part("depth", m), camera),
            self.create_subscription(
                PoseStamped, topics.CAMERA_POSE, lambda m: self._on_part("pose", m), camera
            ),
        ]
        self._reset_service = self.create_service(Trigger, "~/reset", self.on_reset)
        self.status_timer = self.create_timer(values["status_period_s"], self.publish_status)
        self.get_logger().info(
            f"configured: backbone {self.backbone.backbone_id} on {self.backbone.device} "
            f"({threads} threads per torch operation); "
            f"waiting for a memory on {self.resolve_topic_name(topics.MEMORY)}"
        )

    def activate(self) -> None:
        qos_profile = qos.camera_qos(self.params.values["image_reliability"])
        self._image_subscription = self.create_subscription(Image, topics.IMAGE, self.on_image, qos_profile)
        self._running = True
        self._handoff = None
        self._pacer = StagePacer()
        if self.params.values["pipeline"]:
            self.workers = [
                threading.Thread(target=self._extract_work, name="isar_inference_features", daemon=True),
                threading.Thread(target=self._publish_work, name="isar_inference_publish", daemon=True),
            ]
        else:
            self.workers = [threading.Thread(target=self._work, name="isar_inference_worker", daemon=True)]
        for worker in self.workers:
            worker.start()

    def deactivate(self) -> None:
        self._stop_worker()
        if self._image_subscription is not None:
            self.destroy_subscription(self._image_subscription)
            self._image_subscription = None

    def cleanup(self) -> None:
        self.destroy_timer(self.status_timer)
        for subscription in self._configured_subscriptions:
            self.destroy_subscription(subscription)
        self.destroy_service(self._reset_service)
        for publisher in (
            self.instances_pub,
            self.label_pub,
            self.overlay_pub,
            self.info_pub,
            self.status_pub,
            self.diagnostics_pub,
            self.markers_pub,
            self.observations_pub,
        ):
            self.destroy_lifecycle_publisher(publisher)

    def on_parameters(self, changes: dict[str, Any]) -> None:
        config_changes = {k: v for k, v in changes.items() if k in INFERENCE_FIELDS}
        if config_changes:
            self.finder.config = replace(
                self.finder.config, **config_changes
            )  # read by the worker at the next frame
        if "status_period_s" in changes and hasattr(self, "status_timer"):
            self.destroy_timer(self.status_timer)
            self.status_timer = self.create_timer(changes["status_period_s"], self.publish_status)

    # ---- inputs -----------------------------------------------------------------------------------
    def on_image(self, msg: Image) -> None:
        self.input_rate.tick()
        with self._wake:
            if self._mailbox is not None:
                self.dropped += 1
            self._mailbox = (msg, time.monotonic())
            self._wake.notify_all()

    def on_camera_info(self, msg: CameraInfo) -> None:
        self.last_info = msg
        self._on_part("camera_info", msg)

    def _on_part(self, name: str, msg: Any) -> None:
        self.frames.add(stamp_of(msg.header), name, msg)

    def on_memory(self, msg: InstanceMemory) -> None:
        try:
            snapshot = msg_to_snapshot(msg)
            if snapshot.backbone_id != self.backbone.backbone_id:
                raise MemoryFormatError(
                    f"memory version {msg.version} was taught with backbone {snapshot.backbone_id!r}, "
                    f"this node runs {self.backbone.backbone_id!r}; start both nodes with the same backbone"
                )
            self._pending_model = ObjectModel(snapshot, self.backbone.device)
            self.memory_received = True
            self.get_logger().info(f"memory version {msg.version}: {len(snapshot.objects)} objects")
        except MemoryFormatError as error:
            self.get_logger().error(f"memory refused, still serving version {self.memory_version}: {error}")

    def on_reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.finder.reset()
        response.success, response.message = True, "temporal state cleared"
        return response

    # ---- the workers --------------------------------------------------------------------------------
    # One worker (pipeline: false) takes the newest frame, computes its features and publishes its
    # segmentation. With the pipeline, a features worker does the first half and hands the frame over
    # through a one-slot handoff (no computed frame is dropped), and a publishing worker does the rest:
    # frame t+1's backbone overlaps frame t's masks, overlay and publishing. The features worker takes
    # the newest frame only when the slot is free, and then as late as core.stats.StagePacer says, so
    # at most two frames are in flight. Frames are published in arrival order, each with exactly the
    # one-worker result.
    def _next_frame(self) -> tuple[Image, float] | None:
        with self._wake:
            while self._mailbox is None and self._running:
                self._wake.wait(timeout=0.5)
            if not self._running:
                return None
            taken, self._mailbox = self._mailbox, None
            return taken

    def _guarded(self, step: Any, *args: Any) -> Any:
        """``step(*args)``; a bad frame is counted and skipped (None), the stream goes on."""
        try:
            return step(*args)
        except UserError as error:
            self._skipped(f"frame skipped: {error}")
        except Exception as error:  # noqa: BLE001 - one bad frame must not stop the stream
            if self.context.ok():  # else shutting down: the publishers are gone, the frame is fine
                self._skipped(f"frame skipped after an unexpected error (a bug; please report it): {error!r}")
        return None

    def _work(self) -> None:
        while (taken := self._next_frame()) is not None:
            extracted = self._guarded(self._extract, *taken)
            if extracted is not None:
                self._guarded(self._publish, *extracted)

    def _extract_work(self) -> None:
        while True:
            with self._wake:
                while self._handoff is not None and self._running:
                    self._wake.wait(timeout=0.5)
                start = self._pacer.start_at()
                while self._running and time.monotonic() < start:
                    self._wake.wait(timeout=start - time.monotonic())
            if (taken := self._next_frame()) is None:
                return
            began = time.monotonic()
            extracted = self._guarded(self._extract, *taken)
            self._pacer.first_stage(time.monotonic() - began)
            if extracted is not None:
                with self._wake:
                    self._handoff = extracted
                    self._wake.notify_all()

    def _publish_work(self) -> None:
        while True:
            with self._wake:
                while self._handoff is None and self._running:
                    self._wake.wait(timeout=0.5)
                if not self._running:
                    return
                extracted, self._handoff = self._handoff, None
                self._pacer.taken(time.monotonic())
                self._wake.notify_all()
            self._guarded(self._publish, *extracted)
            self._pacer.done(time.monotonic())

    def _extract(self, msg: Image, arrived: float) -> tuple[Image, float, Any, Any, float]:
        """The image as RGB and its features; the seconds its conversion took."""
        start = time.perf_counter()
        rgb = self.camera_rgb(msg)
        converted = time.perf_counter()
        grid = self.backbone.extract(rgb)
        self.backbone_ms.add((time.perf_counter() - converted) * 1000)
        return msg, arrived, rgb, grid, converted - start

    def _skipped(self, problem: str) -> None:
        self.bad_frames += 1
        self.bad_rate.tick()
        self.last_problem = problem
        self.get_logger().error(problem, throttle_duration_sec=2.0)

    def _publish(self, msg: Image, arrived: float, rgb: Any, grid: Any, conversion_s: float) -> None:
        if self._pending_model is not None:  # a new memory is swapped in between two frames
            self.finder.set_model(self._pending_model)
            self._pending_model = None
        # depth, camera_info, pose of this image's stamp: those being published may still be on their way
        parts = self.frames.wait_for(stamp_of(msg.header), self.params.values["geometry_wait_s"])
        start = time.perf_counter()
        geometry, world_frame = self._geometry(msg, parts)
        segmentation = self.finder.find(grid, rgb, geometry)
        if geometry is not None:
            self.locate_ms.add(segmentation.timings_ms.get("locate", 0.0))
        instances = segmentation_to_msg(segmentation, msg.header, world_frame or "")
        self.instances_pub.publish(instances)
        # The label image and the overlay only while someone listens (no work for pictures nobody
        # shows); the instances always go out.
        if self.label_pub.get_subscription_count():
            self.label_pub.publish(instances.label_image)  # the same mono16 image, converted once
        if self.params.values["publish_overlay"] and self.overlay_pub.get_subscription_count():
            names = {i.object_id: f"{i.name} {i.score:.2f}" for i in segmentation.instances}
            self.overlay_pub.publish(
                numpy_to_image(overlay(rgb, segmentation.labels, names), "rgb8", header=msg.header)
            )
        if world_frame is not None and segmentation.instances:
            self.markers_pub.publish(markers(instances, world_frame or msg.header.frame_id, msg.header.stamp))
            if world_frame:
                self.observations_pub.publish(observations_msg(instances, world_frame))
        info = parts.get("camera_info") or self.last_info
        if info is not None and (info.width, info.height) == (msg.width, msg.height):
            info = copy.copy(info)  # the received message may be kept in the buffer: restamp a copy
            info.header = msg.header
            self.info_pub.publish(info)
        self.outside_ms.add((conversion_s + time.perf_counter() - start) * 1000)
        self.output_rate.tick()
        self.latency.add((time.monotonic() - arrived) * 1000)

    def _geometry(self, image: Image, parts: dict[str, Any]) -> tuple[FrameGeometry | None, str | None]:
        """Depth, intrinsics and pose of the image's stamp when depth and camera_info arrived (the pose is
        optional), and the world frame ("" without a pose); (None, None) without depth."""
        depth, info, pose = parts.get("depth"), parts.get("camera_info"), parts.get("pose")
        if depth is None or info is None:
            return None, None
        if (depth.width, depth.height) != (image.width, image.height):
            self.get_logger().warning(
                f"depth {depth.width}x{depth.height} is not the size of the image {image.width}x"
                f"{image.height}: no 3-D this frame; publish depth registered to the colour image "
                "(e.g. the camera driver's aligned_depth_to_color topic)",
                throttle_duration_sec=5.0,
            )
            return None, None
        T_world_camera = pose_from_msg(pose) if pose is not None else None
        geometry = FrameGeometry(depth_to_metres(depth), camera_from_msg(info), T_world_camera)
        return geometry, pose.header.frame_id if pose is not None else ""

    def _stop_worker(self) -> None:
        self._running = False
        with self._wake:
            self._wake.notify_all()
        for worker in self.workers:
            worker.join(timeout=5.0)
        self.workers = []

    # ---- status -------------------------------------------------------------------------------------
    @property
    def memory_version(self) -> int:
        """The newest accepted memory (swapped in before the next frame)."""
        return (self._pending_model or self.finder.model).version

    def health(self) -> tuple[int, str]:
        """(DiagnosticStatus level, message) from the last ``WINDOW_S`` seconds."""
        input_rate, output_rate, bad_rate = (
            self.input_rate.rate(),
            self.output_rate.rate(),
            self.bad_rate.rate(),
        )
        image_topic = self.resolve_topic_name(topics.IMAGE)
        if input_rate > 0 and output_rate == 0:
            return (
                DiagnosticStatus.ERROR,
                f"images arrive on {image_topic} but none is answered: {self.last_problem or 'busy'}",
            )
        if bad_rate > 0:
            return DiagnosticStatus.WARN, f"{bad_rate:.1f} bad frames/s: {self.last_problem}"
        if (
            not self.memory_received
            and time.monotonic() - self.started > self.params.values["memory_warning_s"]
        ):
            return DiagnosticStatus.WARN, (
                f"no memory on {self.resolve_topic_name(topics.MEMORY)} yet; is a teach node "
                "running in the same namespace?"
            )
        if self.get_parameter("use_sim_time").value and self.get_clock().now().nanoseconds == 0:
            return DiagnosticStatus.WARN, "use_sim_time is true but nothing is published on /clock"
        if input_rate == 0:
            return DiagnosticStatus.WARN, f"no images on {image_topic} in the last {WINDOW_S:g} s"
        return DiagnosticStatus.OK, "running"

    def publish_status(self) -> None:
        level, message = self.health()
        if level != DiagnosticStatus.OK:
            self.get_logger().warning(message, throttle_duration_sec=10.0)
        p50, p90 = self.latency.percentiles(50, 90)
        values = {
            "input_rate_hz": f"{self.input_rate.rate():.2f}",
            "output_rate_hz": f"{self.output_rate.rate():.2f}",
            "latency_ms_p50": f"{p50:.1f}",
            "latency_ms_p90": f"{p90:.1f}",
            "dropped_frames": str(self.dropped),
            "bad_frames": str(self.bad_frames),
            "frames_out": str(self.output_rate.count),
            "memory_version": str(self.memory_version),
            "objects": str(len(self._pending_model or self.finder.model)),
            "device": str(self.backbone.device),
            "backbone": self.backbone.backbone_id,
            "locate_ms_p50": f"{self.locate_ms.percentiles(50)[0]:.1f}",
            "backbone_ms_p50": f"{self.backbone_ms.percentiles(50)[0]:.1f}",
            "outside_backbone_ms_p50": f"{self.outside_ms.percentiles(50)[0]:.1f}",
            # subscriptions the instances publisher has matched (what a recorder can wait for)
            "instances_subscribers": str(self.instances_pub.get_subscription_count()),
        }
        status = DiagnosticStatus(
            level=level,
            name=self.get_fully_qualified_name(),
            message=message,
            hardware_id=str(self.backbone.device),
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )
        self.status_pub.publish(status)
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def release(self) -> None:
        self._stop_worker()

    def close(self) -> None:
        """Stop the worker first (no 'publisher's context is invalid' at Ctrl-C), then the lifecycle."""
        self._stop_worker()
        super().close()


def main(args: list[str] | None = None) -> int:
    return run_node(InferenceNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
