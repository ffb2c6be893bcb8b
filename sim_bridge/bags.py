"""ISAR scenes as rosbag2 files, written with the pure-Python ``rosbags`` library (no rclpy needed).

One bag per scene: ``/image`` (rgb8), optionally ``/image/compressed`` (the scene's own JPEG bytes),
``/depth`` (16UC1 mm), ``/camera_info``, ``/camera_pose`` (PoseStamped, optical frame in ``world``),
``/ground_truth`` (16UC1 ids), ``/clock``, and for train scenes ``/prompts/single_shot`` and
``/prompts/multi_shot`` (isar_ros_msgs/LabelledPrompt, stamped like the frame they refer to). Every
message of a frame carries the same stamp, start_time_s + index / 30 s (the scene's 30 fps); the
bag's receive time is that stamp. Message definitions are embedded (MCAP schemas / sqlite3 type
descriptions), so other tools decode them; the bag's metadata records task, scene, split and modes.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from isar_ros.core.geometry import PinholeCamera, matrix_to_quaternion_xyzw
from isar_ros.errors import InvalidInput, MissingResource
from isar_ros.isar.dataset import MODES, IsarDataset, IsarPrompt, Scene, frame_name
from isar_ros.isar.layout import PROMPT_FILES
from isar_ros.isar.rules import isar_id_of, object_name
from isar_ros.isar.runner import SceneRecord, score_scene
from isar_ros.msgio import topics
from isar_ros.msgio.bag_types import typestore
from isar_ros.msgio.image_codec import image_to_numpy, numpy_to_image
from isar_ros.msgio.timing import REPLAY_START_S, SCENE_FPS, frame_index, frame_seconds, split_seconds

RECORDED_TOPIC = topics.absolute(topics.INFERENCE_NODE, topics.INSTANCES)

FRAME_ID, WORLD_FRAME = "camera_optical", "world"
TOPICS = {
    "/image": "sensor_msgs/msg/Image",
    "/image/compressed": "sensor_msgs/msg/CompressedImage",
    "/depth": "sensor_msgs/msg/Image",
    "/camera_info": "sensor_msgs/msg/CameraInfo",
    "/camera_pose": "geometry_msgs/msg/PoseStamped",
    "/ground_truth": "sensor_msgs/msg/Image",
    "/clock": "rosgraph_msgs/msg/Clock",
    **{f"/prompts/{mode}": "isar_ros_msgs/msg/LabelledPrompt" for mode in MODES},
}


class _Messages:
    """Builds rosbags message objects for one scene's frames."""

    def __init__(self, store):
        self.t = store.types
        self.store = store

    def time(self, seconds: float):
        sec, nanosec = split_seconds(seconds)
        return self.t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)

    def header(self, stamp, frame_id=FRAME_ID):
        return self.t["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)

    def image(self, array: np.ndarray, encoding: str, header):
        msg = numpy_to_image(array, encoding, msg_type=_Mutable)
        return self.t["sensor_msgs/msg/Image"](
            header=header,
            height=msg.height,
            width=msg.width,
            encoding=encoding,
            is_bigendian=msg.is_bigendian,
            step=msg.step,
            data=np.frombuffer(msg.data, np.uint8),
        )

    def compressed(self, jpeg: bytes, header):
        return self.t["sensor_msgs/msg/CompressedImage"](
            header=header, format="rgb8; jpeg compressed bgr8", data=np.frombuffer(jpeg, np.uint8)
        )

    def camera_info(self, intr, header):
        roi = self.t["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        )
        return self.t["sensor_msgs/msg/CameraInfo"](
            header=header,
            height=intr.height,
            width=intr.width,
            distortion_model="plumb_bob",
            d=np.zeros(5),
            k=np.array([intr.fx, 0, intr.cx, 0, intr.fy, intr.cy, 0, 0, 1], float),
            r=np.eye(3).ravel(),
            p=np.array([intr.fx, 0, intr.cx, 0, 0, intr.fy, intr.cy, 0, 0, 0, 1, 0], float),
            binning_x=0,
            binning_y=0,
            roi=roi,
        )

    def pose(self, T: np.ndarray, stamp):
        x, y, z, w = matrix_to_quaternion_xyzw(T[:3, :3])
        position = self.t["geometry_msgs/msg/Point"](x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3]))
        orientation = self.t["geometry_msgs/msg/Quaternion"](x=float(x), y=float(y), z=float(z), w=float(w))
        pose = self.t["geometry_msgs/msg/Pose"](position=position, orientation=orientation)
        return self.t["geometry_msgs/msg/PoseStamped"](header=self.header(stamp, WORLD_FRAME), pose=pose)

    def prompt(self, p, header):
        point = self.t["geometry_msgs/msg/Point32"](x=float(p.point_xy[0]), y=float(p.point_xy[1]), z=0.0)
        x0, y0, x1, y1 = p.box_xyxy
        box = self.t["sensor_msgs/msg/RegionOfInterest"](
            x_offset=x0, y_offset=y0, height=y1 - y0 + 1, width=x1 - x0 + 1, do_rectify=False
        )
        prompt = self.t["isar_ros_msgs/msg/Prompt"](
            header=header, points=[point], labels=np.array([1], np.uint8), has_box=True, box=box
        )
        return self.t["isar_ros_msgs/msg/LabelledPrompt"](name=object_name(p.object_id), prompt=prompt)


