"""Web node: the browser teach panel (``isar_web``, a lifecycle node).

Serves :mod:`isar_ros.web.panel` over HTTP (loopback by default) and wires it to the graph: the camera
image, the inference node's overlay and instances, and the teach node's object map come in by topic;
teaching, renaming, forgetting and saving go to the teach node's services - the panel has no path of
its own into the memory. The page and its assets come from the package (no internet needed).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from isar_ros_msgs.msg import InstanceSegmentation
from isar_ros_msgs.msg import ObjectMap as ObjectMapMsg
from isar_ros_msgs.srv import ForgetObject, ListObjects, RenameObject, SaveMemory, TeachObject
from sensor_msgs.msg import Image

from isar_ros.core.frames import stamp_seconds
from isar_ros.core.prompt_mask import Prompt
from isar_ros.errors import UserError
from isar_ros.msgio import topics
from isar_ros.msgio.image_codec import image_to_numpy, numpy_to_image
from isar_ros.ros import qos, services
from isar_ros.ros.conversions import prompt_to_msg
from isar_ros.ros.lifecycle import ManagedNode
from isar_ros.ros.node_main import run_node
from isar_ros.settings import Spec, setting, specs
from isar_ros.web.panel import LazyImage, ObjectEntry, Panel, PanelServer, TeachAnswer, WebSettings

WEB_NODE = "isar_web"


@dataclass
class WebNodeSettings:
    teach_node: str = setting(topics.TEACH_NODE, "name of the teach node whose services the panel calls")
    inference_node: str = setting(topics.INFERENCE_NODE, "name of the inference node whose overlay is shown")


def parameter_specs() -> list[Spec]:
    return specs(WebNodeSettings) + specs(WebSettings)


class TeachNodeClient:
    """The panel's :class:`~isar_ros.web.panel.TeachService`: the teach node's services, called from the
    HTTP threads while the node's executor spins."""

    def __init__(self, node: WebNode, teach_node: str, timeout: float):
        self.node, self.timeout = node, timeout
        self.clients = {
            name: node.create_client(kind, f"{teach_node}/{name}")
            for name, kind in [
                ("teach", TeachObject),
                ("list", ListObjects),
                ("rename", RenameObject),
                ("forget", ForgetObject),
                ("save", SaveMemory),
            ]
        }
        self._ready: set[str] = set()

    def _call(self, name: str, request: Any) -> Any:
        client = self.clients[name]
        if name not in self._ready:
            if not services.wait_until_ready(client, self.timeout):
                raise TimeoutError(f"the service {client.srv_name} is not available")
            self._ready.add(name)
        return services.call(client, request, self.timeout)

    def teach(self, rgb: Any, prompts: list[Prompt], name: str, object_id: int, preview: bool) -> TeachAnswer:
        image = numpy_to_image(rgb, "rgb8")
        image.header.stamp = self.node.get_clock().now().to_msg()
        request = TeachObject.Request(
            name=name,
            object_id=object_id,
            prompts=[prompt_to_msg(p, image.header) for p in prompts],
            image=image,
            preview=preview,
        )
        answer = self._call("teach", request)
        masks = [image_to_numpy(m) > 0 for m in answer.masks]
        return TeachAnswer(answer.success, answer.message, answer.object_id, masks)

    def objects(self) -> list[ObjectEntry]:
        answer = self._call("list", ListObjects.Request())
        jpegs = [bytes(t.data) for t in answer.thumbnails]  # one per object; none from older teach nodes
        return [
            ObjectEntry(o.object_id, o.name, o.num_exemplars, jpegs[k] if k < len(jpegs) else b"")
            for k, o in enumerate(answer.objects)
        ]

    def rename(self, object_id: int, name: str) -> tuple[bool, str]:
        answer = self._call("rename", RenameObject.Request(object_id=object_id, new_name=name))
        return answer.success, answer.message

    def forget(self, object_id: int) -> tuple[bool, str]:
        answer = self._call("forget", ForgetObject.Request(object_id=object_id))
        return answer.success, answer.message

    def save(self) -> tuple[bool, str]:
        answer = self._call("save", SaveMemory.Request())
        return answer.success, answer.message


class WebNode(ManagedNode):
    def __init__(self) -> None:
        super().__init__(WEB_NODE, parameter_specs())
        self.server: PanelServer | None = None
        self._subscriptions_held: list[Any] = []

    def configure(self) -> None:
        values = self.params.values
        settings = WebSettings(**{f.name: values[f.name] for f in fields(WebSettings)})
        client = TeachNodeClient(self, values["teach_node"], settings.service_timeout_s)
        self.panel = Panel(settings, client, lambda: self.get_clock().now().nanoseconds * 1e-9)
        self.server = PanelServer(self.panel)
        self.server.start()
        where = f"http://{settings.bind_address}:{self.server.port}/"
        self.get_logger().info(f"teach panel at {where}" + ("?token=<token>" if settings.token else ""))

    def activate(self) -> None:
        inference = self.params.values["inference_node"]
        self._subscriptions_held = [
            self.create_subscription(Image, topics.IMAGE, self.on_image, qos.SENSOR),
            self.create_subscription(Image, f"{inference}/overlay", self.on_overlay, qos.OUTPUTS),
            self.create_subscription(
                InstanceSegmentation, f"{inference}/instances", self.on_instances, qos.OUTPUTS
            ),
            self.create_subscription(ObjectMapMsg, topics.OBJECT_MAP, self.on_map, qos.MEMORY),
        ]

    def deactivate(self) -> None:
        for subscription in self._subscriptions_held:
            self.destroy_subscription(subscription)
        self._subscriptions_held = []

    def cleanup(self) -> None:
        self.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    # ---- inputs -----------------------------------------------------------------------------------
    def _lazy_rgb(self, msg: Image) -> LazyImage:
        """Converted only when the browser needs it; a refused image is logged and shown as none."""

        def convert() -> Any:
            try:
                return self.camera_rgb(msg)
            except UserError as error:
                self.get_logger().warning(f"image refused: {error}", throttle_duration_sec=10.0)
                return None

        return LazyImage(convert)

    def on_image(self, msg: Image) -> None:
        self.panel.camera_frame(self._lazy_rgb(msg))

    def on_overlay(self, msg: Image) -> None:
        self.panel.overlay_frame(self._lazy_rgb(msg))

    def on_instances(self, msg: InstanceSegmentation) -> None:
        self.panel.instances({int(i.object_id): float(i.score) for i in msg.instances})

    def on_map(self, msg: ObjectMapMsg) -> None:
        self.panel.object_map(
            {
                int(e.object_id): {
                    "x": e.position.x,
                    "y": e.position.y,
                    "z": e.position.z,
                    "frame": msg.header.frame_id,
                    "stamp": stamp_seconds((e.last_seen.sec, e.last_seen.nanosec)),
                    "observations": int(e.observations),
                }
                for e in msg.objects
            }
        )


def main(args: list[str] | None = None) -> int:
    return run_node(WebNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
