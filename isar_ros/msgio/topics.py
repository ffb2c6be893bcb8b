"""Default names of the graph's topics and services (all remappable; ``~`` = the node's namespace).

Relative names resolve inside the node's namespace, so ``isar-ros up --namespace robot2`` gives
``/robot2/image``, ``/robot2/memory`` and ``/robot2/isar_inference/instances`` with no remapping.
"""

from __future__ import annotations

TEACH_NODE = "isar_teach"
INFERENCE_NODE = "isar_inference"
SIM_BRIDGE_NODE = "isar_sim_bridge"

# camera side (inputs; the sim bridge publishes them)
IMAGE = "image"
CAMERA_INFO = "camera_info"
DEPTH = "depth"
CAMERA_POSE = "camera_pose"
GROUND_TRUTH = "ground_truth"

# between the teach and inference nodes (reliable, transient-local)
MEMORY = "memory"
OBJECT_MAP = "object_map"  # where the objects were last seen (teach node, latched)
OBSERVATIONS = "object_observations"  # located objects, from every inference node to the teach node

# inference outputs (node-private names)
INSTANCES = "~/instances"
LABEL_IMAGE = "~/label_image"
OVERLAY = "~/overlay"
OUTPUT_CAMERA_INFO = "~/camera_info"
MARKERS = "~/markers"
STATUS = "~/status"
DIAGNOSTICS = "/diagnostics"
CLOCK = "/clock"

# teaching inputs
RVIZ_CLICKS = "/clicked_point"
PIXEL_CLICKS = "image_mouse_left"


def absolute(node: str, name: str, namespace: str = "/") -> str:
    """The fully qualified name of ``name`` (``~/x`` or relative) for ``node`` in ``namespace``."""
    namespace = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if name.startswith("/"):
        return name
    if name.startswith("~/"):
        return f"{namespace}/{node}/{name[2:]}"
    return f"{namespace}/{name}"


def camera_info_for(image_topic: str) -> str:
    """``image_transport``'s rule: the camera info sits beside the image (``/cam/color/image_raw`` ->
    ``/cam/color/camera_info``)."""
    head, _, _ = image_topic.rstrip("/").rpartition("/")
    return f"{head}/camera_info" if head else "camera_info"
