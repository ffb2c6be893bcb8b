"""A small vectorised numpy ray caster over analytic shapes, for synthetic ISAR scenes.

World: Y up, metres. Camera: OpenGL axes (x right, y up, looking along -z), pose camera-to-world,
as in ISAR. Each pixel (u, v) casts the ray through ((u - cx)/fx, -(v - cy)/fy, -1) in camera
axes, so the ray parameter of a hit *is* the planar depth, matching ISAR's back-projection
X = (u - cx) d / fx, Y = -(v - cy) d / fy, Z = -d.

Shapes: the room (inside of an axis-aligned box), and objects: yawed boxes, spheres and upright
cylinders, each with a semantic id and a procedural texture (two colours and a pattern evaluated
on the shape's local surface coordinates, so the texture moves with the object). Shading is
Lambertian under one directional light plus ambient light.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EPS = 1e-6
PATTERNS = ("solid", "stripes", "checker", "dots", "rings", "noise")


@dataclass
class Texture:
    color_a: tuple[float, float, float]  # RGB in [0, 1]
    color_b: tuple[float, float, float]
    pattern: str = "solid"
    frequency: float = 10.0  # pattern cycles per metre
    seed: int = 0

    def shade(self, local: np.ndarray) -> np.ndarray:
        """Albedo (N x 3, RGB) at surface points given in the shape's local coordinates (N x 3)."""
        f = self.frequency
        x, y, z = local[:, 0], local[:, 1], local[:, 2]
        if self.pattern == "stripes":
            t = (np.sin(2 * np.pi * f * y) > 0).astype(float)
        elif self.pattern == "checker":
            t = ((np.floor(f * x) + np.floor(f * y) + np.floor(f * z)) % 2).astype(float)
        elif self.pattern == "dots":
            cell = np.stack([x, y, z], 1) * f
            t = (np.linalg.norm(cell - np.round(cell), axis=1) < 0.3).astype(float)
        elif self.pattern == "rings":
            t = (np.sin(2 * np.pi * f * np.sqrt(x * x + z * z)) > 0).astype(float)
        elif self.pattern == "noise":
            phase = self.seed * 0.7
            t = 0.5 + 0.25 * (
                np.sin(f * 6.1 * x + phase) * np.sin(f * 5.3 * y + 2 * phase)
                + np.sin(f * 4.7 * z + 3 * phase)
            )
            t = np.clip(t, 0, 1)
        else:
            t = np.zeros(len(local))
        a, b = np.asarray(self.color_a, np.float32), np.asarray(self.color_b, np.float32)
        t = t.astype(np.float32)
        return a[None, :] * (1 - t[:, None]) + b[None, :] * t[:, None]


