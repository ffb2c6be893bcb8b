"""The ISAR dataset layout on disk: folder and file names, frame names, ids, camera conventions.

The one place these are spelled out; the reader (:mod:`isar_ros.isar.dataset`), the synthetic
generator and the importers all use it::

    <root>/<task>/info.json                      tracked objects, scene lists
    <root>/<task>/{train,test}/<scene>/
        color/NNNNNNN.jpg                         RGB frames (rgb/ is accepted as well)
        depth/NNNNNNN.png                         uint16 depth in millimetres
        semantic_raw/NNNNNNN.{npy,png}            instance ids (benchmark objects >= 1660)
        semantic/NNNNNNN.png                      the same ids as colours (for people)
        camera_poses.json                         frame -> position + orientation (w, x, y, z), OpenGL axes
        color_map.json  attributes.json           id -> BGR colour; scene attributes
        prompts_single.json  prompts_multi.json   train scenes: prompts per frame and object
        camera.json                               optional (our extension): real intrinsics of imported data
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from isar_ros.core.geometry import PinholeCamera, matrix_to_quaternion_xyzw, quaternion_xyzw_to_matrix
from isar_ros.errors import InvalidInput

FRAME_NAME_DIGITS = 7
FIRST_OBJECT_ID = 1660  # benchmark objects have ids >= 1660; lower ids are scene geometry
HORIZONTAL_FOV_DEG = 90.0
SPLITS = ("train", "test")
MODES = ("single_shot", "multi_shot")

INFO = "info.json"
COLOR_DIRS = ("color", "rgb")  # the first is written; both are read
DEPTH_DIR = "depth"
GROUND_TRUTH_DIR = "semantic_raw"
SEMANTIC_DIR = "semantic"
CAMERA_POSES = "camera_poses.json"
COLOR_MAP = "color_map.json"
ATTRIBUTES_FILE = "attributes.json"
PROMPT_FILES = {"single_shot": "prompts_single.json", "multi_shot": "prompts_multi.json"}
CAMERA_FILE = (
    "camera.json"  # our extension: the real intrinsics of imported scenes (fx, fy, cx, cy, width, height)
)
FRAME_SUFFIX, DEPTH_SUFFIX, GROUND_TRUTH_SUFFIXES = ".jpg", ".png", (".npy", ".png")
MM_PER_M = 1000.0  # depth PNGs hold millimetres

# OpenGL/Habitat camera axes (x right, y up, looking along -z) -> OpenCV optical axes (x right, y down, z
# forward)
T_OPENGL_OPTICAL = np.diag([1.0, -1.0, -1.0, 1.0])


class IsarFormatError(InvalidInput):
    """A file of an ISAR dataset is missing or malformed; the message names the file."""


def frame_name(index: int) -> str:
    """``0000042`` for frame 42."""
    return f"{index:0{FRAME_NAME_DIGITS}d}"


def scene_dir(root: Path, task: str, split: str, scene: str) -> Path:
    return Path(root) / task / split / scene


def isar_pose_entry(T_world_camera_gl: np.ndarray) -> dict[str, list[float]]:
    """A ``camera_poses.json`` entry: position and orientation as (w, x, y, z), OpenGL axes."""
    x, y, z, w = matrix_to_quaternion_xyzw(T_world_camera_gl[:3, :3])
    return {
        "position": [float(v) for v in T_world_camera_gl[:3, 3]],
        "orientation": [float(w), float(x), float(y), float(z)],
    }


def pose_from_isar_entry(position: Any, orientation_wxyz: Any) -> np.ndarray:
    """The inverse of :func:`isar_pose_entry`: 4x4 camera-to-world (OpenGL axes)."""
    w, x, y, z = np.asarray(orientation_wxyz, float)
    T = np.eye(4)
    T[:3, :3] = quaternion_xyzw_to_matrix([x, y, z, w])
    T[:3, 3] = np.asarray(position, float)
    return T


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise IsarFormatError(f"{path}: file is missing")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IsarFormatError(f"{path}: not valid JSON ({error})") from error


def read_image(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise IsarFormatError(f"{path}: unreadable image (missing, empty or not an image)")
    return image


def isar_camera(width: int, height: int) -> PinholeCamera:
    """The ISAR camera for an image size: 90 degree horizontal field of view (:class:`PinholeCamera`)."""
    return PinholeCamera.from_horizontal_fov(width, height, HORIZONTAL_FOV_DEG)
