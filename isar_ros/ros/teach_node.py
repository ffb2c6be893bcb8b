"""Teach node: operator prompts in, taught objects out (``isar_teach``, a lifecycle node).

Keeps the latest camera frames by stamp, turns prompts on them into masks and taught objects
(:class:`isar_ros.core.perception.Perception`), keeps the memory on disk (autosave on every change
and on shutdown, reload on configure) and publishes it as ``memory`` (reliable, transient-local:
inference nodes that start later still get it).

Teaching inputs: the ``~/teach`` service; RViz "Publish Point" (``/clicked_point``, projected into
the image with ``camera_pose`` and ``camera_info``); rqt_image_view clicks on ``image_mouse_left``
with ``~/arm``, ``~/click_mode``, ``~/commit`` and ``~/cancel`` (see docs/operator.md).

A memory folder that cannot be written is refused at configure (the message names it). A save that
fails later (disk full, folder removed) keeps the node running and the object in memory: the answer
says "taught but not saved: ..." and the next change tries again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geometry_msgs.msg import Point, PointStamped, PoseStamped
from isar_ros_msgs.msg import InstanceMemory
from isar_ros_msgs.msg import ObjectMap as ObjectMapMsg
from isar_ros_msgs.srv import (
    ForgetObject,
    ListObjects,
    LoadMemory,
    RenameObject,
    SaveMemory,
    TeachObject,
    WhereIs,
)
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from isar_ros.core.click_session import ClickSession
from isar_ros.core.frames import FrameBuffer, stamp_of, stamp_seconds
from isar_ros.core.geometry import ProjectionError, project_point
from isar_ros.core.memory_snapshot import MemoryFormatError
from isar_ros.core.memory_store import check_writable
from isar_ros.core.object_map import ObjectMap
from isar_ros.core.perception import Perception, PerceptionConfig
from isar_ros.core.prompt_mask import PromptError
from isar_ros.errors import UserError
from isar_ros.msgio import topics
from isar_ros.msgio.image_codec import depth_to_metres
from isar_ros.ros import qos
from isar_ros.ros.conversions import (
    camera_from_msg,
    map_entry_to_msg,
    mask_to_msg,
    object_summaries,
    pose_from_msg,
    prompt_from_msg,
    snapshot_to_msg,
    thumbnail_msg,
)
from isar_ros.ros.lifecycle import ManagedNode
from isar_ros.ros.node_main import run_node
from isar_ros.settings import Spec, setting, specs

DEFAULT_MEMORY_DIR = "~/.ros/isar_ros/memory"
MAP_PERIOD_S = 1.0  # the object map is published (and saved) at most this often when observations change it


@dataclass
class TeachSettings:
    memory_dir: str = setting(
        DEFAULT_MEMORY_DIR, "folder of the saved memory (created if missing; must be writable)"
    )
    autosave: bool = setting(True, "save the memory after every change and on shutdown")
    depth_tolerance_m: float = setting(
        0.15,
        "an RViz click must lie this close to the depth seen at its pixel, metres",
        runtime=True,
        low=0.0,
        high=100.0,
    )
    buffer_size: int = setting(
        30, "camera frames kept for prompts that refer to them by stamp", low=1, high=10000
    )


PERCEPTION_PARAMETERS = {
    "backbone",
    "device",
    "mask_predictor",
    "sam_checkpoint",
    "backend",
    "precision",
    "short_side",
    "compile",
    "teach_threads",
}


def parameter_specs() -> list[Spec]:
    """The node's parameters (besides ``autostart``): its own settings and the perception's it uses."""
    return specs(TeachSettings) + specs(PerceptionConfig, PERCEPTION_PARAMETERS)


class TeachNode(ManagedNode):
    def __init__(self) -> None:
        super().__init__(topics.TEACH_NODE, parameter_specs())
        self.perception: Perception | None = None
        self.unsaved = ""  # why the last save failed; retried on the next change
        self.save_blocked = ""  # the folder holds a memory that could not be loaded: never overwrite it
        self._camera_subscriptions: list[Any] = []

    # ---- lifecycle ----------------------------------------------------------------------------------
    def configure(self) -> None:
        values = self.params.values
        self.memory_dir = Path(os.path.expanduser(values["memory_dir"]))
        self.autosave = values["autosave"]
        if self.autosave:
            check_writable(self.memory_dir)
        config = PerceptionConfig(**{k: values[k] for k in PERCEPTION_PARAMETERS})
        self.perception = Perception(config)
        self.frames = FrameBuffer(values["buffer_size"])
        self.session = ClickSession()
        self._load_on_start()
        self.object_map = self._load_map()
        self.map_dirty = False
        self.memory_pub = self.create_lifecycle_publisher(InstanceMemory, topics.MEMORY, qos.MEMORY)
        self.mask_pub = self.create_lifecycle_publisher(Image, "~/taught_mask", qos.EVENTS)
        self.feedback_pub = self.create_lifecycle_publisher(String, "~/feedback", qos.EVENTS)
        self.map_pub = self.create_lifecycle_publisher(ObjectMapMsg, topics.OBJECT_MAP, qos.MEMORY)
        self._observations = self.create_subscription(
            ObjectMapMsg, topics.OBSERVATIONS, self.on_observations, qos.OBSERVATIONS
        )
        self._map_timer = self.create_timer(MAP_PERIOD_S, self.flush_map)
        self._teach_services = [
            self.create_service(TeachObject, "~/teach", self.on_teach),
            self.create_service(ForgetObject, "~/forget", self.on_forget),
            self.create_service(RenameObject, "~/rename", self.on_rename),
            self.create_service(ListObjects, "~/list", self.on_list),
            self.create_service(SaveMemory, "~/save", self.on_save),
            self.create_service(LoadMemory, "~/load", self.on_load),
            self.create_service(Trigger, "~/commit", self.on_commit),
            self.create_service(Trigger, "~/cancel", self.on_cancel),
            self.create_service(WhereIs, "~/where", self.on_where),
        ]
        self.get_logger().info(
            f"configured: {len(self.perception.objects())} objects, memory in {self.memory_dir}, "
            f"backbone {self.perception.backbone.backbone_id}"
        )

    def activate(self) -> None:
        add = self.frames.add
        self._camera_subscriptions = [
            self.create_subscription(
                Image, topics.IMAGE, lambda m: add(stamp_of(m.header), "image", m), qos.SENSOR
            ),
            self.create_subscription(
                Image, topics.DEPTH, lambda m: add(stamp_of(m.header), "depth", m), qos.SENSOR
            ),
            self.create_subscription(
                CameraInfo,
                topics.CAMERA_INFO,
                lambda m: add(stamp_of(m.header), "camera_info", m),
                qos.SENSOR,
            ),
            self.create_subscription(
                PoseStamped, topics.CAMERA_POSE, lambda m: add(stamp_of(m.header), "pose", m), qos.SENSOR
            ),
            self.create_subscription(PointStamped, topics.RVIZ_CLICKS, self.on_rviz_click, qos.EVENTS),
            self.create_subscription(Point, topics.PIXEL_CLICKS, self.on_pixel_click, qos.EVENTS),
            self.create_subscription(String, "~/arm", self.on_arm, qos.EVENTS),
            self.create_subscription(String, "~/click_mode", self.on_click_mode, qos.EVENTS),
        ]

    def on_activate(self, state: Any) -> Any:
        result = super().on_activate(state)
        self.publish_map()
        self.publish_memory()  # the publisher is active only now
        return result

    def deactivate(self) -> None:
        for subscription in self._camera_subscriptions:
            self.destroy_subscription(subscription)
        self._camera_subscriptions = []

    def cleanup(self) -> None:
        if self.perception is None:
            return
        if self.autosave and not self.save_blocked:
            self.save_quietly()
        for service in self._teach_services:
            self.destroy_service(service)
        self.destroy_timer(self._map_timer)
        self.destroy_subscription(self._observations)
        for publisher in (self.memory_pub, self.mask_pub, self.feedback_pub, self.map_pub):
            self.destroy_lifecycle_publisher(publisher)
        self.perception = None

    def release(self) -> None:
        """At exit after the context is gone: the memory (and the object map) is still saved."""
        if self.perception is not None and self.autosave and not self.save_blocked:
            self.save_quietly()

    def on_parameters(self, changes: dict[str, Any]) -> None:
        pass  # depth_tolerance_m is read where it is used

    # ---- memory -----------------------------------------------------------------------------------
    @property
    def core(self) -> Perception:
        assert self.perception is not None, "the node is not configured"
        return self.perception

    def _load_on_start(self) -> None:
        if not (self.memory_dir / "manifest.json").exists():
            return
        try:
            self.core.load(self.memory_dir)
        except MemoryFormatError as error:
            self.save_blocked = (
                f"the memory in {self.memory_dir} could not be loaded, so autosave will not overwrite it: "
                f"{error}. Fix or move that folder, or ~/load or ~/save another one"
            )
            self.get_logger().error(self.save_blocked)

    def memory_changed(self) -> str:
        """Publish the new memory and autosave it; returns "" or why it could not be saved (the memory
        stays)."""
        self.publish_memory()
        self.object_map.keep_only(
            {o.object_id: o.name for o in self.core.objects()}
        )  # forgotten / renamed objects
        self.map_dirty = True
        self.publish_map()
        if not self.autosave:
            return ""
        return self.save_quietly()

    def save_quietly(self) -> str:
        """Save to ``memory_dir``; an OSError is logged and returned, never raised."""
        if self.save_blocked:
            self.get_logger().error(self.save_blocked)
            return self.save_blocked
        try:
            self.core.save(self.memory_dir)
            self.object_map.save(self.memory_dir)
            self.map_dirty = False
        except OSError as error:
            reason = error.strerror or error
            self.unsaved = (
                f"cannot write {self.memory_dir}: {reason}; it will be tried again on the next change"
            )
            self.get_logger().error(f"memory version {self.core.version} not saved: {self.unsaved}")
            return self.unsaved
        if self.unsaved:
            self.get_logger().info(f"memory saved again to {self.memory_dir}")
        self.unsaved = ""
        return ""

    # ---- the object map ---------------------------------------------------------------------------
    def _load_map(self) -> ObjectMap:
        try:
            return ObjectMap.load(self.memory_dir)
        except MemoryFormatError as error:
            self.get_logger().error(f"{error}; starting an empty map")
            return ObjectMap()

    def on_observations(self, msg: ObjectMapMsg) -> None:
        known = {o.object_id for o in self.core.objects()}
        stamp = stamp_seconds(stamp_of(msg.header))
        for e in msg.objects:
            if e.object_id in known:
                position = [e.position.x, e.position.y, e.position.z]
                extent = [e.extent.x, e.extent.y, e.extent.z]
                self.map_dirty |= self.object_map.observe(
                    e.object_id, e.name, position, extent, stamp, e.confidence, msg.header.frame_id
                )

    def flush_map(self) -> None:
        """Publish (and, with autosave, save beside the memory) the map when observations changed it."""
        if not self.map_dirty:
            return
        self.publish_map()
        if self.autosave and not self.save_blocked:
            try:
                self.object_map.save(self.memory_dir)
            except OSError as error:
                self.get_logger().error(
                    f"object map not saved to {self.memory_dir}: {error}", throttle_duration_sec=10.0
                )
                return
        self.map_dirty = False

    def publish_map(self) -> None:
        entries = sorted(self.object_map.entries.values(), key=lambda e: e.object_id)
        msg = ObjectMapMsg(objects=[map_entry_to_msg(e) for e in entries])
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = entries[0].frame_id if entries else ""
        self.map_pub.publish(msg)

    def on_where(self, request: WhereIs.Request, response: WhereIs.Response) -> WhereIs.Response:
        try:
            object_id = request.object_id or self.core.id_by_name(request.name)
            name = self.name_of(object_id)
        except UserError as error:
            response.found, response.message = False, str(error)
            return response
        entry = self.object_map.where(object_id)
        if entry is None:
            response.found, response.message = (
                False,
                f"object {object_id} ({name}) has not been seen since it was taught",
            )
            return response
        response.found, response.frame_id, response.entry = True, entry.frame_id, map_entry_to_msg(entry)
        x, y, z = entry.position
        response.message = (
            f"{name} was last seen at ({x:.2f}, {y:.2f}, {z:.2f}) m in {entry.frame_id}, "
            f"{entry.observations} observations"
        )
        return response

    def publish_memory(self) -> None:
        self.memory_pub.publish(snapshot_to_msg(self.core.snapshot(), self.get_clock().now().to_msg()))

    def feedback(self, text: str, error: bool = False) -> None:
        # rclpy fixes a logger call site's severity on first use: one line per severity.
        if error:
            self.get_logger().error(text)
        else:
            self.get_logger().info(text)
        self.feedback_pub.publish(String(data=text))

    def name_of(self, object_id: int) -> str:
        return self.core.snapshot().object_by_id(object_id).name

    # ---- teaching ---------------------------------------------------------------------------------
    def teach(
        self, frames_and_prompts: list[tuple[Image, list]], name: str, object_id: int
    ) -> tuple[int, list[Image], str]:
        """Teach (the masks are made while the frames are encoded), publish the masks and the memory.
        Raises UserError.

        Returns (object id, mask messages, why it was not saved or "")."""
        images = [(self.camera_rgb(image), prompts) for image, prompts in frames_and_prompts]
        result = self.core.teach_images(images, name=name, object_id=object_id)
        masks = []
        for (image, _), mask in zip(frames_and_prompts, result.masks, strict=False):
            mask_msg = mask_to_msg(mask, image.header)
            self.mask_pub.publish(mask_msg)
            masks.append(mask_msg)
        unsaved = self.memory_changed()
        self.feedback(
            f"taught object {result.object_id} ({self.name_of(result.object_id)}) "
            f"from {len(frames_and_prompts)} frame(s) in {result.seconds:.2f} s"
        )
        return result.object_id, masks, unsaved

    def on_teach(self, request: TeachObject.Request, response: TeachObject.Response) -> TeachObject.Response:
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
            if request.preview:  # the masks teaching would learn; nothing changes
                response.object_id, response.success = request.object_id, True
                response.masks = [
                    mask_to_msg(self.core.masks_for(self.camera_rgb(image), prompts), image.header)
                    for image, prompts in groups.values()
                ]
                response.message = f"proposed {len(response.masks)} mask(s)"
            else:
                response.object_id, response.masks, unsaved = self.teach(
                    list(groups.values()), request.name, request.object_id
                )
                response.success = not unsaved
                response.message = (
                    f"taught object {response.object_id} ({self.name_of(response.object_id)})"
                    if not unsaved
                    else f"taught object {response.object_id} but not saved: {unsaved}"
                )
        except UserError as error:
            response.success, response.message = False, str(error)
            self.feedback(
                f"{'preview' if request.preview else 'teach'} refused: {response.message}", error=True
            )
        response.memory_version = self.core.version
        return response

    def on_rviz_click(self, msg: PointStamped) -> None:
        try:
            # RViz clicks need the camera pose, camera_info and the image of one stamp.
            frame = self.frames.newest("pose", "camera_info", "image")
            pose, info = frame.get("pose"), frame.get("camera_info")
            if msg.header.frame_id and pose.header.frame_id and msg.header.frame_id != pose.header.frame_id:
                raise ProjectionError(
                    f"the click is in frame {msg.header.frame_id!r} but the camera pose in "
                    f"{pose.header.frame_id!r}; set RViz's fixed frame to {pose.header.frame_id!r}"
                )
            depth = frame.get("depth")
            depth_m = depth_to_metres(depth) if depth is not None else None
            u, v = project_point(
                [msg.point.x, msg.point.y, msg.point.z],
                pose_from_msg(pose),
                camera_from_msg(info),
                depth_m,
                self.params.values["depth_tolerance_m"],
            )
            self.feedback(f"RViz click -> pixel ({u:.0f}, {v:.0f}): " + self.session.click(u, v, frame.stamp))
        except UserError as error:
            self.feedback(f"RViz click refused: {error}", error=True)

    def on_pixel_click(self, msg: Point) -> None:
        try:
            frame = (
                self.frames.newest() if self.session.stamp is None else self.frames.get(self.session.stamp)
            )
            image = frame.get("image")
            if not (0 <= msg.x < image.width and 0 <= msg.y < image.height):
                raise PromptError(
                    f"click ({msg.x:.0f}, {msg.y:.0f}) is outside the {image.width}x{image.height} image"
                )
            self.feedback(self.session.click(msg.x, msg.y, frame.stamp))
        except UserError as error:
            self.feedback(f"click refused: {error}", error=True)

    def on_arm(self, msg: String) -> None:
        text = msg.data.strip()
        try:
            if text.startswith("id:"):
                number = text[3:].strip()
                if not number.isdigit():
                    raise PromptError(
                        f"'{text}' is not 'id:<number>'; publish id:3 to add views of object 3, or a name"
                    )
                object_id = int(number)
                self.feedback(self.session.arm(name=self.name_of(object_id), object_id=object_id))
            else:
                self.feedback(self.session.arm(name=text))
        except UserError as error:
            self.feedback(f"arm refused: {error}", error=True)

    def on_click_mode(self, msg: String) -> None:
        try:
            self.feedback(self.session.set_mode(msg.data.strip()))
        except UserError as error:
            self.feedback(f"click mode refused: {error}", error=True)

    def on_commit(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            name, object_id, stamp, prompt = self.session.commit()
            object_id, _, unsaved = self.teach(
                [(self.frames.get(stamp).get("image"), [prompt])], "" if object_id else name, object_id
            )
            response.success = not unsaved
            response.message = f"taught object {object_id} ({self.name_of(object_id)})" + (
                f" but not saved: {unsaved}" if unsaved else ""
            )
        except UserError as error:
            response.success, response.message = False, str(error)
            self.feedback(f"commit refused: {response.message}", error=True)
        return response

    def on_cancel(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.session.cancel()
        response.success, response.message = True, "teaching session cancelled"
        return response

    # ---- memory management --------------------------------------------------------------------------
    def on_forget(
        self, request: ForgetObject.Request, response: ForgetObject.Response
    ) -> ForgetObject.Response:
        def forget() -> str:
            object_id = request.object_id or self.core.id_by_name(request.name)
            name = self.name_of(object_id)
            self.core.forget(object_id)
            return f"forgot object {object_id} ({name})"

        return self._change_memory(forget, response)

    def on_rename(
        self, request: RenameObject.Request, response: RenameObject.Response
    ) -> RenameObject.Response:
        def rename() -> str:
            self.core.rename(request.object_id, request.new_name)
            return f"object {request.object_id} is now {self.name_of(request.object_id)!r}"

        return self._change_memory(rename, response)

    def _change_memory(self, change: Callable[[], str], response: Any) -> Any:
        """Run ``change`` (returns the success message); a refused change leaves the memory as it was."""
        try:
            message = change()
            unsaved = self.memory_changed()
            response.success = not unsaved
            response.message = message if not unsaved else f"{message} but not saved: {unsaved}"
        except UserError as error:
            response.success, response.message = False, str(error)
        response.memory_version = self.core.version
        return response

    def on_list(self, _request: ListObjects.Request, response: ListObjects.Response) -> ListObjects.Response:
        snapshot = self.core.snapshot()
        response.memory_version, response.backbone_id = snapshot.version, snapshot.backbone_id
        response.objects = object_summaries(snapshot)
        response.thumbnails = [thumbnail_msg(self.core.thumbnails(o.object_id)) for o in snapshot.objects]
        return response

    def on_save(self, request: SaveMemory.Request, response: SaveMemory.Response) -> SaveMemory.Response:
        directory = Path(os.path.expanduser(request.directory)) if request.directory else self.memory_dir
        response.directory = str(directory)
        if directory == self.memory_dir:
            problem = self.save_quietly()
            response.success, response.message = not problem, problem or "saved"
            return response
        try:
            self.core.save(directory)
            response.success, response.message = True, "saved"
        except OSError as error:
            response.success, response.message = False, f"cannot write {directory}: {error.strerror or error}"
        return response

    def on_load(self, request: LoadMemory.Request, response: LoadMemory.Response) -> LoadMemory.Response:
        directory = Path(os.path.expanduser(request.directory)) if request.directory else self.memory_dir
        try:
            self.core.load(directory)
            if directory == self.memory_dir:
                self.save_blocked = ""
            self.publish_memory()
            response.success, response.message = (
                True,
                f"loaded {len(self.core.objects())} objects from {directory}",
            )
        except MemoryFormatError as error:
            response.success, response.message = False, f"{error} (the current memory is unchanged)"
        response.memory_version = self.core.version
        response.num_objects = len(self.core.objects())
        return response


def main(args: list[str] | None = None) -> int:
    return run_node(TeachNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
