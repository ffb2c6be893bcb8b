"""Synthetic ISAR scenes: procedural rooms, textured objects, smooth camera paths, the exact ISAR layout.

``isar-ros generate --out DIR --tasks N --seed S`` (see :class:`GeneratorConfig` for every option).

Per task, a few *tracked* objects (the ones prompted and scored) share rooms with untracked
distractors, same-shape-different-appearance twins of tracked objects (ISAR's CLA case), occluding
pillars, and optionally small and moving objects. Train and test scenes differ in their *context*:
room size and surfaces, lighting, where the objects stand, and the camera path. Every scene is
written as ISAR writes it: ``color/`` JPEG, ``depth/`` uint16 mm, ``semantic_raw/`` uint16 ids,
``semantic/`` colour pictures, ``camera_poses.json``, ``color_map.json`` (BGR), ``attributes.json``
and, for train scenes, ``prompts_single.json`` / ``prompts_multi.json`` made by the ISAR rules; each
task has its ``info.json``. Everything is determined by the seed.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from isar_ros.errors import ConfigurationError
from isar_ros.isar import layout as isar_layout
from isar_ros.isar.layout import FIRST_OBJECT_ID, frame_name, isar_camera, isar_pose_entry
from isar_ros.isar.rules import AttributeAccumulator, make_prompts
from isar_ros.msgio.timing import SCENE_FPS as FPS
from sim_bridge.raycast import PATTERNS, Lighting, Room, Shape, Texture, camera_rays, look_at, render

# (class name, shape kind, half-size (x, y, z) in metres). Sizes are YCB-like to small furniture.
CATALOGUE = [
    ("mug", "cylinder", (0.11, 0.13, 0.11)),
    ("can", "cylinder", (0.09, 0.16, 0.09)),
    ("ball", "sphere", (0.16, 0.16, 0.16)),
    ("crate", "box", (0.2, 0.15, 0.16)),
    ("book", "box", (0.17, 0.05, 0.22)),
    ("vase", "cylinder", (0.1, 0.24, 0.1)),
    ("cube", "box", (0.15, 0.15, 0.15)),
    ("bucket", "cylinder", (0.17, 0.14, 0.17)),
]
COLOURS = {
    "red": (0.85, 0.12, 0.1),
    "green": (0.15, 0.7, 0.2),
    "blue": (0.12, 0.25, 0.85),
    "yellow": (0.95, 0.85, 0.1),
    "orange": (0.95, 0.5, 0.08),
    "purple": (0.55, 0.2, 0.7),
    "cyan": (0.1, 0.75, 0.8),
    "pink": (0.95, 0.45, 0.7),
    "white": (0.93, 0.93, 0.9),
    "black": (0.08, 0.08, 0.1),
    "brown": (0.45, 0.28, 0.12),
    "teal": (0.05, 0.45, 0.45),
}
SMALL_SCALE = 0.4
PILLAR_ID, TABLE_ID = 20, 30
CAMERA_HEIGHT = (1.1, 1.6)


@dataclass
class GeneratorConfig:
    """What to generate. The defaults are the documented ``demo`` configuration."""

    tasks: int = 3
    seed: int = 0
    width: int = 640
    height: int = 360
    frames: int = 75  # per scene, at 30 fps
    train_scenes: int = 1
    test_scenes: int = 2
    objects: int = 3  # tracked objects per task
    distractors: int = 2  # untracked objects of other classes
    twins: int = 1  # untracked same-shape, different-appearance copies of tracked objects (CLA)
    small_objects: int = 0  # tracked objects shrunk to SMALL_SCALE
    occluders: int = 1  # pillars between camera and objects
    fast_test_scenes: int = 0  # test scenes whose camera moves fast (FST)
    moving_objects: bool = False  # objects move in test scenes (DYN)
    context_change: bool = True  # test scenes get another room, lighting, placement and path
    jpeg_quality: int = 95
    workers: int = 0  # processes; 0 = one per CPU core

    def __post_init__(self):
        if self.width < 32 or self.height < 32 or self.frames < 1:
            raise ConfigurationError("width and height must be >= 32 and frames >= 1")
        if self.objects < 1 or self.objects > len(CATALOGUE):
            raise ConfigurationError(f"objects must be 1..{len(CATALOGUE)}")
        if self.objects + self.twins + self.distractors > len(COLOURS):
            raise ConfigurationError(
                f"at most {len(COLOURS)} objects, twins and distractors per task (one colour each)"
            )


@dataclass
class ObjectSpec:
    semantic_id: int
    name: str
    class_name: str
    kind: str
    half_size: tuple[float, float, float]
    texture: Texture
    tracked: bool


@dataclass
class SceneSpec:
    task: str
    split: str
    name: str
    seed: int
    objects: list[ObjectSpec]
    fast: bool = False
    moving: bool = False
    tracked_ids: list[int] = field(default_factory=list)


def _texture(rng: np.random.Generator, colour_names: list[str], dominant: str) -> tuple[Texture, str]:
    """A texture whose main colour is ``dominant`` (distinct per object of a task), with a random second
    colour."""
    a = dominant
    b = str(rng.choice([c for c in colour_names if c != a]))
    pattern = str(rng.choice(PATTERNS))
    return Texture(
        COLOURS[a], COLOURS[b], pattern, float(rng.uniform(6, 14)), int(rng.integers(1000))
    ), f"{a}_{pattern}"


def design_task(config: GeneratorConfig, task_index: int) -> tuple[str, list[ObjectSpec]]:
    """Pick a task's tracked objects, twins and distractors (ids, shapes, textures)."""
    rng = np.random.default_rng([config.seed, task_index, 0])
    classes = rng.permutation(len(CATALOGUE))
    colours = list(COLOURS)
    # Every object of a task gets its own dominant colour: objects are told apart by appearance, and
    # the designed confusion is the CLA twin (same shape, other appearance), not accidental look-alikes.
    dominant = iter(rng.permutation(colours).tolist())
    objects: list[ObjectSpec] = []
    next_id = FIRST_OBJECT_ID + 40 * task_index
    for k in range(config.objects):
        class_name, kind, size = CATALOGUE[classes[k]]
        texture, look = _texture(rng, colours, next(dominant))
        scale = SMALL_SCALE if k >= config.objects - config.small_objects else 1.0
        objects.append(
            ObjectSpec(
                next_id,
                f"{look}_{class_name}",
                class_name,
                kind,
                tuple(s * scale for s in size),
                texture,
                True,
            )
        )
        next_id += 1
    for k in range(config.twins):
        original = objects[k % config.objects]
        texture, look = _texture(rng, colours, next(dominant))
        objects.append(
            ObjectSpec(
                next_id,
                f"{look}_{original.class_name}",
                original.class_name,
                original.kind,
                original.half_size,
                texture,
                False,
            )
        )
        next_id += 1
    for k in range(config.distractors):
        class_name, kind, size = CATALOGUE[classes[(config.objects + k) % len(CATALOGUE)]]
        texture, look = _texture(rng, colours, next(dominant))
        objects.append(ObjectSpec(next_id, f"{look}_{class_name}", class_name, kind, size, texture, False))
        next_id += 1
    task_name = "_".join(o.name.split("_")[0] + o.class_name for o in objects if o.tracked)
    return task_name, objects


