"""Real data sets with instance masks, written into the ISAR layout (``isar-ros import KIND SRC --out DST``).

After an import, ``isar-ros benchmark`` scores the data and the sim bridge replays it like any ISAR
scene. Four kinds are read:

* ``davis``: DAVIS 2016 (``Annotations/480p/<seq>/NNNNN.png``, 0 = background, 255 = the object) and
  DAVIS 2017 (palette PNGs, index k = object k, 255 = void, read as background); frames in
  ``JPEGImages/480p/<seq>/``. One task per sequence.
* ``perseg``: a folder of ``<name>_NN.jpg`` + ``<name>_NN.png`` (PerSeg: 0 = background, 1 = the object).
  One task per object: its first photograph is the train scene, every other one a test scene of one frame.
* ``bop``: BOP scenes (``<scene>/scene_gt.json``, ``scene_camera.json``, ``rgb/``, ``depth/``,
  ``mask_visib/``; YCB-Video, HOPE, T-LESS, ...). One task: the objects of the train scene(s), taught
  there and found in the other scenes; depth (millimetres), intrinsics (``camera.json``) and, where the
  data set has them, camera poses are carried over.
* ``generic``: ``frames/`` + ``masks/`` (same file stems; masks hold instance ids, 0 = background), or a
  folder of such folders; each is a video, cut like a DAVIS sequence.

How scenes are cut (:class:`ImportOptions`): a video's first ``train_frames`` frames are its train scene
and the rest (every ``test_stride``-th) its test scene; ``absent`` other videos / objects are added to
each task as test scenes in which the task's objects do not appear (their frames are the other data's,
their ground truth empty), which is what the false-detection ratio "not visible" measures. Object k of a
source gets the ISAR id ``1660 + k - 1``. Prompts follow the ISAR rules
(:func:`isar_ros.isar.rules.make_prompts`:
every 10th train frame, an area threshold, a random mask pixel and the tight box), with a random
generator seeded from ``seed`` and the task name, so an import is reproducible.
"""

from __future__ import annotations

import json
import re
import shutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from isar_ros.core.geometry import PinholeCamera
from isar_ros.core.visualize import object_color
from isar_ros.errors import InvalidInput
from isar_ros.isar import layout
from isar_ros.isar.layout import CAMERA_FILE, FIRST_OBJECT_ID, T_OPENGL_OPTICAL, frame_name, isar_pose_entry
from isar_ros.isar.rules import AttributeAccumulator, make_prompts

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class ImportFormatError(InvalidInput):
    """A source file that cannot be imported; the message names it."""


@dataclass(frozen=True)
class ImportOptions:
    train_frames: int = 20  # videos: the first frames are the train scene
    test_stride: int = 1  # videos: every k-th remaining frame is tested
    absent: int = 1  # other videos / objects added to each task as absent-object test scenes
    absent_frames: int = 30  # frames of each absent-object scene (videos)
    max_side: int = 0  # resize so that the longer side is at most this (0: keep the size)
    seed: int = 0
    frame_stride: int = 1  # BOP: every k-th frame of a scene
    max_frames: int = 0  # BOP: at most this many frames per scene (0: all)


@dataclass
class Frame:
    """One frame to write: how to read it, and its annotation (instance ids, 0 = background)."""

    rgb: Callable[[], np.ndarray]  # H x W x 3 uint8 RGB
    ids: Callable[[], np.ndarray]  # H x W integer ISAR ids
    depth_mm: Callable[[], np.ndarray | None] = lambda: None
    pose_optical: np.ndarray | None = None  # 4x4 camera-to-world, optical axes, metres
    jpeg: Path | None = None  # the source JPEG, copied as it is when no resize is needed


@dataclass
class SceneSource:
    name: str
    frames: list[Frame]
    camera: PinholeCamera | None = None
    dynamic: bool = False