class _Mutable:
    """Attribute bag for numpy_to_image when building rosbags messages."""


def export_scene(
    scene: Scene,
    out: Path,
    storage: str = "mcap",
    compressed: bool = False,
    start_time_s: float = REPLAY_START_S,
) -> dict:
    """Write ``scene`` as one rosbag2 bag at ``out`` (a folder, replaced if present). Returns a summary."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = typestore()
    build = _Messages(store)
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    out = Path(out)
    # The writer names its storage file after its folder: write into a staging folder of the final name
    # (so the file is <name>.mcap), then move it into place: a bag folder is complete or absent.
    staging_root = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging_root, ignore_errors=True)
    staging_root.mkdir(parents=True)
    partial = staging_root / out.name
    started = time.perf_counter()
    topics = dict(TOPICS)
    if not compressed:
        topics.pop("/image/compressed")
    modes = [m for m in MODES if (scene.path / PROMPT_FILES[m]).is_file()]
    for mode in MODES:
        if mode not in modes:
            topics.pop(f"/prompts/{mode}")
    prompts = {mode: scene.prompts(mode) for mode in modes}
    with Writer(partial, version=9, storage_plugin=plugin) as writer:
        connections = {
            topic: writer.add_connection(topic, msgtype, typestore=store) for topic, msgtype in topics.items()
        }
        for key, value in {
            "isar_task": scene.task_name,
            "isar_scene": scene.name,
            "isar_split": scene.split,
            "isar_modes": ",".join(modes),
            "isar_fps": str(SCENE_FPS),
            "isar_start_time_s": str(start_time_s),
            "isar_frames": str(len(scene)),
        }.items():
            writer.set_custom_data(key, value)
        intr = scene.intrinsics

        def write(topic, msg, nanoseconds):
            writer.write(connections[topic], nanoseconds, store.serialize_cdr(msg, topics[topic]))

        for frame in scene:
            seconds = frame_seconds(frame.index, start_time_s)
            ns = int(round(seconds * 1e9))
            stamp = build.time(seconds)
            header = build.header(stamp)
            write("/clock", store.types["rosgraph_msgs/msg/Clock"](clock=stamp), ns)
            write("/camera_info", build.camera_info(intr, header), ns)
            pose = frame.pose_optical()
            if pose is not None:
                write("/camera_pose", build.pose(pose, stamp), ns)
            depth = frame.depth_mm()
            if depth is not None:
                write("/depth", build.image(depth, "16UC1", header), ns)
            gt = frame.ground_truth()
            if gt is not None:
                write(
                    "/ground_truth", build.image(np.clip(gt, 0, 65535).astype(np.uint16), "16UC1", header), ns
                )
            write("/image", build.image(frame.rgb(), "rgb8", header), ns)
            if compressed:
                write("/image/compressed", build.compressed(frame.rgb_path.read_bytes(), header), ns)
            for mode in modes:
                for p in prompts[mode].get(frame.name, []):
                    write(f"/prompts/{mode}", build.prompt(p, header), ns)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    staging_root.rmdir()
    seconds = time.perf_counter() - started
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {
        "bag": str(out),
        "frames": len(scene),
        "seconds": seconds,
        "frames_per_s": len(scene) / seconds,
        "bytes": size,
    }


def export_dataset(
    data: Path, out: Path, storage: str = "mcap", compressed: bool = False, progress: bool = True
) -> list[dict]:
    """Every scene of every task as ``out/<task>/<split>/<scene>`` bags; resumes: finished bags are skipped.

    ``out/progress.json`` lists the bags written (a bag folder appears only when complete).
    """
    from tqdm import tqdm

    dataset = IsarDataset(data)
    scenes = [s for task in dataset.tasks for s in task.train_scenes + task.test_scenes]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ledger = out / "progress.json"
    done = json.loads(ledger.read_text()) if ledger.is_file() else {}
    results = []
    for scene in tqdm(scenes, unit="scene", disable=not progress, desc="bags"):
        target = out / scene.task_name / scene.split / scene.name
        key = str(target.relative_to(out))
        if key in done and target.is_dir():
            continue
        results.append(export_scene(scene, target, storage, compressed))
        done[key] = results[-1]
        tmp = ledger.with_suffix(".tmp")
        tmp.write_text(json.dumps(done, indent=1))
        tmp.replace(ledger)
    return results


class BagFrame:
    """One frame of a :class:`BagScene`, with the accessors of :class:`isar_ros.isar.dataset.Frame`."""

    def __init__(self, scene: BagScene, index: int):
        self.scene, self.index = scene, index
        self.name = scene.frame_names[index]

    def _image(self, topic: str):
        from isar_ros.msgio.image_codec import image_to_numpy

        raw = self.scene.raw[topic].get(self.index)
        return None if raw is None else image_to_numpy(self.scene.decode(topic, raw))

    def rgb(self) -> np.ndarray:
        return self._image("/image")

    def depth_mm(self):
        return self._image("/depth")

    def ground_truth(self):
        return self._image("/ground_truth")

    def pose_optical(self):
        from isar_ros.core.geometry import pose_matrix

        raw = self.scene.raw["/camera_pose"].get(self.index)
        if raw is None:
            return None
        pose = self.scene.decode("/camera_pose", raw).pose
        return pose_matrix(
            [pose.position.x, pose.position.y, pose.position.z],
            [pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w],
        )


class BagScene:
    """A scene bag written by :func:`export_scene`, read like a scene folder (the sim bridge plays either).

    The bag is read once: each message's raw CDR bytes are kept per topic and frame (frame index from
    the stamp and the bag's start time), and decoded only when asked for.
    """

    def __init__(self, path: str | Path):
        import yaml
        from rosbags.rosbag2 import Reader

        self.path = Path(path)
        meta_file = self.path / "metadata.yaml"
        if not meta_file.is_file():
            raise MissingResource(f"{self.path}: not a rosbag2 bag (no metadata.yaml)")
        custom = yaml.safe_load(meta_file.read_text())["rosbag2_bagfile_information"].get("custom_data") or {}
        missing = {"isar_task", "isar_scene", "isar_split", "isar_frames"} - set(custom)
        if missing:
            raise InvalidInput(
                f"{self.path}: not an ISAR scene bag (metadata lacks {sorted(missing)}); write it with "
                "isar-ros bag export"
            )
        self.task_name, self.name, self.split = (
            custom["isar_task"],
            custom["isar_scene"],
            custom["isar_split"],
        )
        self.start_time_s = float(custom.get("isar_start_time_s", REPLAY_START_S))
        count = int(custom["isar_frames"])
        self.frame_names = [frame_name(i) for i in range(count)]
        self.store = typestore()
        self.msgtypes: dict[str, str] = {}
        self.raw: dict[str, dict[int, bytes]] = {topic: {} for topic in TOPICS}
        self.prompt_raw: dict[str, list[tuple[int, bytes]]] = {mode: [] for mode in MODES}
        with Reader(self.path) as reader:
            for connection, ns, data in reader.messages():
                self.msgtypes[connection.topic] = connection.msgtype
                index = frame_index(divmod(ns, 1_000_000_000), self.start_time_s)
                if connection.topic.startswith("/prompts/"):
                    self.prompt_raw[connection.topic.split("/")[-1]].append((index, bytes(data)))
                elif connection.topic in self.raw:
                    self.raw[connection.topic][index] = bytes(data)
        if len(self.raw["/image"]) != count:
            raise InvalidInput(
                f"{self.path}: {len(self.raw['/image'])} images for {count} frames; the bag is incomplete"
            )

    def decode(self, topic: str, raw: bytes):
        return self.store.deserialize_cdr(raw, self.msgtypes[topic])

    def __len__(self) -> int:
        return len(self.frame_names)

    def __iter__(self):
        return (BagFrame(self, i) for i in range(len(self)))

    def frame(self, index: int) -> BagFrame:
        return BagFrame(self, index)

    def frame_by_name(self, name: str) -> BagFrame:
        return BagFrame(self, self.frame_names.index(name))

    @property
    def intrinsics(self) -> PinholeCamera:
        info = self.decode("/camera_info", self.raw["/camera_info"][0])
        return PinholeCamera.from_k(info.k, int(info.width), int(info.height))

    def prompts(self, mode: str) -> dict:
        """Frame name -> prompts, from the bag's ``/prompts/<mode>`` topic (as Scene.prompts)."""
        if not self.prompt_raw.get(mode):
            raise InvalidInput(f"{self.path}: no /prompts/{mode} topic (only train scene bags carry prompts)")
        prompts: dict[str, list] = {}
        for index, raw in self.prompt_raw[mode]:
            msg = self.decode(f"/prompts/{mode}", raw)
            box = msg.prompt.box
            prompts.setdefault(self.frame_names[index], []).append(
                IsarPrompt(
                    isar_id_of(msg.name),
                    (int(msg.prompt.points[0].x), int(msg.prompt.points[0].y)),
                    (
                        int(box.x_offset),
                        int(box.y_offset),
                        int(box.x_offset + box.width - 1),
                        int(box.y_offset + box.height - 1),
                    ),
                )
            )
        return prompts