@dataclass
class Layout:
    room: Room
    lighting: Lighting
    shapes: list[Shape]  # objects, then tables and pillars
    centre: np.ndarray
    targets: list[np.ndarray]  # look-at waypoints, in sweep order
    start_angle: float
    sweep: float  # radians the view direction turns over the scene


def _room(rng: np.random.Generator) -> Room:
    size = np.array([rng.uniform(5.5, 7.5), rng.uniform(2.6, 3.0), rng.uniform(5.5, 7.5)])
    wall = tuple(rng.uniform(0.45, 0.9, 3))
    wall2 = tuple(np.clip(np.asarray(wall) * rng.uniform(0.75, 0.95), 0, 1))
    floor_a, floor_b = tuple(rng.uniform(0.15, 0.6, 3)), tuple(rng.uniform(0.15, 0.6, 3))
    floor = Texture(
        floor_a, floor_b, str(rng.choice(["checker", "stripes", "noise"])), float(rng.uniform(1, 3))
    )
    ceiling = Texture((0.9, 0.9, 0.88), (0.85, 0.85, 0.83), "solid")
    walls = {
        sid: Texture(wall, wall2, "noise", float(rng.uniform(0.5, 2)), int(rng.integers(1000)))
        for sid in (3, 4, 5, 6)
    }
    return Room(size, {1: floor, 2: ceiling, **walls})