def yaw_matrix(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


@dataclass
class Shape:
    """An object: ``kind`` in {"box", "sphere", "cylinder"}, centred at ``center``, yawed about +Y.

    ``size``: box half-extents (x, y, z); sphere (r, r, r); cylinder (r, half height, r).
    """

    kind: str
    center: np.ndarray
    size: np.ndarray
    semantic_id: int
    texture: Texture
    yaw: float = 0.0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))  # m/s, for moving objects

    def at_time(self, t: float) -> Shape:
        if not np.any(self.velocity):
            return self
        return Shape(
            self.kind,
            self.center + self.velocity * t,
            self.size,
            self.semantic_id,
            self.texture,
            self.yaw,
            self.velocity,
        )

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ray parameter of the first hit per ray (inf for none) and the hit's local normal axis code."""
        rot = yaw_matrix(self.yaw).astype(np.float32)
        o = (rot.T @ (origin - self.center)).astype(np.float32)
        d = dirs @ rot  # = (rot.T @ dirs.T).T
        if self.kind == "box":
            return _box_hit(o, d, self.size)
        if self.kind == "sphere":
            return _sphere_hit(o, d, self.size[0])
        if self.kind == "cylinder":
            return _cylinder_hit(o, d, self.size[0], self.size[1])
        raise ValueError(f"unknown shape kind {self.kind!r}")

    def surface(self, origin: np.ndarray, dirs: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World normals and local coordinates of the hits at ``t`` (for the rays given)."""
        rot = yaw_matrix(self.yaw).astype(np.float32)
        local = ((origin - self.center) @ rot).astype(np.float32) + (dirs @ rot) * t[:, None]
        if self.kind == "box":
            scaled = np.abs(local) / self.size[None, :]
            axis = np.argmax(scaled, axis=1)
            normal = np.zeros_like(local)
            normal[np.arange(len(local)), axis] = np.sign(local[np.arange(len(local)), axis])
        elif self.kind == "sphere":
            normal = local / np.linalg.norm(local, axis=1, keepdims=True)
        else:
            on_cap = np.abs(np.abs(local[:, 1]) - self.size[1]) < 1e-4
            normal = np.where(
                on_cap[:, None],
                np.stack([0 * local[:, 0], np.sign(local[:, 1]), 0 * local[:, 0]], 1),
                local * np.array([1.0, 0.0, 1.0]),
            )
            normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), EPS)
        return normal @ rot.T, local


def _safe(d: np.ndarray) -> np.ndarray:
    return np.where(np.abs(d) < EPS, np.where(d < 0, -EPS, EPS), d)


def _box_hit(o, d, half):
    inv = 1.0 / _safe(d)
    half = half.astype(np.float32)
    t1 = (-half[None, :] - o[None, :]) * inv
    t2 = (half[None, :] - o[None, :]) * inv
    lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
    t_near = np.maximum(
        np.maximum(lo[:, 0], lo[:, 1]), lo[:, 2]
    )  # explicit: faster than reductions over axis 1
    t_far = np.minimum(np.minimum(hi[:, 0], hi[:, 1]), hi[:, 2])
    hit = (t_far >= t_near) & (t_near > EPS)
    return np.where(hit, t_near, np.inf), hit


def _sphere_hit(o, d, radius):
    a = np.einsum("ij,ij->i", d, d)
    b = 2 * d @ o
    c = o @ o - radius * radius
    disc = b * b - 4 * a * c
    root = np.sqrt(np.maximum(disc, 0))
    t = (-b - root) / (2 * a)
    hit = (disc >= 0) & (t > EPS)
    return np.where(hit, t, np.inf), hit


def _cylinder_hit(o, d, radius, half_height):
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = 2 * (o[0] * d[:, 0] + o[2] * d[:, 2])
    c = o[0] ** 2 + o[2] ** 2 - radius * radius
    disc = b * b - 4 * a * c
    t_side = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * np.maximum(a, EPS))
    y_side = o[1] + t_side * d[:, 1]
    side = (disc >= 0) & (a > EPS) & (t_side > EPS) & (np.abs(y_side) <= half_height)
    t_cap = np.full(len(d), np.inf)
    for sign in (-1.0, 1.0):
        tc = (sign * half_height - o[1]) / _safe(d[:, 1])
        px, pz = o[0] + tc * d[:, 0], o[2] + tc * d[:, 2]
        ok = (tc > EPS) & (px * px + pz * pz <= radius * radius)
        t_cap = np.where(ok & (tc < t_cap), tc, t_cap)
    t = np.minimum(np.where(side, t_side, np.inf), t_cap)
    return t, np.isfinite(t)


@dataclass
class Room:
    """Inside of an axis-aligned box from (0, 0, 0) to ``size``; each surface has an id and a texture."""

    size: np.ndarray  # (width x, height y, depth z) in metres
    textures: dict[int, Texture]  # 1 floor, 2 ceiling, 3..6 walls (-x, +x, -z, +z)

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exit distance and surface id (1..6) for rays starting inside the room."""
        d = _safe(dirs)
        t_lo = (0.0 - origin[None, :]) / d
        t_hi = (self.size.astype(np.float32)[None, :] - origin[None, :]) / d
        t_exit = np.where(d > 0, t_hi, t_lo)
        axis = np.argmin(t_exit, axis=1)
        t = t_exit[np.arange(len(d)), axis]
        positive = d[np.arange(len(d)), axis] > 0
        surface_of = np.array([[3, 4], [1, 2], [5, 6]])  # axis x: -x,+x walls; y: floor, ceiling; z walls
        return t, surface_of[axis, positive.astype(int)]


_ROOM_NORMALS = {1: (0, 1, 0), 2: (0, -1, 0), 3: (1, 0, 0), 4: (-1, 0, 0), 5: (0, 0, 1), 6: (0, 0, -1)}


@dataclass
class Lighting:
    direction: np.ndarray  # towards the light, world frame (normalised on use)
    diffuse: float = 0.75
    ambient: float = 0.35
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)


