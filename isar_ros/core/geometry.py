"""Projecting RViz clicks (3-D points in a fixed frame) into the camera image.

Conventions: ``T_world_camera`` is the camera-to-world pose of the *optical* frame (x right, y down,
z forward, as ROS camera frames and ``sensor_msgs/CameraInfo`` use); pixels are (u = column, v = row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class ProjectionError(ValueError):
    """A 3-D click that cannot be turned into a pixel; the message says why."""


@dataclass(frozen=True)
class PinholeCamera:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k, width: int, height: int) -> "PinholeCamera":
        k = np.asarray(k, float).reshape(3, 3)
        if k[0, 0] <= 0 or k[1, 1] <= 0:
            raise ProjectionError("camera_info has no focal length (K is zero); is the camera calibrated?")
        return cls(k[0, 0], k[1, 1], k[0, 2], k[1, 2], int(width), int(height))


def pose_matrix(position_xyz, quaternion_xyzw) -> np.ndarray:
    """4x4 from a ROS pose (position, quaternion x, y, z, w)."""
    q = np.asarray(quaternion_xyzw, float)
    norm = np.linalg.norm(q)
    if not np.isfinite(q).all() or norm < 1e-9 or not np.isfinite(position_xyz).all():
        raise ProjectionError("the camera pose is not finite or its quaternion is zero")
    x, y, z, w = q / norm
    T = np.eye(4)
    T[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                 [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                 [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]
    T[:3, 3] = position_xyz
    return T


def project_point(point_world, T_world_camera: np.ndarray, camera: PinholeCamera,
                  depth_m: np.ndarray | None = None, depth_tolerance_m: float = 0.15) -> tuple[float, float]:
    """Pixel (u, v) of a world point; ProjectionError if behind the camera, outside the image, or hidden.

    With ``depth_m`` (planar depth in metres, H x W, NaN/0 = no reading) the point must lie within
    ``depth_tolerance_m`` of the depth seen at its pixel: a click on a surface the camera does not see
    (behind a wall, another viewpoint) is refused rather than taught on the wrong object.
    """
    p = np.linalg.inv(T_world_camera) @ np.append(np.asarray(point_world, float), 1.0)
    if not np.isfinite(p).all():
        raise ProjectionError("the clicked point is not finite")
    if p[2] <= 1e-6:
        raise ProjectionError(f"the clicked point is behind the camera ({-p[2]:.2f} m behind it); click something in view")
    u = camera.fx * p[0] / p[2] + camera.cx
    v = camera.fy * p[1] / p[2] + camera.cy
    if not (0 <= u < camera.width and 0 <= v < camera.height):
        raise ProjectionError(f"the clicked point projects to pixel ({u:.0f}, {v:.0f}), outside the "
                              f"{camera.width}x{camera.height} image; click something in the camera's view")
    if depth_m is not None:
        seen = float(depth_m[int(v), int(u)])
        if np.isfinite(seen) and seen > 0 and abs(seen - p[2]) > depth_tolerance_m:
            raise ProjectionError(f"the clicked point is {p[2]:.2f} m from the camera, but the camera sees a surface at "
                                  f"{seen:.2f} m at pixel ({u:.0f}, {v:.0f}): it is hidden from this view")
    return float(u), float(v)
