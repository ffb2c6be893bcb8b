"""Inference node: camera images in, instance segmentations out (``isar_inference``).

Always works on the newest frame: the image callback only drops the frame into a one-slot mailbox
(a frame still waiting there when a newer one arrives is dropped and counted); a worker thread
takes the newest, runs the backbone and the instance finder, and publishes ``~/instances``
(header = the image's), ``~/label_image`` (mono16), ``~/overlay`` (rgb8) and ``~/status``
(diagnostic_msgs/DiagnosticStatus, once per ``status_period_s``). A new memory arriving on
``memory`` is checked and swapped in between two frames; a bad one is refused and the last good
memory keeps serving. Thresholds are parameters that can be changed at run time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from isar_ros.core.backbones import create_backbone
from isar_ros.core.inference import InferenceConfig, InstanceFinder, ObjectModel
from isar_ros.core.stats import LatencyMeter, RateMeter
from isar_ros.core.visualize import overlay
from isar_ros.ros.conversions import MemoryMessageError, msg_to_export, segmentation_to_msg
from isar_ros.ros.image_conversion import ImageConversionError, image_to_numpy, numpy_to_image
from isar_ros.ros.node_main import run_node
from isar_ros.ros.teach_node import MEMORY_QOS
from isar_ros_msgs.msg import InstanceMemory, InstanceSegmentation

RUNTIME_PARAMETERS = {  # parameter -> InferenceConfig field, changeable while running
    "presence": "presence", "presence_offset": "presence_offset", "mask_offset": "mask_offset",
    "hysteresis": "hysteresis", "temporal": "temporal", "edge_aware": "edge_aware", "matcher": "matcher",
    "max_area_factor": "max_area_factor",
}


class InferenceNode(Node):
    def __init__(self):
        super().__init__("isar_inference")
        p = self._param
        defaults = InferenceConfig()
        backbone_name = p("backbone", "handcrafted", "handcrafted (no weights) or dinov2_vit{s,b,l,g}14[_reg4]")
        device = p("device", "auto", "auto (cuda when available), cpu or cuda")
        self.backbone = create_backbone(backbone_name, device)
        config = InferenceConfig(
            matcher=p("matcher", defaults.matcher, "svm (per-object linear classifiers) or prototype"),
            presence=p("presence", defaults.presence, "decide per object whether it is in view before painting it"),
            presence_offset=p("presence_offset", defaults.presence_offset, "raise (>0) or lower every presence threshold, logit units"),
            mask_offset=p("mask_offset", defaults.mask_offset, "raise (>0) or lower every mask threshold"),
            hysteresis=p("hysteresis", defaults.hysteresis, "an object seen last frame stays present down to this below its threshold"),
            temporal=p("temporal", defaults.temporal, "use the previous frame's decisions (hysteresis)"),
            edge_aware=p("edge_aware", defaults.edge_aware, "snap mask borders to image edges (guided filter)"),
            max_area_factor=p("max_area_factor", defaults.max_area_factor, "regions this much larger than any taught view are not the object"),
        )
        self.publish_overlay = p("publish_overlay", True, "publish ~/overlay (rgb8) for RViz")
        reliability = p("image_reliability", "best_effort", "QoS reliability of the image subscription: best_effort or reliable")
        self.finder = InstanceFinder(ObjectModel(self._empty_export(), self.backbone.device), config)
        self._pending_model: ObjectModel | None = None
        self._mailbox: tuple[Image, float] | None = None
        self._wake = threading.Condition()
        self._running = True
        self.dropped = 0
        self.bad_frames = 0
        self.input_rate, self.output_rate, self.latency = RateMeter(), RateMeter(), LatencyMeter()

        image_qos = qos_profile_sensor_data if reliability == "best_effort" else QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.instances_pub = self.create_publisher(InstanceSegmentation, "~/instances", 10)
        self.label_pub = self.create_publisher(Image, "~/label_image", 10)
        self.overlay_pub = self.create_publisher(Image, "~/overlay", 10)
        self.status_pub = self.create_publisher(DiagnosticStatus, "~/status", 10)
        self.create_subscription(Image, "image", self.on_image, image_qos)
        self.create_subscription(InstanceMemory, "memory", self.on_memory, MEMORY_QOS)
        self.create_service(Trigger, "~/reset", self.on_reset)
        self.add_on_set_parameters_callback(self.on_parameters)
        self.create_timer(p("status_period_s", 1.0, "seconds between ~/status messages"), self.publish_status)
        self.worker = threading.Thread(target=self._work, name="isar_inference_worker", daemon=True)
        self.worker.start()
        self.get_logger().info(f"ready: backbone {self.backbone.backbone_id} on {self.backbone.device}; waiting for a memory")

    def _param(self, name: str, default, description: str):
        return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

    def _empty_export(self) -> dict:
        return {"version": 0, "backbone_id": self.backbone.backbone_id, "feature_dim": self.backbone.feature_dim, "objects": []}

    # ---- inputs -----------------------------------------------------------------------------------
    def on_image(self, msg: Image) -> None:
        self.input_rate.tick()
        with self._wake:
            if self._mailbox is not None:
                self.dropped += 1
            self._mailbox = (msg, time.monotonic())
            self._wake.notify()

    def on_memory(self, msg: InstanceMemory) -> None:
        try:
            export = msg_to_export(msg)
            if export["backbone_id"] != self.backbone.backbone_id:
                raise MemoryMessageError(f"memory version {msg.version} was taught with backbone {export['backbone_id']!r}, "
                                         f"this node runs {self.backbone.backbone_id!r}; start both nodes with the same backbone")
            self._pending_model = ObjectModel(export, self.backbone.device)
            self.get_logger().info(f"memory version {msg.version}: {len(export['objects'])} objects")
        except MemoryMessageError as error:
            self.get_logger().error(f"memory refused, still serving version {self.memory_version}: {error}")

    def on_parameters(self, parameters) -> SetParametersResult:
        changes = {}
        for parameter in parameters:
            if parameter.name in RUNTIME_PARAMETERS:
                changes[RUNTIME_PARAMETERS[parameter.name]] = parameter.value
            elif parameter.name in ("backbone", "device", "image_reliability"):
                return SetParametersResult(successful=False, reason=f"{parameter.name} is fixed at start; restart the node to change it")
        try:
            config = replace(self.finder.config, **changes)
        except (TypeError, ValueError) as error:
            return SetParametersResult(successful=False, reason=str(error))
        self.finder.config = config  # read by the worker at the next frame
        return SetParametersResult(successful=True)

    def on_reset(self, _request, response: Trigger.Response):
        self.finder.reset()
        response.success, response.message = True, "temporal state cleared"
        return response

    # ---- the worker ----------------------------------------------------------------------------------
    def _work(self) -> None:
        while self._running:
            with self._wake:
                while self._mailbox is None and self._running:
                    self._wake.wait(timeout=0.5)
                if not self._running:
                    return
                msg, arrived = self._mailbox
                self._mailbox = None
            if self._pending_model is not None:
                self.finder.set_model(self._pending_model)
                self._pending_model = None
            try:
                self._process(msg, arrived)
            except ImageConversionError as error:
                self.bad_frames += 1
                self.get_logger().error(f"frame skipped: {error}", throttle_duration_sec=2.0)
            except Exception as error:  # noqa: BLE001 - one bad frame must not stop the stream
                self.bad_frames += 1
                self.get_logger().error(f"frame skipped after an unexpected error: {error!r}", throttle_duration_sec=2.0)

    def _process(self, msg: Image, arrived: float) -> None:
        rgb = image_to_numpy(msg, "rgb8")
        segmentation = self.finder.find(self.backbone.extract(rgb), rgb)
        instances = segmentation_to_msg(segmentation, msg.header)
        self.instances_pub.publish(instances)
        self.label_pub.publish(instances.label_image)  # the same mono16 image, converted once
        if self.publish_overlay:
            names = {i.object_id: f"{i.name} {i.score:.2f}" for i in segmentation.instances}
            self.overlay_pub.publish(numpy_to_image(overlay(rgb, segmentation.labels, names), "rgb8", header=msg.header))
        self.output_rate.tick()
        self.latency.add((time.monotonic() - arrived) * 1000)

    @property
    def memory_version(self) -> int:
        """The newest accepted memory (swapped in before the next frame)."""
        pending = self._pending_model
        return (pending or self.finder.model).version

    def publish_status(self) -> None:
        p50, p90 = self.latency.percentiles(50, 90)
        values = {
            "input_rate_hz": f"{self.input_rate.rate():.2f}", "output_rate_hz": f"{self.output_rate.rate():.2f}",
            "latency_ms_p50": f"{p50:.1f}", "latency_ms_p90": f"{p90:.1f}", "dropped_frames": str(self.dropped),
            "bad_frames": str(self.bad_frames), "frames_out": str(self.output_rate.count),
            "memory_version": str(self.memory_version), "objects": str(len((self._pending_model or self.finder.model))),
            "device": str(self.backbone.device), "backbone": self.backbone.backbone_id,
        }
        level = DiagnosticStatus.OK if self.output_rate.count or not self.input_rate.count else DiagnosticStatus.WARN
        self.status_pub.publish(DiagnosticStatus(level=level, name=self.get_fully_qualified_name(), message="running",
                                                 values=[KeyValue(key=k, value=v) for k, v in values.items()]))

    def close(self) -> None:
        """Stop the worker thread."""
        self._running = False
        with self._wake:
            self._wake.notify()
        self.worker.join(timeout=2.0)


def main(args=None) -> int:
    return run_node(InferenceNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
