"""Reader for datasets in the ISAR benchmark layout (see docs/isar-format.md).

::

    dataset = IsarDataset("data/isar_demo")
    for task in dataset.tasks:
        for scene in task.test_scenes:
            for frame in scene:                 # sorted frame order; nothing is read until asked
                rgb = frame.rgb()               # H x W x 3 uint8, RGB
                gt = frame.ground_truth()       # H x W instance ids (uint16/uint32), or None

Everything is lazy: a scene lists its frame names, and a frame reads its files when asked, so a
400-frame scene is never held in memory at once. Every format problem raises
:class:`IsarFormatError` naming the file and what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from isar_ros.core.geometry import FrameGeometry, PinholeCamera
from isar_ros.errors import ConfigurationError
from isar_ros.isar.layout import (
    ATTRIBUTES_FILE,
    CAMERA_FILE,
    CAMERA_POSES,
    COLOR_DIRS,
    COLOR_MAP,
    DEPTH_DIR,
    DEPTH_SUFFIX,
    FIRST_OBJECT_ID,
    FRAME_SUFFIX,
    GROUND_TRUTH_DIR,
    INFO,
    MM_PER_M,
    MODES,
    PROMPT_FILES,
    T_OPENGL_OPTICAL,
    IsarFormatError,
    frame_name,
    isar_camera,
    pose_from_isar_entry,
    read_image,
    read_json,
)
from isar_ros.msgio.timing import SCENE_FPS

ATTRIBUTES = ("DYN", "CLA", "CLT", "SML", "SMF", "FST")
__all__ = [
    "ATTRIBUTES",
    "FIRST_OBJECT_ID",
    "MODES",
    "T_OPENGL_OPTICAL",
    "IsarFormatError",
    "frame_name",
    "IsarDataset",
    "Task",
    "Scene",
    "Frame",
    "IsarPrompt",
    "optical_pose",
]


@dataclass(frozen=True)
class IsarPrompt:
    """One ISAR prompt: a positive point and a tight, inclusive box, in full-resolution pixels."""

    object_id: int
    point_xy: tuple[int, int]  # x = column, y = row
    box_xyxy: tuple[int, int, int, int]  # x_min, y_min, x_max, y_max, inclusive


def optical_pose(T_world_camera_gl: np.ndarray) -> np.ndarray:
    """Camera-to-world pose with OpenCV optical axes (x right, y down, z forward), as ROS expects."""
    return T_world_camera_gl @ T_OPENGL_OPTICAL


class Frame:
    """One frame of a scene; every accessor reads its file on demand."""

    def __init__(self, scene: Scene, index: int, name: str):
        self.scene, self.index, self.name = scene, index, name

    def __repr__(self) -> str:
        return f"Frame({self.scene.name}/{self.name})"

    @property
    def rgb_path(self) -> Path:
        return self.scene.rgb_dir / f"{self.name}{FRAME_SUFFIX}"

    def bgr(self) -> np.ndarray:
        """H x W x 3 uint8 in OpenCV's BGR order (what the ISAR code works on)."""
        return read_image(self.rgb_path, cv2.IMREAD_COLOR)

    def rgb(self) -> np.ndarray:
        """H x W x 3 uint8, RGB."""
        return cv2.cvtColor(self.bgr(), cv2.COLOR_BGR2RGB)

    def depth_mm(self) -> np.ndarray | None:
        """H x W uint16 planar depth in millimetres (0 = no reading), or None without depth/."""
        path = self.scene.path / DEPTH_DIR / f"{self.name}{DEPTH_SUFFIX}"
        if not path.is_file():
            return None
        depth = read_image(path, cv2.IMREAD_UNCHANGED)
        if depth.dtype != np.uint16 or depth.ndim != 2:
            raise IsarFormatError(
                f"{path}: depth must be a one-channel uint16 PNG in mm, got {depth.dtype} {depth.shape}"
            )
        return depth

    def depth_m(self) -> np.ndarray | None:
        """H x W float32 planar depth in metres (NaN = no reading), or None without depth/."""
        depth = self.depth_mm()
        if depth is None:
            return None
        metres = depth.astype(np.float32) / MM_PER_M
        metres[depth == 0] = np.nan
        return metres

    def ground_truth(self) -> np.ndarray | None:
        """H x W instance ids from semantic_raw/ (``.npy`` first, then ``.png``, as the evaluator), or
        None."""
        folder = self.scene.path / GROUND_TRUTH_DIR
        npy, png = folder / f"{self.name}.npy", folder / f"{self.name}.png"
        if npy.is_file():
            try:
                ids = np.load(npy, allow_pickle=False)
            except (OSError, ValueError) as error:
                raise IsarFormatError(f"{npy}: unreadable ground truth ({error})") from error
        elif png.is_file():
            ids = read_image(png, cv2.IMREAD_UNCHANGED)
        else:
            return None
        if ids.ndim != 2 or ids.dtype.kind not in "ui":
            raise IsarFormatError(
                f"{folder}/{self.name}: ground truth must be a 2-D integer id image, got {ids.dtype} "
                f"{ids.shape}"
            )
        return ids

    def pose(self) -> np.ndarray | None:
        """4x4 camera-to-world pose (OpenGL camera axes, Y-up world), or None if the scene has none."""
        return self.scene.poses().get(self.name)

    def pose_optical(self) -> np.ndarray | None:
        """4x4 camera-to-world pose with OpenCV optical camera axes, or None."""
        pose = self.pose()
        return None if pose is None else optical_pose(pose)

    def geometry(self) -> FrameGeometry | None:
        """What a method may use besides the image: depth (metres), the scene's intrinsics and the optical
        camera pose (None where the scene has no poses); None without depth/. Never the ground truth."""
        depth = self.depth_m()
        if depth is None:
            return None
        return FrameGeometry(depth, self.scene.intrinsics, self.pose_optical())

    @property
    def stamp_s(self) -> float:
        """Time of the frame in the sequence, in seconds (30 fps)."""
        return self.index / SCENE_FPS


