"""Speed and memory of the perception core, printed and saved (not a test: numbers, no assertions).

    .venv/bin/python scripts/benchmark_core.py [--repeats 20] [--out docs/benchmarks.json] [--only
    teach,memory]

Measures, in one run on this machine:

1. per-frame latency by stage (features, scoring, post-processing) at 640x480 for each backbone
   that can run here: the hand-crafted one, and DINOv2 ViT-S/14 and ViT-B/14 with *random*
   weights (the official checkpoints cannot be downloaded here; speed does not depend on the
   weights), fp32 and bfloat16 autocast;
1b. DINOv2 ViT-S at input short sides 224 / 336 / 448 and ViT-B at 448 through torch eager fp32 and
   OpenVINO, alternately in one run: latency, speed-up, feature agreement, first and cached start;
1c. DINOv2 ViT-S/14 and ViT-B/14 at 448 through torch eager fp32 and OpenVINO fp32, bf16 (where the CPU
   has it) and int8 (NNCF, calibrated on 24 other benchmark frames; ``pip install nncf``), alternately in
   one run: latency, speed-up over torch, the lowest patch cosine with torch's features;
2. time per frame, features excluded, for 1, 10, 100 and 1000 taught objects: a frame showing one of
   them, the others absent (scoring, presence, masks; from 200 objects on through the block-bound
   cascade), and the scoring alone (one stacked matrix product of every object, no cascade, plus the
   vectorised presence decision), beside a loop of per-object scikit-learn
   ``LinearSVC.decision_function`` calls with the same weights, and their ratio;
2c. the same with a memory of real taught objects: every object of the 20 synthetic ``dev`` data sets
   (``config/eval/dev.yaml``, generated into data/eval if missing), taught multi-shot, about 100
   objects, on test frames of those sets (a few present, most absent): time per frame, features
   excluded, and on how many objects per frame the presence decision searched regions;
2b. time per frame, features excluded, without depth, with depth (3-D per instance, depth trimming) and
   with the pose prior too;
3. teach latency (prompts -> object usable) for 1 and 10 exemplars (GrabCut masks);
4. the saved memory (what every autosave writes: size, save time) and the serialized InstanceMemory
   message for 1, 10 and 50 objects;
5. peak resident memory of the process (full runs only).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from isar_ros.core.backbones.factory import create_backbone  # noqa: E402
from isar_ros.core.inference import InferenceConfig, InstanceFinder, ObjectModel  # noqa: E402
from isar_ros.core.perception import Perception, PerceptionConfig  # noqa: E402
from isar_ros.core.prompt_mask import Prompt  # noqa: E402


def test_image(width=640, height=480, seed=0) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A textured frame with a few coloured boxes (x0, y0, x1, y1) to prompt."""
    rng = np.random.default_rng(seed)
    image = rng.integers(60, 200, (height // 8, width // 8, 3)).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    boxes = []
    for _k in range(4):
        x0, y0 = int(rng.integers(0, width - 120)), int(rng.integers(0, height - 120))
        x1, y1 = x0 + int(rng.integers(60, 120)), y0 + int(rng.integers(60, 120))
        image[y0:y1, x0:x1] = rng.integers(0, 255, 3)
        image[y0:y1:6, x0:x1] = rng.integers(0, 255, 3)
        boxes.append((x0, y0, x1 - 1, y1 - 1))
    return image, boxes


def teach_test_objects(perception: Perception, count: int, start: int = 0) -> None:
    """Teach objects ``start`` .. ``count - 1``, named 'object <k>': box k // 5 % 4 of test image k % 5."""
    frames = {}
    for k in range(start, count):
        if k % 5 not in frames:
            image, boxes = test_image(seed=k % 5)
            frames[k % 5] = (perception.encode(image), boxes)
        frame, boxes = frames[k % 5]
        perception.teach([(frame, [Prompt.from_isar(box_xyxy=boxes[k // 5 % 4])])], name=f"object {k}")


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def summary(samples: list[float]) -> dict:
    return {
        "median_ms": statistics.median(samples),
        "p90_ms": float(np.percentile(samples, 90)),
        "n": len(samples),
    }


def stage_latency(repeats: int) -> list[dict]:
    rows = []
    image, boxes = test_image()
    candidates = [
        ("handcrafted", {}, False),
        ("dinov2_vits14", {"random_init": True}, False),
        ("dinov2_vits14", {"random_init": True}, True),
        ("dinov2_vitb14", {"random_init": True}, False),
        ("dinov2_vitb14", {"random_init": True}, True),
    ]
    for name, options, bf16 in candidates:
        if name.startswith("dinov2"):
            options = {**options, "precision": "bf16" if bf16 else "fp32"}
        backbone = create_backbone(name, "cpu", **options)
        perception = Perception(PerceptionConfig(mask_predictor="grabcut", device="cpu"), backbone=backbone)
        frame = perception.encode(image)
        perception.teach([(frame, [Prompt.from_isar(box_xyxy=boxes[0])])], name="object")
        features = timed(
            lambda backbone=backbone: backbone.extract(image),
            max(3, repeats // (5 if name != "handcrafted" else 1)),
        )
        scoring, post = [], []
        for _ in range(repeats):
            segmentation = perception.finder.find(frame.grid, image)
            scoring.append(segmentation.timings_ms["scoring"])
            post.append(segmentation.timings_ms["postprocess"])
        rows.append(
            {
                "backbone": name + (" bf16" if bf16 else ""),
                "weights": "random" if name != "handcrafted" else "none needed",
                "grid": list(frame.grid.features.shape[:2]),
                "features": summary(features),
                "scoring": summary(scoring),
                "postprocess": summary(post),
            }
        )
        print(
            f"  {rows[-1]['backbone']:<22} features {rows[-1]['features']['median_ms']:8.1f} ms  "
            f"scoring {rows[-1]['scoring']['median_ms']:6.2f} ms  post "
            f"{rows[-1]['postprocess']['median_ms']:6.2f} ms"
        )
    return rows


def runtimes(repeats: int) -> list[dict]:
    """DINOv2 features at 640x480 through torch eager fp32 and OpenVINO (its precision chosen for this CPU),
    per model and input short side, measured alternately in one run; plus OpenVINO's first start
    (export + compile) and a second start from its cache."""
    import os
    import tempfile

    try:
        import openvino  # noqa: F401
    except ImportError:
        print("  OpenVINO is not installed (pip install openvino): skipped")
        return []
    from isar_ros.core.backbones.dinov2 import Dinov2Backbone

    image, _ = test_image()
    rows = []
    os.environ["ISAR_OPENVINO_CACHE"] = tempfile.mkdtemp(prefix="isar-ov-bench-")
    for name, side in [
        ("dinov2_vits14", 224),
        ("dinov2_vits14", 336),
        ("dinov2_vits14", 448),
        ("dinov2_vitb14", 448),
    ]:
        torch_backbone = Dinov2Backbone.from_name(
            name, torch.device("cpu"), random_init=True, short_side=side
        )
        start = time.perf_counter()
        fast = Dinov2Backbone(
            torch_backbone.model, name, torch.device("cpu"), short_side=side, backend="openvino"
        )
        fast.extract(image)
        first_start = time.perf_counter() - start
        start = time.perf_counter()
        again = Dinov2Backbone(
            torch_backbone.model, name, torch.device("cpu"), short_side=side, backend="openvino"
        )
        again.extract(image)
        second_start = time.perf_counter() - start
        torch_backbone.extract(image)
        slow, quick = [], []
        for _ in range(max(3, repeats // 4)):  # alternate, so both see the same machine load
            slow += timed(lambda b=torch_backbone: b.extract(image), 1)
            quick += timed(lambda b=fast: b.extract(image), 1)
        cosine = float((torch_backbone.extract(image).features * fast.extract(image).features).sum(-1).min())
        rows.append(
            {
                "backbone": name,
                "short_side": side,
                "grid": list(fast.extract(image).features.shape[:2]),
                "openvino_precision": fast.openvino.precision,
                "torch_fp32": summary(slow),
                "openvino": summary(quick),
                "speedup": statistics.median(slow) / statistics.median(quick),
                "min_cosine": cosine,
                "openvino_first_start_s": first_start,
                "openvino_cached_start_s": second_start,
            }
        )
        r = rows[-1]
        print(
            f"  {name} short side {side} (grid {r['grid'][0]}x{r['grid'][1]}): torch fp32 "
            f"{r['torch_fp32']['median_ms']:7.1f} ms, OpenVINO {r['openvino_precision']} "
            f"{r['openvino']['median_ms']:7.1f} ms = {r['speedup']:.2f}x faster, min cosine {cosine:.6f}; "
            f"first start {first_start:.1f} s, cached start {second_start:.2f} s (incl. one frame)"
        )
    return rows


def synthetic_objects(
    k: int, dim: int, features: np.ndarray, rng: np.random.Generator, first_id: int = 1
) -> list:
    """``k`` objects with linear classifiers shaped like taught ones: weights towards a random patch,
    absent from this frame."""
    from isar_ros.core.memory_snapshot import ObjectClassifier, SnapshotObject

    flat = features.reshape(-1, dim)
    objects = []
    for i in range(k):
        target = flat[rng.integers(len(flat))] - flat.mean(0)
        w = (target / np.linalg.norm(target) * 4.0).astype(np.float32)
        classifier = ObjectClassifier(
            weights=w,
            bias=float(-(flat @ w).max() - 2.0),
            mask_threshold=0.0,
            presence_threshold=0.6,
            prototypes=w[None] / 4.0,
            prototype_threshold=0.9,
        )
        objects.append(SnapshotObject(first_id + i, f"object {first_id + i}", 1, 20, 70, classifier))
    return objects


def precisions(repeats: int) -> list[dict]:
    """ViT-S/14 and ViT-B/14 at short side 448 through torch eager fp32 and OpenVINO at each precision this
    CPU runs, alternately in one run (int8 calibrated on 24 other benchmark frames first)."""
    import os
    import tempfile

    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError:
        print("  OpenVINO or NNCF is not installed (pip install openvino nncf): skipped")
        return []
    from isar_ros.core.backbones.dinov2 import Dinov2Backbone

    image, _ = test_image()
    calibration = [test_image(seed=s)[0] for s in range(1, 25)]
    os.environ["ISAR_OPENVINO_CACHE"] = tempfile.mkdtemp(prefix="isar-ov-bench-")
    rows = []
    cpu = torch.device("cpu")
    for name in ("dinov2_vits14", "dinov2_vitb14"):
        backbones = {"torch fp32": Dinov2Backbone.from_name(name, cpu, random_init=True)}
        model = backbones["torch fp32"].model
        fp32 = Dinov2Backbone(model, name, cpu, backend="openvino", precision="fp32")
        quantized = fp32.quantize(calibration, [image])
        backbones["openvino fp32"] = fp32
        if fp32.openvino is not None and fp32.openvino.has_bf16:
            backbones["openvino bf16"] = Dinov2Backbone(
                model, name, cpu, backend="openvino", precision="bf16"
            )
        backbones["openvino int8"] = Dinov2Backbone(model, name, cpu, backend="openvino", precision="int8")
        reference = backbones["torch fp32"].extract(image).features
        times: dict[str, list[float]] = {key: [] for key in backbones}
        for _ in range(max(3, repeats // 4)):  # alternate, so all see the same machine load
            for key, backbone in backbones.items():
                backbone.extract(image)  # the first call of each compiles; then one timed call
                times[key] += timed(lambda b=backbone: b.extract(image), 1)
        for key, backbone in backbones.items():
            cosine = float((reference * backbone.extract(image).features).sum(-1).min())
            rows.append(
                {
                    "backbone": name,
                    "runtime": key,
                    "latency": summary(times[key]),
                    "vs_torch_fp32": statistics.median(times["torch fp32"]) / statistics.median(times[key]),
                    "min_cosine": cosine,
                    **({"quantize_s": quantized.seconds} if key.endswith("int8") else {}),
                }
            )
            r = rows[-1]
            print(
                f"  {name} {key:<14} {r['latency']['median_ms']:7.1f} ms = {r['vs_torch_fp32']:.2f}x torch "
                f"fp32, min cosine {cosine:.4f}"
                + (f" (quantised in {quantized.seconds:.0f} s)" if key.endswith("int8") else "")
            )
    return rows


def scaling(repeats: int) -> list[dict]:
    """One frame showing one taught object; the memory holds it plus 0, 9, 99 or 999 objects absent from the
    frame."""
    from sklearn.svm import LinearSVC

    image, boxes = test_image()
    perception = Perception(PerceptionConfig(mask_predictor="grabcut", device="cpu"))
    frame = perception.encode(image)
    perception.teach([(frame, [Prompt.from_isar(box_xyxy=boxes[0])])], name="present object")
    grid = frame.grid
    features = grid.features.numpy()
    flat = features.reshape(-1, features.shape[-1])
    rng = np.random.default_rng(0)
    counts = (1, 10, 100, 1000)
    snapshots, finders = {}, {}
    for k in counts:
        snapshot = perception.snapshot()
        absent = synthetic_objects(k - 1, perception.backbone.feature_dim, features, rng, first_id=2)
        snapshots[k] = replace(snapshot, objects=snapshot.objects + tuple(absent))
        finders[k] = InstanceFinder(ObjectModel(snapshots[k], "cpu"), InferenceConfig())
    uncascaded = InstanceFinder(finders[1000].model, InferenceConfig())  # every object scored, as before
    uncascaded.cascade_min_objects = 10**9
    found = {k: finder.find(grid, image) for k, finder in finders.items()}
    not_scored = {k: finder.cascade_skipped for k, finder in finders.items()}  # from 200 objects on
    # The frames of every count alternately, so all see the same machine load (their ratios are the result).
    frames: dict[object, list[float]] = {key: [] for key in (*counts, "without the cascade")}
    for _ in range(repeats):
        for key, finder in (*finders.items(), ("without the cascade", uncascaded)):
            frames[key] += timed(lambda finder=finder: finder.find(grid, image), 1)
    rows = []
    for k in counts:
        finder, snapshot = finders[k], snapshots[k]
        stacked = timed(lambda finder=finder: finder.presence(finder.score(grid)), repeats)
        models = []
        for o in snapshot.objects:
            c = o.classifier
            svm = LinearSVC().fit(np.stack([c.weights, -c.weights]), [1, 0])
            svm.coef_, svm.intercept_ = c.weights[None].astype(np.float64), np.array([c.bias])
            models.append(svm)
        loop = timed(lambda models=models: [m.decision_function(flat) for m in models], repeats)
        rows.append(
            {
                "objects": k,
                "present": len(found[k].instances),
                "not_scored_by_the_cascade": not_scored[k],
                "scoring": summary(stacked),
                "frame_without_features": summary(frames[k]),
                "sklearn_loop": summary(loop),
            }
        )
        print(
            f"  {k:>3} objects ({len(found[k].instances)} present): scoring "
            f"{rows[-1]['scoring']['median_ms']:6.2f} ms, "
            f"frame without features {rows[-1]['frame_without_features']['median_ms']:6.2f} ms, "
            f"sklearn decision_function loop {rows[-1]['sklearn_loop']['median_ms']:7.2f} ms; "
            f"{not_scored[k]} objects not scored patch by patch (cascade)"
        )
    rows[-1]["frame_without_the_cascade"] = summary(frames["without the cascade"])
    print(
        f"  1000 objects, every object scored (no cascade): frame without features "
        f"{rows[-1]['frame_without_the_cascade']['median_ms']:6.2f} ms"
    )
    for row in rows:
        row["frame_vs_1_object"] = (
            row["frame_without_features"]["median_ms"] / rows[0]["frame_without_features"]["median_ms"]
        )
        row["scoring_vs_1_object"] = row["scoring"]["median_ms"] / rows[0]["scoring"]["median_ms"]
        row["loop_vs_stacked"] = row["sklearn_loop"]["median_ms"] / row["scoring"]["median_ms"]
    return rows


def teach_latency(repeats: int) -> list[dict]:
    """Prompts on raw images -> object usable (``Perception.teach_images``, what the teach node calls):
    features, GrabCut masks, two relit variants, the fit; with the masks made one at a time
    (``teach_threads`` 1) and in two threads beside the backbone, alternately in one run."""
    rows = []
    frames = [test_image(seed=s) for s in range(10)]
    warm_up = Perception(PerceptionConfig(mask_predictor="grabcut", device="cpu"))  # imports, first calls
    warm_up.teach_images([(frames[0][0], [Prompt.from_isar(box_xyxy=frames[0][1][0])])], name="w")
    for count in (1, 10):
        samples: dict[int, list[float]] = {1: [], 2: []}
        for _r in range(max(2, repeats // 5)):
            for threads in samples:
                perception = Perception(
                    PerceptionConfig(mask_predictor="grabcut", device="cpu", teach_threads=threads)
                )
                images = [(image, [Prompt.from_isar(box_xyxy=boxes[0])]) for image, boxes in frames[:count]]
                start = time.perf_counter()
                perception.teach_images(images, name="object")
                samples[threads].append((time.perf_counter() - start) * 1000)
        for threads, values in samples.items():
            rows.append({"exemplars": count, "teach_threads": threads, **summary(values)})
            print(
                f"  teach from {count:>2} exemplar(s), masks in {threads} thread(s): "
                f"{rows[-1]['median_ms']:8.1f} ms (features, GrabCut, augmentation, fit)"
            )
    return rows


def taught_scaling(frames_per_set: int = 10) -> dict:
    """Scaling with objects as teaching makes them (the synthetic ones of :func:`scaling` are far from
    every threshold; taught ones are not): all objects of the synthetic dev sets in one memory."""
    from dataclasses import fields

    from isar_ros.cli import _generate_dataset
    from isar_ros.isar.dataset import IsarDataset
    from isar_ros.isar.evaluation import load_suite, prepare
    from sim_bridge.generator import GeneratorConfig

    suite = load_suite(ROOT / "config" / "eval" / "dev.yaml", {f.name for f in fields(GeneratorConfig)})
    folders = [
        prepare(spec, suite.cache, _generate_dataset) for spec in suite.datasets if "generate" in spec.recipe
    ]
    tasks = [task for folder in folders if folder is not None for task in IsarDataset(folder).tasks]
    perception = Perception(PerceptionConfig(mask_predictor="grabcut", device="cpu"))
    for task in tasks:
        known: dict[int, int] = {}
        for scene, name, prompts in task.prompts("multi_shot"):
            frame = perception.encode(scene.frame_by_name(name).rgb())
            for p in prompts:
                prompt = Prompt.from_isar(p.point_xy, p.box_xyxy)
                result = perception.teach(
                    [(frame, [prompt])],
                    name=f"{task.path.parent.name}/{task.name}/{p.object_id}",
                    object_id=known.get(p.object_id, 0),
                )
                known[p.object_id] = result.object_id
    model = ObjectModel(perception.snapshot(), "cpu")
    checked, times, present = [], [], []
    searched = InstanceFinder._best_region

    def counting(finder, *args, **kwargs):
        checked[-1] += 1
        return searched(finder, *args, **kwargs)

    forced_times, forced_skipped, differing = [], [], 0
    InstanceFinder._best_region = counting  # type: ignore[method-assign]
    try:
        for task in tasks[::2]:
            finder = InstanceFinder(model, perception.config.inference)
            forced = InstanceFinder(model, perception.config.inference)  # the cascade at any object count
            forced.cascade_min_objects = 0
            for frame in list(task.test_scenes[0])[:frames_per_set]:
                rgb = frame.rgb()
                grid = perception.encode(rgb).grid
                checked.append(0)
                start = time.perf_counter()
                other = forced.find(grid, rgb)
                forced_times.append((time.perf_counter() - start) * 1000)
                forced_skipped.append(forced.cascade_skipped)
                checked[-1] = 0  # count the default finder's region searches only
                start = time.perf_counter()
                found = finder.find(grid, rgb)
                times.append((time.perf_counter() - start) * 1000)
                present.append(len(found.instances))
                differing += not np.array_equal(found.labels, other.labels)
    finally:
        InstanceFinder._best_region = searched  # type: ignore[method-assign]
    row = {
        "objects": len(model),
        "frames": len(times),
        "frame_without_features": summary(times),
        "present_per_frame": float(np.mean(present)),
        "region_searches_per_frame": float(np.mean(checked)),
        "with_the_cascade_forced": summary(forced_times),
        "not_scored_by_the_forced_cascade_per_frame": float(np.mean(forced_skipped)),
        "frames_whose_labels_differ_with_the_cascade": differing,
    }
    print(
        f"  {row['objects']} taught objects, {row['frames']} test frames "
        f"({row['present_per_frame']:.1f} found per frame): frame without features "
        f"{row['frame_without_features']['median_ms']:.2f} ms median, "
        f"regions searched for {row['region_searches_per_frame']:.1f} objects per frame; with the cascade "
        f"at any object count {row['with_the_cascade_forced']['median_ms']:.2f} ms, "
        f"{row['not_scored_by_the_forced_cascade_per_frame']:.1f} objects per frame not scored, labels "
        f"different on {differing} frames"
    )
    return row


def geometry_cost(repeats: int) -> list[dict]:
    """Time per frame, features excluded, without depth, with depth (3-D per instance and depth trimming,
    the defaults) and with the pose prior too: 640x480, 5 objects taught, depth a wall 2 m away with the
    prompted boxes at 1 m, an identity camera pose; the three measured alternately."""
    from isar_ros.core.geometry import FrameGeometry, PinholeCamera

    perception = Perception(PerceptionConfig(mask_predictor="grabcut", device="cpu"))
    teach_test_objects(perception, 5)
    image, boxes = test_image(seed=0)
    depth = np.full(image.shape[:2], 2.0, np.float32)
    for x0, y0, x1, y1 in boxes:
        depth[y0 : y1 + 1, x0 : x1 + 1] = 1.0
    geometry = FrameGeometry(depth, PinholeCamera(525.0, 525.0, 320.0, 240.0, 640, 480), np.eye(4))
    grid = perception.encode(image).grid
    finder = perception.finder
    runs = {
        "no depth": (replace(finder.config, pose_prior=False), None),
        "depth (3-D, trimming)": (replace(finder.config, pose_prior=False), geometry),
        "depth + pose prior": (replace(finder.config, pose_prior=True), geometry),
    }
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (config, given) in runs.items():
            finder.config = config
            start = time.perf_counter()
            finder.find(grid, image, given)
            samples[name].append((time.perf_counter() - start) * 1000)
    rows = [{"input": name, **summary(values)} for name, values in samples.items()]
    for row in rows:
        print(f"  {row['input']:<24} {row['median_ms']:7.2f} ms per frame (features excluded)")
    return rows


def memory_footprint(repeats: int) -> list[dict]:
    """The saved memory (what every autosave writes) and the message inference nodes receive."""
    import tempfile

    from builtin_interfaces.msg import Time
    from rclpy.serialization import serialize_message

    from isar_ros.ros.conversions import snapshot_to_msg  # the message only; no node is created

    rows = []
    perception = Perception(PerceptionConfig(mask_predictor="grabcut", device="cpu"))
    taught = 0
    for count in (1, 10, 50):
        teach_test_objects(perception, count, start=taught)
        taught = count
        with tempfile.TemporaryDirectory() as folder:
            save = summary(timed(lambda: perception.save(folder), max(3, repeats // 4)))
            size = sum(f.stat().st_size for f in Path(folder).iterdir())
        message = len(serialize_message(snapshot_to_msg(perception.snapshot(), Time())))
        rows.append(
            {
                "objects": count,
                "saved_mb": size / 2**20,
                "save_ms": save["median_ms"],
                "message_kb": message / 1024,
            }
        )
        print(
            f"  {count:>3} objects: saved memory {rows[-1]['saved_mb']:6.1f} MB, one save "
            f"{save['median_ms']:7.1f} ms, "
            f"InstanceMemory message {rows[-1]['message_kb']:7.1f} KiB"
        )
    return rows


SECTIONS = ("stages", "runtimes", "precisions", "scaling", "taught", "geometry", "teach", "memory")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.json")
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run ({', '.join(SECTIONS)}); the others keep their saved results",
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",")]
    if unknown := set(chosen) - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    torch.set_num_threads(torch.get_num_threads())
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}"
    )
    result = json.loads(args.out.read_text()) if set(chosen) != set(SECTIONS) and args.out.exists() else {}
    if "stages" in chosen:
        print("1. latency by stage at 640x480")
        result["stages_640x480"] = stage_latency(args.repeats)
    if "scaling" in chosen:
        print("2. scoring cost against the number of taught objects (features excluded)")
        result["scaling"] = scaling(args.repeats * 5)
        for row in result["scaling"]:
            print(
                f"  {row['objects']:>3} objects: frame (features excluded) {row['frame_vs_1_object']:.2f}x "
                "the 1-object cost, "
                f"scoring alone {row['scoring_vs_1_object']:.2f}x; the per-object sklearn loop is "
                f"{row['loop_vs_stacked']:.1f}x slower than stacked scoring"
            )
    if "taught" in chosen:
        print("2c. a memory of taught objects (all of the synthetic dev sets; features excluded)")
        result["scaling_taught"] = taught_scaling()
    if "runtimes" in chosen:
        print("1b. DINOv2 runtimes and input sizes at 640x480 (random weights)")
        result["runtimes_640x480"] = runtimes(args.repeats)
    if "precisions" in chosen:
        print("1c. DINOv2 precisions at 640x480, short side 448 (random weights)")
        result["precisions_640x480"] = precisions(args.repeats)
    if "teach" in chosen:
        print("3. teach latency")
        result["teach"] = teach_latency(args.repeats)
    if "geometry" in chosen:
        print("2b. the cost of depth and camera poses per frame (features excluded)")
        result["geometry"] = geometry_cost(args.repeats * 5)
    if "memory" in chosen:
        print("4. the saved memory and the memory message against the number of objects")
        result["memory"] = memory_footprint(args.repeats)
    if chosen == list(SECTIONS):
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"5. peak resident memory: {result['peak_rss_mb']:.0f} MB")
    result.update({"torch_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