def score_recorded_bag(
    bag: Path, dataset: IsarDataset, topic: str = RECORDED_TOPIC
) -> tuple[str, SceneRecord]:
    """Score the InstanceSegmentation messages recorded in ``bag`` (``isar-ros bag record``) against their
    scene.

    The bag's metadata names the task, scene and start time; object names must be the ISAR ids the
    objects were taught under (as the sim bridge teaches them). Returns (mode label, record).
    """
    import yaml
    from rosbags.rosbag2 import Reader

    bag = Path(bag)
    custom = (
        yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"].get("custom_data")
        or {}
    )
    if "isar_task" not in custom or "isar_scene" not in custom:
        raise InvalidInput(
            f"{bag}: the recording does not say which scene it answers; record with --task and --scene"
        )
    task = dataset.task(custom["isar_task"])
    scenes = [s for s in task.test_scenes + task.train_scenes if s.name == custom["isar_scene"]]
    if not scenes:
        raise InvalidInput(
            f"{bag}: scene {custom['isar_scene']!r} is not in task {task.name} of {dataset.root}"
        )
    scene = scenes[0]
    start = float(custom.get("isar_start_time_s", REPLAY_START_S))
    store = typestore()
    predictions = {}
    with Reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            raise InvalidInput(f"{bag}: no {topic} messages recorded")
        for connection, _, raw in reader.messages(connections=connections):
            msg = store.deserialize_cdr(raw, connection.msgtype)
            index = frame_index((msg.header.stamp.sec, msg.header.stamp.nanosec), start)
            if not 0 <= index < len(scene):
                continue
            labels = image_to_numpy(msg.label_image).astype(np.int64)
            lookup = np.zeros(max([int(labels.max())] + [i.object_id for i in msg.instances]) + 1, np.int64)
            for instance in msg.instances:
                try:
                    lookup[instance.object_id] = isar_id_of(instance.name)
                except InvalidInput as error:
                    raise InvalidInput(f"{bag}: object {instance.object_id}: {error}") from None
            predictions[scene.frame_names[index]] = lookup[labels]
    score = score_scene(scene, task.semantic_ids, predictions.items())
    return custom.get("isar_mode", "recorded"), SceneRecord(task.name, scene.name, scene.attributes, score)