class Scene:
    """One recorded sequence: ``<task>/<split>/<scene>/``."""

    def __init__(self, path: Path, task_name: str, split: str):
        self.path, self.task_name, self.split, self.name = Path(path), task_name, split, Path(path).name
        dirs = [self.path / d for d in COLOR_DIRS if (self.path / d).is_dir()]
        if not dirs:
            raise IsarFormatError(f"{self.path}: no color/ (or rgb/) folder of frames")
        self.rgb_dir = dirs[0]
        self.frame_names = sorted(p.stem for p in self.rgb_dir.glob(f"*{FRAME_SUFFIX}"))
        if not self.frame_names:
            raise IsarFormatError(f"{self.rgb_dir}: no .jpg frames")

    def __repr__(self) -> str:
        return f"Scene({self.task_name}/{self.split}/{self.name}, {len(self)} frames)"

    def __len__(self) -> int:
        return len(self.frame_names)

    def __iter__(self) -> Iterator[Frame]:
        return (Frame(self, i, name) for i, name in enumerate(self.frame_names))

    def frame(self, index: int) -> Frame:
        return Frame(self, index, self.frame_names[index])

    def frame_by_name(self, name: str) -> Frame:
        try:
            return self.frame(self.frame_names.index(name))
        except ValueError:
            raise IsarFormatError(f"{self.rgb_dir}: no frame {name}.jpg") from None

    @cached_property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the frames, read from the first one."""
        height, width = self.frame(0).bgr().shape[:2]
        return width, height

    @property
    def intrinsics(self) -> PinholeCamera:
        """The scene's camera: ``camera.json`` where an importer wrote one, else the ISAR camera (90 degree
        horizontal field of view) for the image size."""
        path = self.path / CAMERA_FILE
        if not path.is_file():
            return isar_camera(*self.image_size)
        raw = read_json(path)
        try:
            return PinholeCamera(
                float(raw["fx"]),
                float(raw["fy"]),
                float(raw["cx"]),
                float(raw["cy"]),
                int(raw["width"]),
                int(raw["height"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise IsarFormatError(f"{path}: needs fx, fy, cx, cy, width, height ({error!r})") from error

    @cached_property
    def color_map(self) -> dict[int, tuple[int, int, int]]:
        """Semantic id -> colour (b, g, r)."""
        return parse_color_map(read_json(self.path / COLOR_MAP), self.path / COLOR_MAP)

    @cached_property
    def attributes(self) -> dict[str, bool]:
        path = self.path / ATTRIBUTES_FILE
        if not path.is_file():
            return {}
        raw = read_json(path)
        if not isinstance(raw, dict):
            raise IsarFormatError(f"{path}: expected an object of attribute -> bool")
        return {str(k): bool(v) for k, v in raw.items()}

    def poses(self) -> dict[str, np.ndarray]:
        return self._poses

    @cached_property
    def _poses(self) -> dict[str, np.ndarray]:
        path = self.path / CAMERA_POSES
        if not path.is_file():
            return {}
        raw = read_json(path)
        poses = {}
        try:
            for name, entry in raw.items():
                position = np.asarray(entry["position"], float)
                orientation = np.asarray(entry["orientation"], float)
                if position.shape != (3,) or orientation.shape != (4,):
                    raise ValueError("position needs 3 numbers and orientation 4 (w, x, y, z)")
                if (
                    not (np.isfinite(position).all() and np.isfinite(orientation).all())
                    or np.linalg.norm(orientation) < 1e-9
                ):
                    raise ValueError("non-finite numbers or a zero quaternion")
                poses[name] = pose_from_isar_entry(position, orientation)
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise IsarFormatError(f"{path}: bad pose entry ({error})") from error
        return poses

    def prompts(self, mode: str) -> dict[str, list[IsarPrompt]]:
        """Frame name -> prompts on that frame, for ``single_shot`` or ``multi_shot`` (train scenes)."""
        if mode not in PROMPT_FILES:
            raise ConfigurationError(f"unknown mode {mode!r}; use one of {MODES}")
        path = self.path / PROMPT_FILES[mode]
        raw = read_json(path)
        width, height = self.image_size
        prompts: dict[str, list[IsarPrompt]] = {}
        try:
            for name, objects in sorted(raw.items()):
                if name not in self.frame_names:
                    raise IsarFormatError(f"{path}: prompt for frame {name}, which is not in {self.rgb_dir}")
                for object_id, entry in objects.items():
                    x, y = (int(v) for v in entry["point_prompt"])
                    box = tuple(int(v) for v in entry["bbox"])
                    if len(box) != 4:
                        raise IsarFormatError(
                            f"{path}: frame {name}, object {object_id}: bbox needs 4 numbers"
                        )
                    if not (0 <= x < width and 0 <= y < height):
                        raise IsarFormatError(
                            f"{path}: frame {name}, object {object_id}: point ({x}, {y}) is outside the "
                            f"{width}x{height} image"
                        )
                    if not (0 <= box[0] <= box[2] < width and 0 <= box[1] <= box[3] < height):
                        raise IsarFormatError(
                            f"{path}: frame {name}, object {object_id}: bbox {list(box)} is empty or "
                            f"outside the {width}x{height} image"
                        )
                    prompts.setdefault(name, []).append(IsarPrompt(int(object_id), (x, y), box))
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            if isinstance(error, IsarFormatError):
                raise
            raise IsarFormatError(f"{path}: malformed prompt entry ({error!r})") from error
        return prompts


def parse_color_map(raw: Any, path: Path) -> dict[int, tuple[int, int, int]]:
    if not isinstance(raw, dict):
        raise IsarFormatError(f"{path}: expected an object of id -> [b, g, r]")
    colors = {}
    for key, value in raw.items():
        try:
            color = tuple(int(c) for c in value)
            if len(color) != 3 or not all(0 <= c <= 255 for c in color):
                raise ValueError
            colors[int(key)] = color
        except (TypeError, ValueError):
            raise IsarFormatError(
                f"{path}: colour of id {key!r} must be [b, g, r] in 0..255, got {value!r}"
            ) from None
    return colors


class Task:
    """One task folder: ``info.json`` and its ``train/`` and ``test/`` scenes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.name = self.path.name
        info_path = self.path / INFO
        info = read_json(info_path)
        try:
            self.task_name = str(info["task_name"])
            self.semantic_ids = sorted(int(i) for i in info["semantic_ids"])
            self.num_prompts_multi = int(info.get("num_prompts_multi", 0))
            self.color_map = parse_color_map(info.get("color_map", {}), info_path)
        except (KeyError, TypeError, ValueError) as error:
            raise IsarFormatError(f"{info_path}: missing or malformed field ({error!r})") from error
        self.train_scenes = self._scenes("train")
        self.test_scenes = self._scenes("test")

    def __repr__(self) -> str:
        scenes = f"{len(self.train_scenes)} train, {len(self.test_scenes)} test"
        return f"Task({self.name}, ids={self.semantic_ids}, {scenes})"

    def _scenes(self, split: str) -> list[Scene]:
        folder = self.path / split
        if not folder.is_dir():
            raise IsarFormatError(f"{folder}: missing {split}/ folder")
        return [Scene(p, self.name, split) for p in sorted(folder.iterdir()) if p.is_dir()]

    def prompts(self, mode: str) -> list[tuple[Scene, str, list[IsarPrompt]]]:
        """Every prompted frame of every train scene: (scene, frame name, prompts), in order.

        Unlike the official code (a dict merge that keeps only the last train scene's prompts),
        the prompts of all train scenes are kept.
        """
        return [(scene, name, ps) for scene in self.train_scenes for name, ps in scene.prompts(mode).items()]


class IsarDataset:
    """A dataset folder: one sub-folder per task (``*.json`` files beside them are skipped)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise IsarFormatError(f"{self.root}: dataset folder does not exist")
        self.tasks = [Task(p) for p in sorted(self.root.iterdir()) if p.is_dir()]
        if not self.tasks:
            raise IsarFormatError(f"{self.root}: no task folders")

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise ConfigurationError(f"no task {name!r} in {self.root}; tasks: {[t.name for t in self.tasks]}")