def camera_rays(width: int, height: int, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """Ray directions in OpenGL camera axes (N x 3), z component -1, row-major pixel order."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    return (
        np.stack([(u - cx) / fx, -(v - cy) / fy, -np.ones_like(u)], axis=-1).reshape(-1, 3).astype(np.float32)
    )


def screen_pixels(shape: Shape, T_world_camera: np.ndarray, intrinsics) -> np.ndarray | None:
    """Indices of the pixels that can see ``shape`` (its bounding cube's projected box), or None for all.

    Returns an empty array when the shape is behind the camera or off screen.
    """
    radius = float(np.linalg.norm(shape.size))
    corners = shape.center[None, :] + radius * np.array(
        [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float
    )
    in_camera = (corners - T_world_camera[:3, 3]) @ T_world_camera[:3, :3]
    depth = -in_camera[:, 2]
    if (depth <= 0).all():
        return np.empty(0, np.int64)
    if (depth <= 1e-2).any():
        return None
    u = intrinsics.cx + intrinsics.fx * in_camera[:, 0] / depth
    v = intrinsics.cy - intrinsics.fy * in_camera[:, 1] / depth
    u0, u1 = max(int(np.floor(u.min())) - 1, 0), min(int(np.ceil(u.max())) + 1, intrinsics.width - 1)
    v0, v1 = max(int(np.floor(v.min())) - 1, 0), min(int(np.ceil(v.max())) + 1, intrinsics.height - 1)
    if u0 > u1 or v0 > v1:
        return np.empty(0, np.int64)
    return (np.arange(v0, v1 + 1)[:, None] * intrinsics.width + np.arange(u0, u1 + 1)[None, :]).ravel()


def render(
    room: Room,
    shapes: list[Shape],
    lighting: Lighting,
    T_world_camera: np.ndarray,
    rays_camera: np.ndarray,
    intrinsics,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one view. Returns (rgb uint8 H x W x 3, planar depth in metres H x W, semantic ids uint16 H x
    W).

    ``rays_camera`` from :func:`camera_rays` for ``intrinsics`` (fx, fy, cx, cy, width, height).
    """
    width, height = intrinsics.width, intrinsics.height
    rotation, origin = T_world_camera[:3, :3].astype(np.float32), T_world_camera[:3, 3].astype(np.float32)
    dirs = rays_camera @ rotation.T
    best_t, surface = room.intersect(origin, dirs)
    owner = np.full(len(dirs), -1)
    for index, shape in enumerate(shapes):
        pixels = screen_pixels(shape, T_world_camera, intrinsics)
        if pixels is None:
            pixels = np.arange(len(dirs))
        if pixels.size == 0:
            continue
        t, _ = shape.intersect(origin, dirs[pixels])
        closer = t < best_t[pixels]
        best_t[pixels[closer]] = t[closer]
        owner[pixels[closer]] = index
    light = np.asarray(lighting.direction, float)
    light /= np.linalg.norm(light)
    rgb = np.zeros((len(dirs), 3), np.float32)
    ids = np.zeros(len(dirs), np.uint16)
    hit_points = origin[None, :] + dirs * best_t[:, None]
    for sid in range(1, 7):
        sel = (owner < 0) & (surface == sid)
        if not sel.any():
            continue
        surface_points = hit_points[sel]
        surface_points[:, np.flatnonzero(_ROOM_NORMALS[sid])[0]] = 0.0137  # off the pattern's cell borders
        albedo = room.textures[sid].shade(surface_points)
        lambert = max(0.0, float(np.dot(_ROOM_NORMALS[sid], light)))
        rgb[sel] = albedo * (lighting.ambient + lighting.diffuse * lambert)
        ids[sel] = sid
    for index, shape in enumerate(shapes):
        sel = owner == index
        if not sel.any():
            continue
        normals, local = shape.surface(origin, dirs[sel], best_t[sel])
        lambert = np.clip(normals @ light, 0.0, None)
        rgb[sel] = shape.texture.shade(local) * (lighting.ambient + lighting.diffuse * lambert)[:, None]
        ids[sel] = shape.semantic_id
    rgb = np.clip(rgb * np.asarray(lighting.tint)[None, :], 0, 1)
    depth = best_t.reshape(height, width)  # ray z component is -1: ray parameter = planar depth
    return (rgb.reshape(height, width, 3) * 255 + 0.5).astype(np.uint8), depth, ids.reshape(height, width)


def look_at(
    position: np.ndarray, target: np.ndarray, up: tuple[float, float, float] = (0.0, 1.0, 0.0)
) -> np.ndarray:
    """Camera-to-world pose (OpenGL axes) at ``position`` looking at ``target``."""
    back = position - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    true_up = np.cross(back, right)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = right, true_up, back, position
    return T
