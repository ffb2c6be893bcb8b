"""Teach node: operator prompts in, taught objects out (``isar_teach``).

Keeps the latest camera frames by stamp, turns prompts on them into masks and taught objects, keeps
the memory on disk (autosave on every change and on shutdown, reload on start) and publishes it
as ``memory`` (reliable, transient-local: inference nodes that start later still get it).

Teaching inputs: the ``~/teach`` service; RViz "Publish Point" (``/clicked_point``, projected into
the image with ``camera_pose`` and ``camera_info``); rqt_image_view clicks on ``image_mouse_left``
with ``~/arm``, ``~/click_mode``, ``~/commit`` and ``~/cancel`` (see docs/operator.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from geometry_msgs.msg import Point, PointStamped, PoseStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from isar_ros.core.click_session import ClickSession
from isar_ros.core.frames import FrameBuffer, stamp_of
from isar_ros.core.geometry import PinholeCamera, ProjectionError, pose_matrix, project_point
from isar_ros.core.memory import MemoryFormatError
from isar_ros.core.perception import Perception, PerceptionConfig
from isar_ros.core.prompt_mask import PromptError
from isar_ros.ros.conversions import export_to_msg, object_summaries, prompt_from_msg
from isar_ros.ros.node_main import run_node
from isar_ros.ros.image_conversion import ImageConversionError, depth_to_metres, image_to_numpy, numpy_to_image
from isar_ros_msgs.msg import InstanceMemory
from isar_ros_msgs.srv import ForgetObject, ListObjects, LoadMemory, RenameObject, SaveMemory, TeachObject

MEMORY_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
USER_ERRORS = (PromptError, MemoryFormatError, ImageConversionError, ProjectionError, KeyError, ValueError)


def _error_text(error: Exception) -> str:
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


class TeachNode(Node):
    def __init__(self):
        super().__init__("isar_teach")
        p = self._param
        self.memory_dir = Path(os.path.expanduser(p("memory_dir", "~/.ros/isar_ros/memory", "folder of the saved memory")))
        self.autosave = p("autosave", True, "save the memory after every change and on shutdown")
        self.click_tolerance_s = p("click_tolerance_s", 1.0, "how far in time an RViz click may be from the frame it is paired with")
        self.depth_tolerance_m = p("depth_tolerance_m", 0.15, "an RViz click must lie this close to the depth seen at its pixel")
        config = PerceptionConfig(
            backbone=p("backbone", "handcrafted", "handcrafted (no weights) or dinov2_vit{s,b,l,g}14[_reg4]"),
            device=p("device", "auto", "auto, cpu or cuda"),
            mask_predictor=p("mask_predictor", "auto", "auto (SAM if its checkpoint is found), sam or grabcut"),
            sam_checkpoint=p("sam_checkpoint", "", "explicit SAM checkpoint file (empty: search)") or None,
        )
        self.perception = Perception(config)
        self.frames = FrameBuffer(p("buffer_size", 30, "camera frames kept for prompts that refer to them by stamp"))
        self.session = ClickSession()
        self.save_blocked = ""
        self._load_on_start()

        self.memory_pub = self.create_publisher(InstanceMemory, "memory", MEMORY_QOS)
        self.mask_pub = self.create_publisher(Image, "~/taught_mask", RELIABLE)
        self.feedback_pub = self.create_publisher(String, "~/feedback", RELIABLE)
        self.create_subscription(Image, "image", lambda m: self.frames.add(stamp_of(m.header), "image", m), qos_profile_sensor_data)
        self.create_subscription(Image, "depth", lambda m: self.frames.add(stamp_of(m.header), "depth", m), qos_profile_sensor_data)
        self.create_subscription(CameraInfo, "camera_info", lambda m: self.frames.add(stamp_of(m.header), "camera_info", m), qos_profile_sensor_data)
        self.create_subscription(PoseStamped, "camera_pose", lambda m: self.frames.add(stamp_of(m.header), "pose", m), qos_profile_sensor_data)
        self.create_subscription(PointStamped, "/clicked_point", self.on_rviz_click, RELIABLE)
        self.create_subscription(Point, "image_mouse_left", self.on_pixel_click, RELIABLE)
        self.create_subscription(String, "~/arm", self.on_arm, RELIABLE)
        self.create_subscription(String, "~/click_mode", self.on_click_mode, RELIABLE)
        self.create_service(TeachObject, "~/teach", self.on_teach)
        self.create_service(ForgetObject, "~/forget", self.on_forget)
        self.create_service(RenameObject, "~/rename", self.on_rename)
        self.create_service(ListObjects, "~/list", self.on_list)
        self.create_service(SaveMemory, "~/save", self.on_save)
        self.create_service(LoadMemory, "~/load", self.on_load)
        self.create_service(Trigger, "~/commit", self.on_commit)
        self.create_service(Trigger, "~/cancel", self.on_cancel)
        self.publish_memory()
        self.get_logger().info(f"ready: {len(self.perception.memory.objects)} objects, memory in {self.memory_dir}, "
                               f"backbone {self.perception.backbone.backbone_id}")

    def _param(self, name: str, default, description: str):
        return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

    # ---- memory -----------------------------------------------------------------------------------
    def _load_on_start(self) -> None:
        if not (self.memory_dir / "manifest.json").exists():
            return
        try:
            self.perception.load(self.memory_dir)
        except MemoryFormatError as error:
            self.save_blocked = (f"the memory in {self.memory_dir} could not be loaded, so autosave will not overwrite it: "
                                 f"{error}. Fix or move that folder, or ~/load or ~/save another one")
            self.get_logger().error(self.save_blocked)

    def memory_changed(self) -> None:
        if self.autosave:
            self.save(self.memory_dir)
        self.publish_memory()

    def save(self, directory: Path) -> str:
        if directory == self.memory_dir and self.save_blocked:
            self.get_logger().error(self.save_blocked)
            return self.save_blocked
        self.perception.save(directory)
        return ""

    def publish_memory(self) -> None:
        self.memory_pub.publish(export_to_msg(self.perception.memory.export(), self.get_clock().now().to_msg()))

    def feedback(self, text: str, error: bool = False) -> None:
        # rclpy fixes a logger call site's severity on first use: one line per severity.
        if error:
            self.get_logger().error(text)
        else:
            self.get_logger().info(text)
        self.feedback_pub.publish(String(data=text))

    # ---- teaching ---------------------------------------------------------------------------------
    def teach(self, frames_and_prompts: list[tuple[Image, list]], name: str, object_id: int):
        """Encode each frame once, teach, publish the masks and the memory. Raises USER_ERRORS."""
        exemplars = [(self.perception.encode(image_to_numpy(image, "rgb8")), prompts) for image, prompts in frames_and_prompts]
        result = self.perception.teach(exemplars, name=name, object_id=object_id)
        masks = []
        for (image, _), mask in zip(frames_and_prompts, result.masks):
            mask_msg = numpy_to_image(mask.astype(np.uint8) * 255, "mono8", header=image.header)
            self.mask_pub.publish(mask_msg)
            masks.append(mask_msg)
        self.memory_changed()
        self.feedback(f"taught object {result.object_id} ({self.perception.memory.objects[result.object_id].name}) "
                      f"from {len(frames_and_prompts)} frame(s) in {result.seconds:.2f} s")
        return result.object_id, masks

    def on_teach(self, request: TeachObject.Request, response: TeachObject.Response):
        try:
            if not request.prompts:
                raise PromptError("the request has no prompts; add at least one click or box")
            groups: dict[tuple[int, int], tuple[Image, list]] = {}
            for prompt_msg in request.prompts:
                if request.image.width > 0:
                    key, image = (0, 0), request.image
                else:
                    key = stamp_of(prompt_msg.header)
                    image = self.frames.get(key).get("image")
                groups.setdefault(key, (image, []))[1].append(prompt_from_msg(prompt_msg))
            response.object_id, response.masks = self.teach(list(groups.values()), request.name, request.object_id)
            response.success, response.message = True, f"taught object {response.object_id}"
        except USER_ERRORS as error:
            response.success, response.message = False, _error_text(error)
            self.feedback(f"teach refused: {response.message}", error=True)
        response.memory_version = self.perception.memory.version
        return response

    def on_rviz_click(self, msg: PointStamped) -> None:
        try:
            frame = self.frames.newest("pose")
            pose, info, image = frame.get("pose"), frame.get("camera_info"), frame.get("image")
            if info is None or image is None:
                raise ProjectionError("RViz clicks need camera_info and the image with the same stamp as the camera pose")
            if msg.header.frame_id and pose.header.frame_id and msg.header.frame_id != pose.header.frame_id:
                raise ProjectionError(f"the click is in frame {msg.header.frame_id!r} but the camera pose in "
                                      f"{pose.header.frame_id!r}; set RViz's fixed frame to {pose.header.frame_id!r}")
            p, q = pose.pose.position, pose.pose.orientation
            camera = PinholeCamera.from_k(info.k, info.width, info.height)
            depth = frame.get("depth")
            depth_m = depth_to_metres(depth) if depth is not None else None
            u, v = project_point([msg.point.x, msg.point.y, msg.point.z], pose_matrix([p.x, p.y, p.z], [q.x, q.y, q.z, q.w]),
                                 camera, depth_m, self.depth_tolerance_m)
            self.feedback(f"RViz click -> pixel ({u:.0f}, {v:.0f}): " + self.session.click(u, v, frame.stamp))
        except USER_ERRORS as error:
            self.feedback(f"RViz click refused: {_error_text(error)}", error=True)

    def on_pixel_click(self, msg: Point) -> None:
        try:
            frame = self.frames.newest() if self.session.stamp is None else self.frames.get(self.session.stamp)
            image = frame.get("image")
            if not (0 <= msg.x < image.width and 0 <= msg.y < image.height):
                raise PromptError(f"click ({msg.x:.0f}, {msg.y:.0f}) is outside the {image.width}x{image.height} image")
            self.feedback(self.session.click(msg.x, msg.y, frame.stamp))
        except USER_ERRORS as error:
            self.feedback(f"click refused: {_error_text(error)}", error=True)

    def on_arm(self, msg: String) -> None:
        text = msg.data.strip()
        try:
            if text.startswith("id:"):
                self.feedback(self.session.arm(object_id=int(text[3:])))
            else:
                self.feedback(self.session.arm(name=text))
        except USER_ERRORS as error:
            self.feedback(f"arm refused: {_error_text(error)}", error=True)

    def on_click_mode(self, msg: String) -> None:
        try:
            self.feedback(self.session.set_mode(msg.data.strip()))
        except USER_ERRORS as error:
            self.feedback(f"click mode refused: {_error_text(error)}", error=True)

    def on_commit(self, _request, response: Trigger.Response):
        try:
            name, object_id, stamp, prompt = self.session.commit()
            object_id, _ = self.teach([(self.frames.get(stamp).get("image"), [prompt])], name, object_id)
            response.success, response.message = True, f"taught object {object_id}"
        except USER_ERRORS as error:
            response.success, response.message = False, _error_text(error)
            self.feedback(f"commit refused: {response.message}", error=True)
        return response

    def on_cancel(self, _request, response: Trigger.Response):
        self.session.cancel()
        response.success, response.message = True, "teaching session cancelled"
        return response

    # ---- memory management --------------------------------------------------------------------------
    def on_forget(self, request: ForgetObject.Request, response: ForgetObject.Response):
        def forget() -> str:
            object_id = request.object_id or self.perception.memory.find(request.name)
            self.perception.forget(object_id)
            return f"forgot object {object_id}"
        return self._change_memory(forget, response)

    def on_rename(self, request: RenameObject.Request, response: RenameObject.Response):
        def rename() -> str:
            self.perception.rename(request.object_id, request.new_name)
            return f"object {request.object_id} is now {request.new_name!r}"
        return self._change_memory(rename, response)

    def _change_memory(self, change, response):
        """Run ``change`` (returns the success message); a refused change leaves the memory as it was."""
        try:
            message = change()
            self.memory_changed()
            response.success, response.message = True, message
        except USER_ERRORS as error:
            response.success, response.message = False, _error_text(error)
        response.memory_version = self.perception.memory.version
        return response

    def on_list(self, _request, response: ListObjects.Response):
        export = self.perception.memory.export()
        response.memory_version, response.backbone_id = export["version"], export["backbone_id"]
        response.objects = object_summaries(export)
        return response

    def on_save(self, request: SaveMemory.Request, response: SaveMemory.Response):
        directory = Path(os.path.expanduser(request.directory)) if request.directory else self.memory_dir
        try:
            problem = self.save(directory)
            response.success, response.message, response.directory = not problem, problem or "saved", str(directory)
        except OSError as error:
            response.success, response.message = False, f"cannot write {directory}: {error}"
        return response

    def on_load(self, request: LoadMemory.Request, response: LoadMemory.Response):
        directory = Path(os.path.expanduser(request.directory)) if request.directory else self.memory_dir
        try:
            self.perception.load(directory)
            if directory == self.memory_dir:
                self.save_blocked = ""
            self.publish_memory()
            response.success, response.message = True, f"loaded {len(self.perception.memory.objects)} objects from {directory}"
        except (MemoryFormatError, OSError) as error:
            response.success, response.message = False, f"{error} (the current memory is unchanged)"
        response.memory_version = self.perception.memory.version
        response.num_objects = len(self.perception.memory.objects)
        return response

    def close(self) -> None:
        """On shutdown: save (unless a memory that could not be loaded would be overwritten)."""
        if self.autosave and not self.save_blocked:
            self.perception.save(self.memory_dir)


def main(args=None) -> int:
    return run_node(TeachNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
