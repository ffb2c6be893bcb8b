"""isar_ros_msgs <-> core types. The only place messages and core objects meet."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Point32, PoseStamped, Vector3
from isar_ros_msgs.msg import (
    Instance,
    InstanceMemory,
    InstanceSegmentation,
    Location3D,
    ObjectInfo,
    ObjectMap,
    ObjectMapEntry,
)
from isar_ros_msgs.msg import Prompt as PromptMsg
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from isar_ros.core.geometry import Location, PinholeCamera, pose_matrix
from isar_ros.core.memory_snapshot import MemoryFormatError, MemorySnapshot, ObjectClassifier, SnapshotObject
from isar_ros.core.object_map import MapEntry
from isar_ros.core.prompt_mask import Prompt, PromptError
from isar_ros.msgio.image_codec import numpy_to_compressed, numpy_to_image
from isar_ros.msgio.timing import split_seconds

MARKER_NAMESPACE = "isar_objects"

if TYPE_CHECKING:  # keeps torch out of processes that only convert prompts (the sim bridge)
    from isar_ros.core.segmentation import Segmentation


def prompt_from_msg(msg: PromptMsg) -> Prompt:
    points = np.array([[p.x, p.y] for p in msg.points], np.float32).reshape(-1, 2)
    labels = np.array(list(msg.labels), np.int32)
    box = None
    if msg.has_box:
        b = msg.box
        if b.width == 0 or b.height == 0:
            raise PromptError(
                f"the box at ({b.x_offset}, {b.y_offset}) is empty ({b.width}x{b.height} px); drag a larger "
                "box"
            )
        box = np.array(
            [b.x_offset, b.y_offset, b.x_offset + b.width - 1, b.y_offset + b.height - 1], np.float32
        )
    return Prompt(points, labels, box)


def prompt_to_msg(prompt: Prompt, header) -> PromptMsg:
    msg = PromptMsg(header=header)
    msg.points = [
        Point32(x=float(x), y=float(y), z=0.0) for x, y in np.asarray(prompt.points_xy).reshape(-1, 2)
    ]
    msg.labels = [int(v) for v in np.asarray(prompt.labels).ravel()]
    if prompt.box_xyxy is not None:
        x0, y0, x1, y1 = (int(round(float(v))) for v in prompt.box_xyxy)
        msg.has_box = True
        msg.box = RegionOfInterest(x_offset=x0, y_offset=y0, width=x1 - x0 + 1, height=y1 - y0 + 1)
    return msg


def location_to_msg(location: Location | None, frame_id: str) -> Location3D:
    if location is None:
        return Location3D(valid=False, frame_id=frame_id)
    x, y, z = (float(v) for v in location.centroid)
    dx, dy, dz = (float(v) for v in location.extent)
    return Location3D(
        valid=True,
        frame_id=frame_id,
        centroid=Point(x=x, y=y, z=z),
        extent=Vector3(x=dx, y=dy, z=dz),
        depth_pixels=int(location.depth_pixels),
    )


def segmentation_to_msg(
    segmentation: Segmentation, header: Header, world_frame: str = ""
) -> InstanceSegmentation:
    """The message of one frame's segmentation; 3-D locations in ``header.frame_id`` and ``world_frame``."""
    msg = InstanceSegmentation(header=header, memory_version=int(segmentation.memory_version))
    msg.label_image = numpy_to_image(segmentation.labels, "mono16", header=header)
    for i in segmentation.instances:
        x, y, w, h = i.box_xywh
        msg.instances.append(
            Instance(
                object_id=i.object_id,
                name=i.name,
                score=float(i.score),
                box=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h),
                area=i.area,
                camera=location_to_msg(i.camera_location, header.frame_id),
                world=location_to_msg(i.world_location, world_frame),
            )
        )
    return msg


def snapshot_to_msg(snapshot: MemorySnapshot, stamp: Time) -> InstanceMemory:
    """The ``InstanceMemory`` message of a snapshot (exact: its numbers are float32 already)."""
    msg = InstanceMemory(
        version=int(snapshot.version), backbone_id=snapshot.backbone_id, feature_dim=int(snapshot.feature_dim)
    )
    msg.header.stamp = stamp
    for o in snapshot.objects:
        c = o.classifier
        prototypes = np.asarray(c.prototypes, np.float32)
        msg.objects.append(
            ObjectInfo(
                object_id=int(o.object_id),
                name=o.name,
                num_exemplars=int(o.num_exemplars),
                weights=np.asarray(c.weights, np.float32).tolist(),
                bias=float(c.bias),
                mask_threshold=float(c.mask_threshold),
                presence_threshold=float(c.presence_threshold),
                min_patches=int(o.min_patches),
                max_patches=int(o.max_patches),
                num_prototypes=int(prototypes.shape[0]),
                prototypes=prototypes.ravel().tolist(),
                prototype_threshold=float(c.prototype_threshold),
                appearance=np.asarray(c.appearance, np.float32).tolist(),
                appearance_threshold=float(c.appearance_threshold),
            )
        )
    return msg