def layout_scene(spec: SceneSpec, frames: int) -> Layout:
    """Room, lighting, object placement and camera sweep of one scene, from its seed."""
    rng = np.random.default_rng(spec.seed)
    room = _room(rng)
    lighting = Lighting(
        direction=np.array([rng.uniform(-0.6, 0.6), 1.0, rng.uniform(-0.6, 0.6)]),
        diffuse=float(rng.uniform(0.55, 0.85)),
        ambient=float(rng.uniform(0.25, 0.45)),
        tint=tuple(rng.uniform(0.85, 1.0, 3)),
    )
    centre = np.array([room.size[0] / 2, 0.0, room.size[2] / 2])
    # Objects stand in a sector of directions around the room centre, at 1.3..2.4 m from it,
    # on the floor or on a table; their order along the sector is shuffled per scene.
    start_angle = float(rng.uniform(0, 2 * np.pi))
    sector = 2.4
    order = rng.permutation(len(spec.objects))
    shapes: list[Shape] = []
    targets: list[tuple[float, np.ndarray]] = []
    for slot, index in enumerate(order):
        obj = spec.objects[index]
        angle = start_angle + sector * (slot + rng.uniform(0.25, 0.75)) / len(order)
        radius = float(rng.uniform(1.3, 2.3))
        ground = np.array([np.cos(angle), 0.0, np.sin(angle)]) * radius + centre
        base = 0.0
        if rng.random() < 0.4:
            table_half = np.array([0.35, 0.35, 0.3])
            shapes.append(
                Shape(
                    "box",
                    ground + np.array([0, table_half[1], 0]),
                    table_half,
                    TABLE_ID,
                    Texture((0.5, 0.35, 0.2), (0.4, 0.28, 0.15), "stripes", 8.0),
                    float(rng.uniform(0, np.pi)),
                )
            )
            base = 2 * table_half[1]
        half = np.asarray(obj.half_size)
        velocity = np.zeros(3)
        if spec.moving and not base:
            tangent = np.array([-np.sin(angle), 0.0, np.cos(angle)])
            velocity = tangent * rng.uniform(0.15, 0.35) * rng.choice([-1, 1])
        shapes.insert(
            0,
            Shape(
                obj.kind,
                ground + np.array([0, base + half[1], 0]),
                half,
                obj.semantic_id,
                obj.texture,
                float(rng.uniform(0, np.pi)),
                velocity,
            ),
        )
        targets.append((angle, ground + np.array([0, base + half[1], 0])))
    targets.sort(key=lambda item: item[0])
    # The view turns by at most 0.6 rad/s on average (peak 0.9 with the smoothstep): below ISAR's FST limit.
    sweep = min(sector + 0.3, 0.6 * frames / FPS)
    start = start_angle + (sector - sweep) / 2
    return Layout(room, lighting, shapes, centre, [t for _, t in targets], start, sweep)


def add_pillars(layout: Layout, rng: np.random.Generator, count: int) -> None:
    """Pillars between the camera's circle and the objects: partial occlusions."""
    for k in range(count):
        angle = layout.start_angle + layout.sweep * (k + 0.5) / max(count, 1) + rng.uniform(-0.2, 0.2)
        radius = float(rng.uniform(0.8, 1.0))
        position = layout.centre + np.array([np.cos(angle), 0.0, np.sin(angle)]) * radius
        height = layout.room.size[1] / 2
        layout.shapes.append(
            Shape(
                "cylinder",
                position + np.array([0, height, 0]),
                np.array([0.09, height, 0.09]),
                PILLAR_ID + k,
                Texture((0.7, 0.7, 0.72), (0.6, 0.6, 0.62), "rings", 20.0),
            )
        )


