"""``isar-ros``: one command for the product's jobs.

    isar-ros demo                                            the README's main job (through the ROS nodes)
    isar-ros up [--image TOPIC ...]                          teach + inference nodes on a live camera
    isar-ros replay --data DIR [--task T --scene S]          sim bridge + teach + inference
    isar-ros generate  --out DIR [--tasks N --seed S ...]   synthetic ISAR-format dataset
    isar-ros benchmark --data DIR --method NAME --out DIR    score a method the way ISAR does
    isar-ros bag export|export-all ...                       ISAR scenes as rosbag2 files
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path

from isar_ros.paths import SOURCE_ROOT

DEMO_DATA = SOURCE_ROOT / "data" / "isar_demo"
DEMO_OUT = SOURCE_ROOT / "out" / "demo"


def _parse_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--option expects key=value, got {pair!r}")
        options[key] = value
    return options


def add_generate(sub) -> None:
    from sim_bridge.generator import GeneratorConfig

    parser = sub.add_parser("generate", help="generate a synthetic dataset in the ISAR layout")
    parser.add_argument("--out", required=True, type=Path)
    for f in fields(GeneratorConfig):
        kind = type(f.default)
        if kind is bool:
            parser.add_argument(f"--{f.name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    parser.add_argument("--quiet", action="store_true")


def cmd_generate(args) -> int:
    from sim_bridge.generator import GeneratorConfig, generate

    config = GeneratorConfig(**{f.name: getattr(args, f.name) for f in fields(GeneratorConfig)})
    summary = generate(config, args.out, progress=not args.quiet)
    print(f"generated {summary['tasks']} tasks, {summary['scenes']} scenes, {summary['frames']} frames "
          f"in {summary['seconds']:.1f} s -> {args.out}")
    return 0


def add_benchmark(sub) -> None:
    parser = sub.add_parser("benchmark", help="score a method on an ISAR-format dataset")
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (holds the task folders)")
    parser.add_argument("--method", default="isar_ros", help="oracle, empty, isar_ros, isar_baseline")
    parser.add_argument("--recorded", type=Path, action="append", metavar="BAG",
                        help="score outputs recorded with `isar-ros bag record` instead of running a method (repeatable)")
    parser.add_argument("--mode", default="both", choices=["single_shot", "multi_shot", "both"])
    parser.add_argument("--task", action="append", help="only these tasks (repeatable)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="method option (repeatable)")
    parser.add_argument("--save-predictions", action="store_true", help="write official colour PNGs under OUT/predictions")
    parser.add_argument("--quiet", action="store_true")


def cmd_benchmark(args) -> int:
    from isar_ros.isar import methods
    from isar_ros.isar.dataset import MODES, IsarDataset
    from isar_ros.isar.report import markdown_summary, write_reports
    from isar_ros.isar.runner import run_benchmark

    dataset = IsarDataset(args.data)
    if args.recorded:
        from isar_ros.isar.runner import BenchmarkResult, score_recorded_bag

        result = BenchmarkResult("recorded outputs", str(args.data))
        for bag in args.recorded:
            mode, record = score_recorded_bag(bag, dataset)
            result.modes.setdefault(mode, []).append(record)
        paths = write_reports(result, args.out)
        print(markdown_summary(result))
        print(f"reports: {', '.join(str(p) for p in paths.values())}")
        return 0
    method = methods.create(args.method, _parse_options(args.option))
    modes = MODES if args.mode == "both" else (args.mode,)
    result = run_benchmark(dataset, method, modes, args.task, args.out / "predictions" if args.save_predictions else None,
                           progress=not args.quiet)
    paths = write_reports(result, args.out)
    print(markdown_summary(result))
    print(f"reports: {', '.join(str(p) for p in paths.values())}")
    return 0


def add_demo(sub) -> None:
    parser = sub.add_parser("demo", help="the main job: generate the demo dataset if missing, teach, find and score through the nodes")
    parser.add_argument("--data", type=Path, default=DEMO_DATA)
    parser.add_argument("--out", type=Path, default=DEMO_OUT)
    parser.add_argument("--mode", default="both", choices=["single_shot", "multi_shot", "both"])
    parser.add_argument("--task", action="append", help="only these tasks (repeatable)")
    parser.add_argument("--bags", type=Path, help="replay scene bags from this folder (isar-ros bag export-all) instead of the folders")
    parser.add_argument("--record", type=Path, help="also record the outputs of each test scene as bags under this folder")


def ensure_demo_data(data: Path) -> None:
    """Generate the demo dataset into the default folder once; another folder must already hold a dataset."""
    from sim_bridge.generator import GeneratorConfig, generate

    if (data / ".complete").is_file() or (data.resolve() != DEMO_DATA.resolve() and data.is_dir()):
        return
    if data.resolve() != DEMO_DATA.resolve():
        raise FileNotFoundError(f"{data} does not exist; generate a dataset there first (isar-ros generate --out {data})")
    print(f"generating the synthetic demo dataset into {data} (once, about a minute)")
    generate(GeneratorConfig(), data)
    (data / ".complete").write_text("demo configuration (sim_bridge.generator.GeneratorConfig defaults), seed 0\n")


def cmd_demo(args) -> int:
    import time

    from isar_ros.isar.dataset import MODES
    from isar_ros.isar.report import markdown_summary, write_reports
    from isar_ros.ros.demo import run_demo

    started = time.perf_counter()
    ensure_demo_data(args.data)
    modes = MODES if args.mode == "both" else (args.mode,)
    result = run_demo(args.data, args.out, modes, args.task, bags=args.bags, record=args.record)
    paths = write_reports(result, args.out)
    print(markdown_summary(result))
    print(f"reports: {', '.join(str(p) for p in paths.values())}, {args.out / 'contact_sheet.png'}")
    print(f"demo wall time: {time.perf_counter() - started:.0f} s")
    return 0


def _remap_arguments(parser) -> None:
    parser.add_argument("--image", default="/camera/image_raw", help="camera image topic (sensor_msgs/Image)")
    parser.add_argument("--camera-info", default="/camera/camera_info")
    parser.add_argument("--depth", default="/camera/depth/image_raw")
    parser.add_argument("--camera-pose", default="/camera/pose", help="geometry_msgs/PoseStamped of the camera's optical frame")
    parser.add_argument("--params-file", type=Path, help="parameters (default: config/isar_ros.yaml)")


def add_up(sub) -> None:
    parser = sub.add_parser("up", help="start the teach and inference nodes on a live camera (Ctrl-C stops them)")
    _remap_arguments(parser)


def add_replay(sub) -> None:
    parser = sub.add_parser("replay", help="start sim bridge + teach + inference on an ISAR-format scene")
    _remap_arguments(parser)
    parser.add_argument("--data", type=Path, default=DEMO_DATA)
    parser.add_argument("--task", default="")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--scene", default="")
    parser.add_argument("--teach", default="none", choices=["none", "single_shot", "multi_shot"],
                        help="first teach the task's objects from its first train scene's prompts")
    parser.add_argument("--loop", action="store_true")
    parser.add_argument("--rate", type=float, default=30.0)


def _camera_remaps(args) -> dict:
    return {"image": args.image, "camera_info": args.camera_info, "depth": args.depth, "camera_pose": args.camera_pose,
            "image_mouse_left": args.image + "_mouse_left"}


def _run_graph(specs: list, describe: list[str]) -> int:
    from isar_ros.launcher import Graph

    with Graph() as graph:
        for spec in specs:
            graph.start(spec)
        print("\n".join(describe + ["Ctrl-C stops everything."]), flush=True)
        try:
            graph.wait_any()
        except KeyboardInterrupt:
            print("stopping")
    return 0


def cmd_up(args) -> int:
    from isar_ros.launcher import NodeSpec

    remaps = _camera_remaps(args)
    specs = [NodeSpec("teach_node", remappings=remaps, params_file=args.params_file),
             NodeSpec("inference_node", remappings={"image": args.image}, params_file=args.params_file)]
    return _run_graph(specs, [
        f"camera: {args.image} (+ {args.camera_info}, {args.depth}, {args.camera_pose})",
        "outputs: /isar_inference/instances (isar_ros_msgs/InstanceSegmentation), /isar_inference/label_image (mono16),",
        "         /isar_inference/overlay (rgb8, for RViz), /isar_inference/status (diagnostic_msgs/DiagnosticStatus)",
        "teaching: /isar_teach/teach service, RViz Publish Point, rqt_image_view clicks (docs/operator.md)",
    ])


def cmd_replay(args) -> int:
    from isar_ros.isar.dataset import IsarDataset
    from isar_ros.launcher import NodeSpec

    ensure_demo_data(args.data)
    task = IsarDataset(args.data).task(args.task) if args.task else IsarDataset(args.data).tasks[0]
    remaps = {"image": args.image, "camera_info": args.camera_info, "depth": args.depth, "camera_pose": args.camera_pose}
    bridge = {"data": str(args.data), "task": task.name, "split": args.split, "scene": args.scene, "loop": args.loop, "rate_hz": args.rate}
    specs = [NodeSpec("teach_node", remappings=_camera_remaps(args), params_file=args.params_file),
             NodeSpec("inference_node", remappings={"image": args.image}, params_file=args.params_file)]
    if args.teach != "none":
        specs.append(NodeSpec("sim_bridge_node", {"data": str(args.data), "task": task.name, "split": "train", "teach": args.teach,
                                                  "play": False, "exit_when_done": True}, params_file=args.params_file))
    specs.append(NodeSpec("sim_bridge_node", bridge, remappings=remaps, params_file=args.params_file))
    return _run_graph(specs, [f"replaying {task.name}/{args.split} at {args.rate:g} Hz on {args.image}",
                              "outputs: /isar_inference/instances, /isar_inference/overlay, /isar_inference/status"])


def add_bag(sub) -> None:
    parser = sub.add_parser("bag", help="ISAR scenes as rosbag2 files")
    bag = parser.add_subparsers(dest="bag_command", required=True)
    export = bag.add_parser("export", help="one scene as one bag")
    export.add_argument("--data", type=Path, required=True)
    export.add_argument("--task", required=True)
    export.add_argument("--scene", required=True)
    export.add_argument("--split", default="test", choices=["train", "test"])
    export.add_argument("--out", type=Path, required=True, help="bag folder to write")
    export.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    export.add_argument("--compressed", action="store_true", help="also /image/compressed (the scene's JPEG bytes)")
    rec = bag.add_parser("record", help="record outputs into a bag (until Ctrl-C, --duration or --idle)")
    rec.add_argument("--out", type=Path, required=True)
    rec.add_argument("--topic", action="append", help="topic to record (default /isar_inference/instances; repeatable)")
    rec.add_argument("--task", default="", help="the ISAR task the outputs answer (for isar-ros benchmark --recorded)")
    rec.add_argument("--scene", default="")
    rec.add_argument("--split", default="test")
    rec.add_argument("--mode", default="", help="single_shot or multi_shot, as a label in the scores")
    rec.add_argument("--start-time", type=float, default=1000.0, help="sim time of frame 0 (the sim bridge's start_time_s)")
    rec.add_argument("--duration", type=float, default=0.0)
    rec.add_argument("--idle", type=float, default=0.0, help="stop this many seconds after the last message")
    everything = bag.add_parser("export-all", help="every scene of a dataset (resumes where it stopped)")
    everything.add_argument("--data", type=Path, required=True)
    everything.add_argument("--out", type=Path, required=True)
    everything.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    everything.add_argument("--compressed", action="store_true")


def cmd_bag(args) -> int:
    from isar_ros.isar.dataset import IsarDataset
    from sim_bridge.bags import export_dataset, export_scene

    if args.bag_command == "record":
        from isar_ros.paths import config_file
        from isar_ros.ros.environment import SHM_PROFILE
        from isar_ros.ros.recorder import DEFAULT_TOPICS, record

        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(config_file(SHM_PROFILE)))
        metadata = {k: v for k, v in {"isar_task": args.task, "isar_scene": args.scene, "isar_split": args.split,
                                      "isar_mode": args.mode, "isar_start_time_s": args.start_time}.items() if v != ""}
        return record(args.out, args.topic or list(DEFAULT_TOPICS), metadata, args.duration, args.idle)
    if args.bag_command == "export":
        task = IsarDataset(args.data).task(args.task)
        scenes = [s for s in (task.train_scenes if args.split == "train" else task.test_scenes) if s.name == args.scene]
        if not scenes:
            raise KeyError(f"no {args.split} scene {args.scene!r} in {task.name}")
        result = export_scene(scenes[0], args.out, args.storage, args.compressed)
        print(f"wrote {result['bag']}: {result['frames']} frames, {result['bytes'] / 1e6:.1f} MB, {result['frames_per_s']:.1f} frames/s")
    else:
        results = export_dataset(args.data, args.out, args.storage, args.compressed)
        print(f"wrote {len(results)} bags into {args.out} (finished ones were skipped)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="isar-ros", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_generate(sub)
    add_benchmark(sub)
    add_demo(sub)
    add_up(sub)
    add_replay(sub)
    add_bag(sub)
    args = parser.parse_args(argv)
    handlers = {"generate": cmd_generate, "benchmark": cmd_benchmark, "demo": cmd_demo, "up": cmd_up, "replay": cmd_replay, "bag": cmd_bag}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, KeyError, ValueError, TimeoutError, RuntimeError) as error:
        print(f"isar-ros {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