def msg_to_snapshot(msg: InstanceMemory) -> MemorySnapshot:
    """The snapshot an ``InstanceMemory`` message carries; :class:`MemoryFormatError` naming what is
    inconsistent."""
    dim = int(msg.feature_dim)
    if dim <= 0:
        raise MemoryFormatError(f"memory version {msg.version} has feature_dim {dim}")
    objects = []
    for o in msg.objects:
        prototypes = np.asarray(o.prototypes, np.float32)
        if prototypes.size != o.num_prototypes * dim:
            raise MemoryFormatError(
                f"memory version {msg.version}: object {o.object_id} ({o.name!r}) has {prototypes.size} "
                f"prototype values for {o.num_prototypes} prototypes of dim {dim}"
            )
        classifier = ObjectClassifier(
            np.asarray(o.weights, np.float32),
            float(o.bias),
            float(o.mask_threshold),
            float(o.presence_threshold),
            prototypes.reshape(-1, dim),
            float(o.prototype_threshold),
            np.asarray(o.appearance, np.float32),
            float(o.appearance_threshold),
        )
        objects.append(
            SnapshotObject(
                int(o.object_id),
                o.name,
                int(o.num_exemplars),
                int(o.min_patches),
                int(o.max_patches),
                classifier,
            )
        )
    return MemorySnapshot(int(msg.version), msg.backbone_id, dim, tuple(objects)).validate()


def object_summaries(snapshot: MemorySnapshot) -> list[ObjectInfo]:
    """ObjectInfo per object with the classifier arrays left empty (for ListObjects)."""
    return [
        ObjectInfo(object_id=int(o.object_id), name=o.name, num_exemplars=int(o.num_exemplars))
        for o in snapshot.objects
    ]


def markers(segmentation: InstanceSegmentation, frame_id: str, stamp: Time) -> MarkerArray:
    """RViz markers of the located instances in ``frame_id`` (world where a pose came, else the camera):
    a translucent box and a name label each; the array starts with DELETEALL, so objects no longer seen go."""
    from isar_ros.core.visualize import object_color

    array = MarkerArray(markers=[Marker(action=Marker.DELETEALL, ns=MARKER_NAMESPACE)])
    world = frame_id != segmentation.header.frame_id
    for instance in segmentation.instances:
        location = instance.world if world else instance.camera
        if not location.valid:
            continue
        r, g, b = (c / 255.0 for c in object_color(instance.object_id))
        header = Header(stamp=stamp, frame_id=location.frame_id)
        box = Marker(
            header=header, ns=MARKER_NAMESPACE, id=2 * instance.object_id, type=Marker.CUBE, action=Marker.ADD
        )
        box.pose.position = location.centroid
        box.pose.orientation.w = 1.0
        e = location.extent
        box.scale = Vector3(x=max(e.x, 0.01), y=max(e.y, 0.01), z=max(e.z, 0.01))
        box.color = ColorRGBA(r=r, g=g, b=b, a=0.4)
        label = Marker(
            header=header,
            ns=MARKER_NAMESPACE,
            id=2 * instance.object_id + 1,
            type=Marker.TEXT_VIEW_FACING,
            action=Marker.ADD,
            text=f"{instance.name} {instance.score:.2f}",
        )
        label.pose.position = Point(x=location.centroid.x, y=location.centroid.y, z=location.centroid.z)
        label.pose.orientation.w = 1.0
        label.scale.z = 0.08
        label.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        array.markers += [box, label]
    return array


def map_entry_to_msg(entry: MapEntry) -> ObjectMapEntry:
    x, y, z = (float(v) for v in entry.position)
    dx, dy, dz = (float(v) for v in entry.extent)
    sec, nanosec = split_seconds(entry.last_seen_s)
    return ObjectMapEntry(
        object_id=entry.object_id,
        name=entry.name,
        position=Point(x=x, y=y, z=z),
        extent=Vector3(x=dx, y=dy, z=dz),
        last_seen=Time(sec=sec, nanosec=nanosec),
        confidence=float(entry.confidence),
        observations=int(entry.observations),
    )


def observations_msg(segmentation: InstanceSegmentation, world_frame: str) -> ObjectMap:
    """The world-located instances of one image, as observations for the object map."""
    msg = ObjectMap()
    msg.header.stamp, msg.header.frame_id = segmentation.header.stamp, world_frame
    for i in segmentation.instances:
        if i.world.valid:
            msg.objects.append(
                ObjectMapEntry(
                    object_id=i.object_id,
                    name=i.name,
                    position=i.world.centroid,
                    extent=i.world.extent,
                    last_seen=segmentation.header.stamp,
                    confidence=i.score,
                    observations=1,
                )
            )
    return msg


def pose_from_msg(pose: PoseStamped) -> np.ndarray:
    """4x4 ``T_world_camera`` of a PoseStamped (the optical frame in ``pose.header.frame_id``)."""
    p, q = pose.pose.position, pose.pose.orientation
    return pose_matrix([p.x, p.y, p.z], [q.x, q.y, q.z, q.w])


def camera_from_msg(info: CameraInfo) -> PinholeCamera:
    return PinholeCamera.from_k(info.k, info.width, info.height)


def mask_to_msg(mask: np.ndarray, header: Header) -> Image:
    """A boolean mask as mono8 (255 = object)."""
    return numpy_to_image(mask.astype(np.uint8) * 255, "mono8", header=header)


def thumbnail_msg(thumbnails: list[np.ndarray]) -> CompressedImage:
    """An object's first thumbnail as a JPEG message; an empty message when it has none."""
    if not thumbnails:
        return CompressedImage()
    return numpy_to_compressed(thumbnails[0], "rgb8", "jpeg", msg_type=CompressedImage)