def camera_path(layout: Layout, frames: int, rng: np.random.Generator, fast: bool) -> list[np.ndarray]:
    """Camera-to-world poses: the camera circles slowly near the room centre and pans across the objects.

    Normal scenes turn by ``layout.sweep`` over the whole scene (below ISAR's 1 rad/s FST limit);
    fast scenes sweep back and forth three times as fast.
    """
    direction = rng.choice([-1.0, 1.0])
    orbit_radius = rng.uniform(0.2, 0.6)
    orbit_phase = rng.uniform(0, 2 * np.pi)
    height = rng.uniform(*CAMERA_HEIGHT)
    duration = frames / FPS
    poses = []
    for i in range(frames):
        s = i / max(frames - 1, 1)
        u = (
            0.5 - 0.5 * np.cos(2 * np.pi * 1.5 * s) if fast else s * s * (3 - 2 * s)
        )  # three sweeps, or smoothstep
        if direction < 0:
            u = 1 - u
        view_angle = layout.start_angle + layout.sweep * u
        orbit = orbit_phase + 0.35 * s * duration / 3.0
        position = layout.centre + np.array(
            [np.cos(orbit) * orbit_radius, height + 0.08 * np.sin(3 * s), np.sin(orbit) * orbit_radius]
        )
        target_distance = 2.0
        target = position + np.array([np.cos(view_angle), 0.0, np.sin(view_angle)]) * target_distance
        target[1] = 0.45 + 0.15 * np.sin(2 * np.pi * s)
        poses.append(look_at(position, target))
    return poses


@dataclass
class RenderedScene:
    name: str
    split: str
    color_map: dict[str, list[int]]
    attributes: dict[str, bool]
    prompts: tuple[dict, dict] | None
    seconds: float


def _colour_for(semantic_id: int) -> list[int]:
    rng = np.random.default_rng(semantic_id * 7919 + 17)
    return [int(c) for c in rng.integers(40, 256, 3)]


def render_scene(config: GeneratorConfig, spec: SceneSpec, out: Path) -> RenderedScene:
    """Render and write one scene folder; returns what the task-level files need."""
    import time

    started = time.perf_counter()
    rng = np.random.default_rng([spec.seed, 1])
    layout = layout_scene(spec, config.frames)
    add_pillars(layout, rng, config.occluders)
    poses = camera_path(layout, config.frames, rng, spec.fast)
    intr = isar_camera(config.width, config.height)
    rays = camera_rays(config.width, config.height, intr.fx, intr.fy, intr.cx, intr.cy)
    folder = out / spec.task / spec.split / spec.name
    color_dir, depth_dir, gt_dir, semantic_dir = (
        folder / d
        for d in (
            isar_layout.COLOR_DIRS[0],
            isar_layout.DEPTH_DIR,
            isar_layout.GROUND_TRUTH_DIR,
            isar_layout.SEMANTIC_DIR,
        )
    )
    for sub in (color_dir, depth_dir, semantic_dir, gt_dir):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    colours = {0: [0, 0, 0]}
    palette = np.zeros((65536, 3), np.uint8)  # id -> colour, for the semantic/ pictures
    attributes = AttributeAccumulator(spec.tracked_ids)
    pose_json = {}
    gt_frames = []
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality]
    for i, T in enumerate(poses):
        name = frame_name(i)
        shapes = [s.at_time(i / FPS) for s in layout.shapes]
        rgb, depth_m, ids = render(layout.room, shapes, layout.lighting, T, rays, intr)
        depth_mm = np.clip(np.round(np.nan_to_num(depth_m, posinf=0) * 1000), 0, 65535).astype(np.uint16)
        for sid in np.unique(ids):
            if int(sid) not in colours:
                colours[int(sid)] = _colour_for(int(sid))
                palette[int(sid)] = colours[int(sid)]
        semantic = palette[ids]
        cv2.imwrite(str(color_dir / f"{name}{isar_layout.FRAME_SUFFIX}"), rgb[..., ::-1], jpeg)
        cv2.imwrite(str(depth_dir / f"{name}{isar_layout.DEPTH_SUFFIX}"), depth_mm)
        cv2.imwrite(str(gt_dir / f"{name}.png"), ids)
        cv2.imwrite(str(semantic_dir / f"{name}.png"), semantic)
        pose_json[name] = isar_pose_entry(T)
        attributes.add(ids, T)
        if spec.split == "train":
            gt_frames.append((i, name, ids))
    classes = [o.class_name for o in spec.objects]
    same_class = len(classes) != len(set(classes))
    attrs = attributes.attributes(dynamic=spec.moving, same_class=same_class)
    color_map = {str(k): v for k, v in sorted(colours.items())}
    _write_json(folder / isar_layout.CAMERA_POSES, pose_json)
    _write_json(folder / isar_layout.COLOR_MAP, color_map)
    _write_json(folder / isar_layout.ATTRIBUTES_FILE, attrs)
    prompts = None
    if spec.split == "train":
        prompts = make_prompts(gt_frames, spec.tracked_ids, np.random.default_rng([spec.seed, 2]))
        _write_json(folder / isar_layout.PROMPT_FILES["single_shot"], prompts[0])
        _write_json(folder / isar_layout.PROMPT_FILES["multi_shot"], prompts[1])
    return RenderedScene(spec.name, spec.split, color_map, attrs, prompts, time.perf_counter() - started)