# ---- readers ---------------------------------------------------------------------------------------
def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImportFormatError(f"{path}: unreadable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label_png(path: Path) -> np.ndarray:
    """The values of a label PNG: palette indices for palette images, grey values otherwise."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.array(image)
    except (OSError, ValueError) as error:
        raise ImportFormatError(f"{path}: unreadable mask ({error})") from error


def davis_ids(mask: np.ndarray, path: Path) -> np.ndarray:
    """DAVIS 2016 (0/255 binary) or 2017 (palette index k = object k, 255 = void) -> object numbers 1..K."""
    if mask.ndim == 3:  # a colour-saved binary mask
        mask = mask.max(axis=2)
    values = set(np.unique(mask).tolist())
    if values <= {0, 255}:
        return (mask > 127).astype(np.int32)
    if max(values) > 255:
        raise ImportFormatError(f"{path}: mask values up to {max(values)} are not DAVIS object indices")
    return np.where(mask == 255, 0, mask).astype(np.int32)  # 2017: 255 marks void pixels


def davis_frame_ids(path: Path) -> np.ndarray:
    return to_isar_ids(davis_ids(read_label_png(path), path))


def generic_frame_ids(path: Path) -> np.ndarray:
    return to_isar_ids(read_label_png(path).astype(np.int32))


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImportFormatError(f"{path}: unreadable image")
    return int(image.shape[0]), int(image.shape[1])


def to_isar_ids(numbers: np.ndarray) -> np.ndarray:
    """Object number k >= 1 -> ISAR id 1660 + k - 1; 0 stays background."""
    return np.where(numbers > 0, numbers + FIRST_OBJECT_ID - 1, 0).astype(np.int32)


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)


# ---- the writer ------------------------------------------------------------------------------------
def _colour_bgr(isar_id: int) -> list[int]:
    """The overlays' colour of the object (core.visualize.object_color), BGR as in color_map.json."""
    r, g, b = object_color(isar_id)
    return [b, g, r]


def _scale(max_side: int, width: int, height: int) -> float:
    return min(1.0, max_side / max(width, height)) if max_side else 1.0


def write_scene(
    folder: Path,
    source: SceneSource,
    tracked: list[int],
    options: ImportOptions,
    rng: np.random.Generator | None,
) -> dict:
    """Write one scene folder; returns its prompts (train) and colour map."""
    color_dir, gt_dir = folder / layout.COLOR_DIRS[0], folder / layout.GROUND_TRUTH_DIR
    for sub in (color_dir, gt_dir):
        sub.mkdir(parents=True, exist_ok=True)
    attributes = AttributeAccumulator(tracked)
    poses: dict[str, dict[str, list[float]]] = {}
    ids_seen: set[int] = set()
    gt_frames: list[tuple[int, str, np.ndarray]] = []
    camera = source.camera
    for index, frame in enumerate(source.frames):
        name = frame_name(index)
        rgb, ids = frame.rgb(), frame.ids()
        if ids.shape != rgb.shape[:2]:
            raise ImportFormatError(
                f"{folder.name} frame {index}: mask {ids.shape} and image {rgb.shape[:2]} differ in size"
            )
        height, width = ids.shape
        scale = _scale(options.max_side, width, height)
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            ids = cv2.resize(ids.astype(np.uint16), size, interpolation=cv2.INTER_NEAREST).astype(np.int32)
        if frame.jpeg is not None and scale == 1.0:
            shutil.copyfile(frame.jpeg, color_dir / f"{name}{layout.FRAME_SUFFIX}")
        else:
            cv2.imwrite(
                str(color_dir / f"{name}{layout.FRAME_SUFFIX}"),
                rgb[..., ::-1],
                [cv2.IMWRITE_JPEG_QUALITY, 95],
            )
        cv2.imwrite(str(gt_dir / f"{name}.png"), ids.astype(np.uint16))
        depth = frame.depth_mm()
        if depth is not None:
            if scale < 1.0:
                depth = cv2.resize(depth, (ids.shape[1], ids.shape[0]), interpolation=cv2.INTER_NEAREST)
            (folder / layout.DEPTH_DIR).mkdir(exist_ok=True)
            cv2.imwrite(
                str(folder / layout.DEPTH_DIR / f"{name}{layout.DEPTH_SUFFIX}"), depth.astype(np.uint16)
            )
        if frame.pose_optical is not None:
            poses[name] = isar_pose_entry(frame.pose_optical @ T_OPENGL_OPTICAL)
        ids_seen.update(int(i) for i in np.unique(ids) if i)
        attributes.add(ids, None if frame.pose_optical is None else frame.pose_optical)
        gt_frames.append((index, name, ids))
    if camera is not None:
        scale = _scale(options.max_side, camera.width, camera.height)
        (folder / CAMERA_FILE).write_text(
            json.dumps(
                {
                    "fx": camera.fx * scale,
                    "fy": camera.fy * scale,
                    "cx": camera.cx * scale,
                    "cy": camera.cy * scale,
                    "width": round(camera.width * scale),
                    "height": round(camera.height * scale),
                },
                indent=1,
            )
        )
    if poses:
        (folder / layout.CAMERA_POSES).write_text(json.dumps(poses, indent=1))
    colour_map = {str(i): _colour_bgr(i) for i in sorted(set(tracked) | ids_seen)}
    (folder / layout.COLOR_MAP).write_text(json.dumps(colour_map, indent=1))
    (folder / layout.ATTRIBUTES_FILE).write_text(
        json.dumps(attributes.attributes(source.dynamic, False), indent=1)
    )
    prompts: tuple[dict, dict] = ({}, {})
    if rng is not None:
        prompts = make_prompts(gt_frames, tracked, rng)
        (folder / layout.PROMPT_FILES["single_shot"]).write_text(json.dumps(prompts[0], indent=1))
        (folder / layout.PROMPT_FILES["multi_shot"]).write_text(json.dumps(prompts[1], indent=1))
    return {"prompts": prompts, "colour_map": colour_map}


def write_task(
    out: Path,
    task: str,
    tracked: list[int],
    train: list[SceneSource],
    test: list[SceneSource],
    options: ImportOptions,
) -> dict:
    """One task folder: train scenes with ISAR prompts, test scenes, info.json. Returns a summary."""
    folder = Path(out) / task
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng([options.seed, zlib.crc32(task.encode())])
    merged: dict[str, list[int]] = {}
    multi = 0
    prompted: set[int] = set()
    for source in train:
        written = write_scene(folder / "train" / source.name, source, tracked, options, rng)
        merged.update(written["colour_map"])
        multi += sum(len(objects) for objects in written["prompts"][1].values())
        prompted.update(int(i) for objects in written["prompts"][1].values() for i in objects)
    for source in test:
        merged.update(
            write_scene(folder / "test" / source.name, source, tracked, options, None)["colour_map"]
        )
    if not prompted:
        shutil.rmtree(folder, ignore_errors=True)
        raise ImportFormatError(
            f"{task}: no object is large enough in a train frame (every 10th) to be prompted; "
            "use more train frames or a larger max_side"
        )
    info = {
        "task_name": task,
        "semantic_ids": sorted(prompted),
        "num_prompts_multi": multi,
        "color_map": merged,
        "imported": {
            "options": options.__dict__,
            "train": [s.name for s in train],
            "test": [s.name for s in test],
        },
    }
    (folder / layout.INFO).write_text(json.dumps(info, indent=1))
    return {
        "task": task,
        "objects": sorted(prompted),
        "train": len(train),
        "test": len(test),
        "frames": sum(len(s.frames) for s in train + test),
    }


def _no_objects(ids: Callable[[], np.ndarray]) -> np.ndarray:
    return np.zeros_like(ids())


def _absent(source: SceneSource, frames: int) -> SceneSource:
    """The first ``frames`` frames of another video, with empty ground truth (none of the task's objects)."""
    chosen = source.frames[:frames] if frames else source.frames
    empty = [Frame(f.rgb, partial(_no_objects, f.ids), f.depth_mm, f.pose_optical, f.jpeg) for f in chosen]
    return SceneSource(f"absent_{source.name}", empty, source.camera, source.dynamic)


def import_videos(videos: list[SceneSource], out: Path, options: ImportOptions) -> list[dict]:
    """Each video becomes a task: train = first frames, test = the rest, plus absent-object scenes."""
    summaries = []
    for k, video in enumerate(videos):
        if len(video.frames) <= options.train_frames:
            raise ImportFormatError(
                f"{video.name}: {len(video.frames)} frames, but {options.train_frames} are "
                "needed for teaching and at least one more for testing"
            )
        train = SceneSource("train", video.frames[: options.train_frames], video.camera, video.dynamic)
        test = SceneSource(
            "test", video.frames[options.train_frames :: options.test_stride], video.camera, video.dynamic
        )
        others = [videos[(k + j) % len(videos)] for j in range(1, min(options.absent, len(videos) - 1) + 1)]
        tracked = sorted({int(i) for f in train.frames[::10] for i in np.unique(f.ids()) if i})
        summaries.append(
            write_task(
                out,
                video.name,
                tracked,
                [train],
                [test] + [_absent(o, options.absent_frames) for o in others],
                options,
            )
        )
    return summaries


# ---- the kinds -------------------------------------------------------------------------------------
def davis_videos(root: Path, sequences: list[str] | None = None) -> list[SceneSource]:
    root = Path(root)
    images, masks = root / "JPEGImages" / "480p", root / "Annotations" / "480p"
    for folder in (images, masks):
        if not folder.is_dir():
            raise ImportFormatError(
                f"{folder}: missing; a DAVIS folder holds JPEGImages/480p/ and Annotations/480p/"
            )
    names = sequences or sorted(p.name for p in masks.iterdir() if p.is_dir())
    videos = []
    for name in names:
        annotation_files = _files(masks / name, (".png",)) if (masks / name).is_dir() else []
        if not annotation_files:
            raise ImportFormatError(f"{masks / name}: no annotation PNGs for sequence {name!r}")
        frames = []
        for annotation in annotation_files:
            jpeg = images / name / f"{annotation.stem}.jpg"
            if not jpeg.is_file():
                raise ImportFormatError(f"{jpeg}: missing frame for {annotation}")
            frames.append(Frame(partial(read_rgb, jpeg), partial(davis_frame_ids, annotation), jpeg=jpeg))
        videos.append(SceneSource(name, frames, dynamic=True))
    return videos


def generic_videos(root: Path) -> list[SceneSource]:
    root = Path(root)
    folders = (
        [root] if (root / "frames").is_dir() else sorted(p for p in root.iterdir() if (p / "frames").is_dir())
    )
    if not folders:
        raise ImportFormatError(f"{root}: expected frames/ and masks/ (or folders holding them)")
    videos = []
    for folder in folders:
        if not (folder / "masks").is_dir():
            raise ImportFormatError(f"{folder / 'masks'}: missing (one instance-id PNG per frame, same name)")
        frames = []
        for image in _files(folder / "frames", IMAGE_SUFFIXES):
            mask = folder / "masks" / f"{image.stem}.png"
            if not mask.is_file():
                raise ImportFormatError(f"{mask}: missing mask for {image}")
            frames.append(
                Frame(
                    partial(read_rgb, image),
                    partial(generic_frame_ids, mask),
                    jpeg=image if image.suffix.lower() in (".jpg", ".jpeg") else None,
                )
            )
        if not frames:
            raise ImportFormatError(f"{folder / 'frames'}: no images")
        videos.append(SceneSource(folder.name, frames, dynamic=True))
    return videos


PERSEG_NAME = re.compile(r"^(?P<object>.+)_(?P<number>\d+)$")


def import_perseg(root: Path, out: Path, options: ImportOptions) -> list[dict]:
    """One task per object: its first photograph teaches, each other one is a test scene; photographs of
    ``absent`` other objects are absent-object test scenes."""
    root = Path(root)
    groups: dict[str, list[tuple[Path, Path]]] = {}
    for image in _files(root, (".jpg", ".jpeg")):
        match = PERSEG_NAME.match(image.stem)
        mask = image.with_suffix(".png")
        if not match:
            raise ImportFormatError(f"{image}: not named <object>_<number>.jpg")
        if not mask.is_file():
            raise ImportFormatError(f"{mask}: missing mask for {image}")
        groups.setdefault(match["object"], []).append((image, mask))
    if not groups:
        raise ImportFormatError(f"{root}: no <object>_<number>.jpg + .png pairs")

    def scene(name: str, image: Path, mask: Path, present: bool) -> SceneSource:
        ids = (
            (lambda: to_isar_ids((read_label_png(mask) > 0).astype(np.int32)))
            if present
            else (lambda: np.zeros(read_label_png(mask).shape[:2], np.int32))
        )
        return SceneSource(name, [Frame(lambda: read_rgb(image), ids, jpeg=image)])

    names = sorted(groups)
    summaries = []
    for k, name in enumerate(names):
        (first_image, first_mask), *rest = groups[name]
        test = [scene(image.stem, image, mask, True) for image, mask in rest]
        others = [names[(k + j) % len(names)] for j in range(1, min(options.absent, len(names) - 1) + 1)]
        test += [scene(f"absent_{groups[o][0][0].stem}", *groups[o][0], False) for o in others]
        summaries.append(
            write_task(
                out, name, [FIRST_OBJECT_ID], [scene("train", first_image, first_mask, True)], test, options
            )
        )
    return summaries


def _bop_frames(
    scene: Path, options: ImportOptions, objects: set[int] | None
) -> tuple[list[Frame], PinholeCamera, set[int]]:
    """Frames of one BOP scene (ground truth of ``objects``, all when None) and its camera."""

    def load(name: str) -> dict:
        path = scene / name
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ImportFormatError(f"{path}: unreadable ({error})") from error

    gt, cameras = load("scene_gt.json"), load("scene_camera.json")
    ids = sorted(gt, key=int)[:: options.frame_stride]
    if options.max_frames:
        ids = ids[: options.max_frames]
    frames: list[Frame] = []
    seen: set[int] = set()
    camera: PinholeCamera | None = None
    for key in ids:
        number = int(key)
        rgb_path = next(
            (
                scene / "rgb" / f"{number:06d}{s}"
                for s in (".png", ".jpg")
                if (scene / "rgb" / f"{number:06d}{s}").is_file()
            ),
            None,
        )
        if rgb_path is None:
            raise ImportFormatError(f"{scene / 'rgb'}: no image for frame {number}")
        entry = cameras.get(key)
        if entry is None or "cam_K" not in entry:
            raise ImportFormatError(f"{scene / 'scene_camera.json'}: no cam_K for frame {number}")
        instances = [(k, int(g["obj_id"])) for k, g in enumerate(gt[key])]
        seen.update(obj for _, obj in instances)
        wanted = [(k, obj) for k, obj in instances if objects is None or obj in objects]

        def ids_of(number: int = number, wanted: list = wanted, rgb_path: Path = rgb_path) -> np.ndarray:
            height, width = image_size(rgb_path)
            labels = np.zeros((height, width), np.int32)
            for k, obj in wanted:
                mask_path = scene / "mask_visib" / f"{number:06d}_{k:06d}.png"
                mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
                if mask is None:
                    raise ImportFormatError(f"{mask_path}: missing or unreadable")
                labels[mask > 0] = FIRST_OBJECT_ID + obj - 1
            return labels

        def depth_of(
            number: int = number, scale: float = float(entry.get("depth_scale", 1.0))
        ) -> np.ndarray | None:
            path = scene / "depth" / f"{number:06d}.png"
            depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
            return None if depth is None else np.clip(np.round(depth * scale), 0, 65535).astype(np.uint16)

        pose = None
        if "cam_R_w2c" in entry and "cam_t_w2c" in entry:
            w2c = np.eye(4)
            w2c[:3, :3] = np.asarray(entry["cam_R_w2c"], float).reshape(3, 3)
            w2c[:3, 3] = np.asarray(entry["cam_t_w2c"], float).ravel() / 1000.0
            pose = np.linalg.inv(w2c)
        if camera is None:
            height, width = image_size(rgb_path)
            camera = PinholeCamera.from_k(entry["cam_K"], width, height)
        frames.append(
            Frame(
                partial(read_rgb, rgb_path),
                ids_of,
                depth_of,
                pose,
                rgb_path if rgb_path.suffix == ".jpg" else None,
            )
        )
    if camera is None:
        raise ImportFormatError(f"{scene}: no frames")
    return frames, camera, seen


def import_bop(
    root: Path, out: Path, options: ImportOptions, train_scenes: list[str] | None = None, task: str = ""
) -> list[dict]:
    """One task: objects taught in ``train_scenes`` (default: the first scene), found in the others."""
    root = Path(root)
    scenes = sorted(p for p in root.iterdir() if (p / "scene_gt.json").is_file())
    if not scenes:
        raise ImportFormatError(
            f"{root}: no BOP scene (a folder with scene_gt.json, scene_camera.json, rgb/, mask_visib/)"
        )
    train_names = train_scenes or [scenes[0].name]
    train_dirs = [s for s in scenes if s.name in train_names]
    if len(train_dirs) != len(train_names):
        raise ImportFormatError(
            f"{root}: train scenes {train_names} not all found among {[s.name for s in scenes]}"
        )
    objects: set[int] = set()
    train = []
    for folder in train_dirs:
        frames, camera, seen = _bop_frames(folder, options, None)
        objects |= seen
        train.append(SceneSource(folder.name, frames, camera))
    test = []
    for folder in scenes:
        if folder.name not in train_names:
            frames, camera, _ = _bop_frames(folder, options, objects)
            test.append(SceneSource(folder.name, frames, camera))
    tracked = sorted(FIRST_OBJECT_ID + obj - 1 for obj in objects)
    return [write_task(out, task or root.name, tracked, train, test, options)]
