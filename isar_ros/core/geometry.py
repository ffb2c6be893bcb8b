"""Cameras, rotations and poses; projecting RViz clicks (3-D points in a fixed frame) into the image.

Conventions: ``T_world_camera`` is the camera-to-world pose of the *optical* frame (x right, y down,
z forward, as ROS camera frames and ``sensor_msgs/CameraInfo`` use); pixels are (u = column, v = row).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from isar_ros.errors import InvalidInput


class ProjectionError(InvalidInput):
    """A 3-D click that cannot be turned into a pixel; the message says why."""


@dataclass(frozen=True)
class PinholeCamera:
    """Pinhole intrinsics in pixels for an image of ``width`` x ``height`` (the one camera type of the
    project)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k: Sequence[float] | np.ndarray, width: int, height: int) -> PinholeCamera:
        """From a row-major 3x3 K (``sensor_msgs/CameraInfo.k``)."""
        k = np.asarray(k, float).reshape(3, 3)
        if k[0, 0] <= 0 or k[1, 1] <= 0:
            raise ProjectionError("camera_info has no focal length (K is zero); is the camera calibrated?")
        return cls(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), int(width), int(height))

    @classmethod
    def from_horizontal_fov(cls, width: int, height: int, hfov_deg: float) -> PinholeCamera:
        """Square pixels, principal point at the image centre (ISAR: 90 degrees, so fx = W / 2 exactly)."""
        focal = round((width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0), 9)
        return cls(focal, focal, width / 2.0, height / 2.0, int(width), int(height))

    @property
    def matrix(self) -> np.ndarray:
        """3x3 K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class FrameGeometry:
    """What a depth camera on a localised robot adds to one colour image.

    ``depth_m``: H x W planar depth in metres registered to the colour image (NaN, 0 or inf = no reading);
    ``camera``: its intrinsics; ``T_world_camera``: the optical frame's camera-to-world pose (None where the
    pose is unknown: 3-D in the camera frame only, no pose prior).
    """

    depth_m: np.ndarray
    camera: PinholeCamera
    T_world_camera: np.ndarray | None = None


@dataclass(frozen=True)
class Location:
    """An instance's visible surface in one frame: centroid and extent in metres, pixels used."""

    centroid: np.ndarray  # (3,) metres
    extent: np.ndarray  # (3,) metres, along the frame's x, y, z
    depth_pixels: int


def quaternion_xyzw_to_matrix(quaternion_xyzw: Sequence[float] | np.ndarray) -> np.ndarray:
    """3x3 rotation of a quaternion in ROS order (x, y, z, w); normalised first."""
    q = np.asarray(quaternion_xyzw, float)
    x, y, z, w = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion_xyzw(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion in ROS order (x, y, z, w), with w >= 0."""
    m = rotation
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        wxyz = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax([m[0, 0], m[1, 1], m[2, 2]]))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        wxyz = [0.0, 0.0, 0.0, 0.0]
        wxyz[0] = (m[k, j] - m[j, k]) / s
        wxyz[1 + i] = 0.25 * s
        wxyz[1 + j] = (m[j, i] + m[i, j]) / s
        wxyz[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(wxyz)
    q = q if q[0] >= 0 else -q
    return q[[1, 2, 3, 0]]


def pose_matrix(
    position_xyz: Sequence[float] | np.ndarray, quaternion_xyzw: Sequence[float] | np.ndarray
) -> np.ndarray:
    """4x4 from a ROS pose (position, quaternion x, y, z, w); ProjectionError if not finite or zero."""
    q = np.asarray(quaternion_xyzw, float)
    if not np.isfinite(q).all() or np.linalg.norm(q) < 1e-9 or not np.isfinite(position_xyz).all():
        raise ProjectionError("the camera pose is not finite or its quaternion is zero")
    T = np.eye(4)
    T[:3, :3] = quaternion_xyzw_to_matrix(q)
    T[:3, 3] = position_xyz
    return T


def project_point(
    point_world: Sequence[float] | np.ndarray,
    T_world_camera: np.ndarray,
    camera: PinholeCamera,
    depth_m: np.ndarray | None = None,
    depth_tolerance_m: float = 0.15,
) -> tuple[float, float]:
    """Pixel (u, v) of a world point; ProjectionError if behind the camera, outside the image, or hidden.

    With ``depth_m`` (planar depth in metres, H x W, NaN/0 = no reading) the point must lie within
    ``depth_tolerance_m`` of the depth seen at its pixel: a click on a surface the camera does not see
    (behind a wall, another viewpoint) is refused rather than taught on the wrong object.
    """
    p = np.linalg.inv(T_world_camera) @ np.append(np.asarray(point_world, float), 1.0)
    if not np.isfinite(p).all():
        raise ProjectionError("the clicked point is not finite")
    if p[2] <= 1e-6:
        raise ProjectionError(
            f"the clicked point is behind the camera ({-p[2]:.2f} m behind it); click something in view"
        )
    u = camera.fx * p[0] / p[2] + camera.cx
    v = camera.fy * p[1] / p[2] + camera.cy
    if not (0 <= u < camera.width and 0 <= v < camera.height):
        raise ProjectionError(
            f"the clicked point projects to pixel ({u:.0f}, {v:.0f}), outside the "
            f"{camera.width}x{camera.height} image; click something in the camera's view"
        )
    if depth_m is not None:
        seen = float(depth_m[int(v), int(u)])
        if np.isfinite(seen) and seen > 0 and abs(seen - p[2]) > depth_tolerance_m:
            raise ProjectionError(
                f"the clicked point is {p[2]:.2f} m from the camera, but the camera sees a surface at "
                f"{seen:.2f} m at pixel ({u:.0f}, {v:.0f}): it is hidden from this view"
            )
    return float(u), float(v)