def _write_json(path: Path, data) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def scene_specs(
    config: GeneratorConfig, task_index: int, task_name: str, objects: list[ObjectSpec]
) -> list[SceneSpec]:
    specs = []
    tracked = [o.semantic_id for o in objects if o.tracked]
    base_seed = config.seed * 100_003 + task_index * 1009
    for k in range(config.train_scenes):
        specs.append(
            SceneSpec(
                task_name,
                "train",
                f"r{task_index:02d}{chr(97 + k)}_0",
                base_seed + k,
                objects,
                tracked_ids=tracked,
            )
        )
    for k in range(config.test_scenes):
        room = k + config.train_scenes if config.context_change else 0
        seed = base_seed + 500 + k if config.context_change else base_seed
        specs.append(
            SceneSpec(
                task_name,
                "test",
                f"r{task_index:02d}{chr(97 + room)}_{k + 1}",
                seed,
                objects,
                fast=k < config.fast_test_scenes,
                moving=config.moving_objects,
                tracked_ids=tracked,
            )
        )
    return specs


def generate(config: GeneratorConfig, out: str | Path, progress: bool = True) -> dict:
    """Generate the dataset into ``out``. Returns a summary (tasks, scenes, frames, seconds)."""
    import time

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = []
    for t in range(config.tasks):
        name, objects = design_task(config, t)
        tasks.append((t, name, objects, scene_specs(config, t, name, objects)))
    workers = config.workers or os.cpu_count() or 1
    all_specs = [s for *_, specs in tasks for s in specs]
    with ProcessPoolExecutor(max_workers=workers, initializer=_one_thread_per_worker) as pool:
        futures = [pool.submit(render_scene, config, spec, out) for spec in all_specs]
        bar = _progress(len(futures), progress)
        results = []
        for future in futures:
            results.append(future.result())
            bar.update(1)
        bar.close()
    by_task: dict[str, list[RenderedScene]] = {}
    for spec, result in zip(all_specs, results, strict=False):
        by_task.setdefault(spec.task, []).append(result)
    for _t, name, objects, _specs in tasks:
        rendered = by_task[name]
        prompted = sorted(
            {int(i) for r in rendered if r.prompts for frame in r.prompts[1].values() for i in frame}
        )
        merged: dict[str, list[int]] = {}
        for r in rendered:
            merged.update(r.color_map)
        for r in rendered:
            if r.split == "test":
                _write_json(out / name / "test" / r.name / isar_layout.COLOR_MAP, merged)
        info = {
            "task_name": name,
            "semantic_ids": prompted,
            "num_prompts_multi": sum(len(r.prompts[1]) for r in rendered if r.prompts),
            "color_map": merged,
            "generator": {
                "config": asdict(config),
                "objects": {o.semantic_id: o.name for o in objects},
                "tracked": [o.semantic_id for o in objects if o.tracked],
            },
        }
        _write_json(out / name / isar_layout.INFO, info)
    return {
        "tasks": len(tasks),
        "scenes": len(all_specs),
        "frames": len(all_specs) * config.frames,
        "seconds": time.perf_counter() - started,
    }


def _one_thread_per_worker() -> None:
    """The workers already use every core; BLAS threads on top only fight over them."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="scenes", unit="scene", disable=not enabled)
