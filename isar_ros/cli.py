"""``isar-ros``: one command for the product's jobs.

isar-ros demo                                            the README's main job (through the ROS nodes)
isar-ros up [--image TOPIC ...]                          teach + inference nodes on a live camera
isar-ros replay --data DIR [--task T --scene S]          sim bridge + teach + inference
isar-ros generate  --out DIR [--tasks N --seed S ...]   synthetic ISAR-format dataset
isar-ros benchmark --data DIR --method NAME --out DIR    score a method the way ISAR does
isar-ros bag export|export-all|record ...                ISAR scenes as rosbag2 files; outputs recorded
isar-ros weights list|download NAME|verify               DINOv2 and SAM checkpoints
isar-ros import davis|perseg|bop|generic SRC --out DIR   real data sets into the ISAR layout
isar-ros evaluate config/eval/dev.yaml [--compare OLD]   a method over many data sets (dev / test protocol)
isar-ros objects list|rename|forget|export|import         taught objects, on a running teach node or a folder
isar-ros teach IMAGE --box X0 Y0 X1 Y1 --name NAME        teach from an image file, for scripts
isar-ros quantize dinov2_vits14 --images DIR              DINOv2 int8 on OpenVINO, calibrated on your images
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np

from isar_ros.errors import ConfigurationError, MissingResource, UserError
from isar_ros.msgio import topics
from isar_ros.msgio.timing import REPLAY_START_S
from isar_ros.paths import workspace_dir

DEMO_DATA = workspace_dir() / "data" / "isar_demo"
DEMO_OUT = workspace_dir() / "out" / "demo"


def _parse_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigurationError(f"--option expects key=value, got {pair!r}")
        options[key] = value
    return options


def add_generate(sub) -> None:
    from sim_bridge.generator import GeneratorConfig

    parser = sub.add_parser("generate", help="generate a synthetic dataset in the ISAR layout")
    parser.add_argument("--out", required=True, type=Path)
    for f in fields(GeneratorConfig):
        kind = type(f.default)
        if kind is bool:
            parser.add_argument(
                f"--{f.name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=f.default
            )
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    parser.add_argument("--quiet", action="store_true")


def cmd_generate(args) -> int:
    from sim_bridge.generator import GeneratorConfig, generate

    config = GeneratorConfig(**{f.name: getattr(args, f.name) for f in fields(GeneratorConfig)})
    summary = generate(config, args.out, progress=not args.quiet)
    print(
        f"generated {summary['tasks']} tasks, {summary['scenes']} scenes, {summary['frames']} frames "
        f"in {summary['seconds']:.1f} s -> {args.out}"
    )
    return 0


def add_benchmark(sub) -> None:
    parser = sub.add_parser("benchmark", help="score a method on an ISAR-format dataset")
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (holds the task folders)")
    parser.add_argument("--method", default="isar_ros", help="oracle, empty, isar_ros, isar_baseline")
    parser.add_argument(
        "--recorded",
        type=Path,
        action="append",
        metavar="BAG",
        help="score outputs recorded with `isar-ros bag record` instead of running a method (repeatable)",
    )
    parser.add_argument("--mode", default="both", choices=["single_shot", "multi_shot", "both"])
    parser.add_argument("--task", action="append", help="only these tasks (repeatable)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="method option (repeatable)"
    )
    parser.add_argument(
        "--save-predictions", action="store_true", help="write official colour PNGs under OUT/predictions"
    )
    parser.add_argument("--quiet", action="store_true")


def cmd_benchmark(args) -> int:
    from isar_ros.isar import registry
    from isar_ros.isar.dataset import MODES, IsarDataset
    from isar_ros.isar.report import markdown_summary, write_reports
    from isar_ros.isar.runner import run_benchmark

    dataset = IsarDataset(args.data)
    if args.recorded:
        from isar_ros.isar.runner import BenchmarkResult
        from sim_bridge.bags import score_recorded_bag

        result = BenchmarkResult("recorded outputs", str(args.data))
        for bag in args.recorded:
            mode, record = score_recorded_bag(bag, dataset)
            result.modes.setdefault(mode, []).append(record)
        paths = write_reports(result, args.out)
        print(markdown_summary(result))
        print(f"reports: {', '.join(str(p) for p in paths.values())}")
        return 0
    method = registry.create(args.method, _parse_options(args.option))
    modes = MODES if args.mode == "both" else (args.mode,)
    result = run_benchmark(
        dataset,
        method,
        modes,
        args.task,
        args.out / "predictions" if args.save_predictions else None,
        progress=not args.quiet,
    )
    paths = write_reports(result, args.out)
    print(markdown_summary(result))
    print(f"reports: {', '.join(str(p) for p in paths.values())}")
    return 0


def add_demo(sub) -> None:
    parser = sub.add_parser(
        "demo",
        help="the main job: generate the demo dataset if missing, teach, find and score through the nodes",
    )
    parser.add_argument("--data", type=Path, default=DEMO_DATA)
    parser.add_argument("--out", type=Path, default=DEMO_OUT)
    parser.add_argument("--mode", default="both", choices=["single_shot", "multi_shot", "both"])
    parser.add_argument("--task", action="append", help="only these tasks (repeatable)")
    parser.add_argument(
        "--bags",
        type=Path,
        help="replay scene bags from this folder (isar-ros bag export-all) instead of the folders",
    )
    parser.add_argument(
        "--record", type=Path, help="also record the outputs of each test scene as bags under this folder"
    )


def ensure_demo_data(data: Path) -> None:
    """Generate the demo dataset into the default folder once; another folder must already hold a dataset."""
    from sim_bridge.generator import GeneratorConfig, generate

    if (data / ".complete").is_file() or (data.resolve() != DEMO_DATA.resolve() and data.is_dir()):
        return
    if data.resolve() != DEMO_DATA.resolve():
        raise MissingResource(
            f"{data} does not exist; generate a dataset there first (isar-ros generate --out {data})"
        )
    print(f"generating the synthetic demo dataset into {data} (once, about a minute)")
    generate(GeneratorConfig(), data)
    (data / ".complete").write_text(
        "demo configuration (sim_bridge.generator.GeneratorConfig defaults), seed 0\n"
    )


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


def _node_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", default="/camera/image_raw", help="camera image topic (sensor_msgs/Image)")
    parser.add_argument(
        "--camera-info",
        help="camera info topic (default: beside the image, as image_transport does: "
        "/camera/color/image_raw -> /camera/color/camera_info)",
    )
    parser.add_argument("--depth", default="/camera/depth/image_raw")
    parser.add_argument(
        "--camera-pose",
        default="/camera/pose",
        help="geometry_msgs/PoseStamped of the camera's optical frame",
    )
    parser.add_argument(
        "--namespace", default="", help="run both nodes in this namespace (multi-robot: robot2)"
    )
    parser.add_argument(
        "--memory-dir", type=Path, help="the teach node's memory folder (overrides the parameters file)"
    )
    parser.add_argument("--params-file", type=Path, help="parameters (default: config/isar_ros.yaml)")
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="set a parameter of the node(s) that declare it (repeatable), e.g. -p presence_offset:=0.5",
    )
    parser.add_argument(
        "--use-sim-time", action="store_true", help="follow /clock (replayed bags, simulators)"
    )
    parser.add_argument(
        "--web",
        action="store_true",
        help="also start the browser teach panel (isar_web) at http://127.0.0.1:8088/ "
        "(-p port:=N, -p bind_address:=0.0.0.0 -p token:=SECRET for other machines)",
    )


def add_up(sub) -> None:
    parser = sub.add_parser(
        "up", help="start the teach and inference nodes on a live camera (Ctrl-C stops them)"
    )
    _node_arguments(parser)


def add_replay(sub) -> None:
    parser = sub.add_parser("replay", help="start sim bridge + teach + inference on an ISAR-format scene")
    _node_arguments(parser)
    parser.add_argument("--data", type=Path, default=DEMO_DATA)
    parser.add_argument("--task", default="")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--scene", default="")
    parser.add_argument(
        "--teach",
        default="none",
        choices=["none", "single_shot", "multi_shot"],
        help="first teach the task's objects from its first train scene's prompts, then play",
    )
    parser.add_argument("--loop", action="store_true")
    parser.add_argument("--rate", type=float, default=30.0)


def _node_specs(args, memory_dir: Path | None) -> list:
    """The teach and inference NodeSpecs of ``up`` / ``replay`` from the command line."""

    from isar_ros.ros import inference_node, teach_node, web_node
    from isar_ros.ros.launcher import NodeSpec
    from isar_ros.ros.lifecycle import AUTOSTART
    from isar_ros.settings import assignments

    known = {
        "teach_node": {s.name: s for s in [*teach_node.parameter_specs(), AUTOSTART]},
        "inference_node": {s.name: s for s in [*inference_node.parameter_specs(), AUTOSTART]},
    }
    if args.web:
        known["web_node"] = {s.name: s for s in [*web_node.parameter_specs(), AUTOSTART]}
    parameters = assignments(
        args.param, known, " with a parameter of the started nodes (the web panel's need --web)"
    )
    if memory_dir is not None:
        parameters["teach_node"]["memory_dir"] = str(memory_dir)
    for node in parameters:
        if args.use_sim_time:
            parameters[node]["use_sim_time"] = True
    camera = {
        topics.IMAGE: args.image,
        topics.CAMERA_INFO: args.camera_info or topics.camera_info_for(args.image),
        topics.DEPTH: args.depth,
        topics.CAMERA_POSE: args.camera_pose,
        topics.PIXEL_CLICKS: args.image + "_mouse_left",
    }
    specs = [
        NodeSpec("teach_node", parameters["teach_node"], camera, args.params_file, args.namespace),
        NodeSpec(
            "inference_node",
            parameters["inference_node"],
            {k: v for k, v in camera.items() if k != topics.PIXEL_CLICKS},
            args.params_file,
            args.namespace,
        ),
    ]
    if args.web:
        specs.append(
            NodeSpec(
                "web_node",
                parameters["web_node"],
                {topics.IMAGE: args.image},
                args.params_file,
                args.namespace,
            )
        )
    return specs


def _describe(args) -> list[str]:

    out = lambda name: topics.absolute(topics.INFERENCE_NODE, name, args.namespace)  # noqa: E731
    return [
        f"outputs: {out(topics.INSTANCES)} (isar_ros_msgs/InstanceSegmentation), {out(topics.LABEL_IMAGE)} "
        "(mono16),",
        f"         {out(topics.OVERLAY)} (rgb8, for RViz), {out(topics.OUTPUT_CAMERA_INFO)}, /diagnostics",
        f"teaching: {topics.absolute(topics.TEACH_NODE, '~/teach', args.namespace)} service, RViz Publish "
        "Point, "
        "rqt_image_view clicks (docs/operator.md)",
        "Ctrl-C (or SIGTERM) stops everything.",
    ]


def cmd_up(args) -> int:
    from isar_ros.ros.launcher import Graph

    with Graph() as graph:
        for spec in _node_specs(args, args.memory_dir):
            graph.start(spec, name=spec.executable)
        camera = args.camera_info or topics.camera_info_for(args.image)
        print(
            "\n".join(
                [f"camera: {args.image} (+ {camera}, {args.depth}, {args.camera_pose})", *_describe(args)]
            ),
            flush=True,
        )
        return graph.supervise()


def cmd_replay(args) -> int:
    import shutil
    import tempfile

    from isar_ros.isar.dataset import IsarDataset
    from isar_ros.ros.launcher import Graph, NodeSpec, stop_signals_as_interrupt

    ensure_demo_data(args.data)
    dataset = IsarDataset(args.data)
    task = dataset.task(args.task) if args.task else dataset.tasks[0]
    # A replay teaches the dataset's objects: into a folder of its own, never into the operator's memory.
    memory_dir = args.memory_dir or Path(tempfile.mkdtemp(prefix="isar_ros_replay_memory_"))
    camera = {
        "image": args.image,
        "camera_info": args.camera_info or topics.camera_info_for(args.image),
        "depth": args.depth,
        "camera_pose": args.camera_pose,
    }
    bridge = {
        "data": str(args.data),
        "task": task.name,
        "split": args.split,
        "scene": args.scene,
        "loop": args.loop,
        "rate_hz": args.rate,
    }
    try:
        with Graph() as graph:
            for spec in _node_specs(args, memory_dir):
                graph.start(spec, name=spec.executable)
            print(
                f"memory: {memory_dir}" + ("" if args.memory_dir else " (temporary; --memory-dir keeps it)"),
                flush=True,
            )
            if args.teach != "none":
                print(
                    f"teaching {task.name} from its train prompts ({args.teach}) before playing ...",
                    flush=True,
                )
                teacher = graph.start(
                    NodeSpec(
                        "sim_bridge_node",
                        {
                            "data": str(args.data),
                            "task": task.name,
                            "split": "train",
                            "teach": args.teach,
                            "play": False,
                            "exit_when_done": True,
                            "teach_service": f"/{args.namespace.strip('/')}/isar_teach/teach".replace(
                                "//", "/"
                            ),
                        },
                        params_file=args.params_file,
                        namespace=args.namespace,
                    ),
                    name="sim_bridge_teacher",
                    helper=True,
                )
                with stop_signals_as_interrupt():
                    try:
                        code = graph.wait_for(teacher)
                    except KeyboardInterrupt:
                        return 0
                if code is None:
                    return graph.supervise()  # a node failed while teaching: say which
                if code != 0:
                    print(
                        f"teaching failed (sim bridge exit code {code}); see the output above",
                        file=sys.stderr,
                    )
                    return code
            graph.start(
                NodeSpec(
                    "sim_bridge_node",
                    bridge,
                    remappings=camera,
                    params_file=args.params_file,
                    namespace=args.namespace,
                ),
                name="sim_bridge_node",
            )
            print(
                "\n".join(
                    [
                        f"replaying {task.name}/{args.split} at {args.rate:g} Hz on {args.image}",
                        *_describe(args),
                    ]
                ),
                flush=True,
            )
            return graph.supervise()
    finally:
        if args.memory_dir is None:
            shutil.rmtree(memory_dir, ignore_errors=True)


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
    export.add_argument(
        "--compressed", action="store_true", help="also /image/compressed (the scene's JPEG bytes)"
    )
    rec = bag.add_parser("record", help="record outputs into a bag (until Ctrl-C, --duration or --idle)")
    rec.add_argument("--out", type=Path, required=True)
    rec.add_argument(
        "--topic", action="append", help="topic to record (default /isar_inference/instances; repeatable)"
    )
    rec.add_argument(
        "--task", default="", help="the ISAR task the outputs answer (for isar-ros benchmark --recorded)"
    )
    rec.add_argument("--scene", default="")
    rec.add_argument("--split", default="test")
    rec.add_argument("--mode", default="", help="single_shot or multi_shot, as a label in the scores")
    rec.add_argument(
        "--start-time",
        type=float,
        default=REPLAY_START_S,
        help="sim time of frame 0 (the sim bridge's start_time_s)",
    )
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
        metadata = {
            k: v
            for k, v in {
                "isar_task": args.task,
                "isar_scene": args.scene,
                "isar_split": args.split,
                "isar_mode": args.mode,
                "isar_start_time_s": args.start_time,
            }.items()
            if v != ""
        }
        return record(args.out, args.topic or list(DEFAULT_TOPICS), metadata, args.duration, args.idle)
    if args.bag_command == "export":
        task = IsarDataset(args.data).task(args.task)
        scenes = [
            s
            for s in (task.train_scenes if args.split == "train" else task.test_scenes)
            if s.name == args.scene
        ]
        if not scenes:
            raise ConfigurationError(f"no {args.split} scene {args.scene!r} in {task.name}")
        result = export_scene(scenes[0], args.out, args.storage, args.compressed)
        print(
            f"wrote {result['bag']}: {result['frames']} frames, {result['bytes'] / 1e6:.1f} MB, "
            f"{result['frames_per_s']:.1f} frames/s"
        )
    else:
        results = export_dataset(args.data, args.out, args.storage, args.compressed)
        print(f"wrote {len(results)} bags into {args.out} (finished ones were skipped)")
    return 0


def add_import(sub) -> None:
    parser = sub.add_parser(
        "import", help="real data sets with instance masks -> the ISAR layout (davis, perseg, bop, generic)"
    )
    kinds = parser.add_subparsers(dest="kind", required=True)
    for kind, what in (
        ("davis", "DAVIS 2016 / 2017 (JPEGImages/480p, Annotations/480p)"),
        ("perseg", "PerSeg-style <object>_NN.jpg + .png photographs"),
        ("bop", "BOP scenes (scene_gt.json, scene_camera.json, rgb/, depth/, mask_visib/)"),
        ("generic", "frames/ + masks/ (instance-id PNGs), or folders of them"),
    ):
        one = kinds.add_parser(kind, help=what)
        one.add_argument("source", type=Path)
        one.add_argument(
            "--out", type=Path, required=True, help="dataset folder to write (tasks are added or replaced)"
        )
        one.add_argument(
            "--train-frames", type=int, default=20, help="videos: frames of the train scene (default 20)"
        )
        one.add_argument("--test-stride", type=int, default=1, help="videos: test every k-th remaining frame")
        one.add_argument(
            "--absent", type=int, default=1, help="other videos/objects added as absent-object test scenes"
        )
        one.add_argument("--absent-frames", type=int, default=30, help="frames of each absent-object scene")
        one.add_argument(
            "--max-side",
            type=int,
            default=640 if kind == "perseg" else 0,
            help="resize so that the longer image side is at most this (0: keep)",
        )
        one.add_argument("--seed", type=int, default=0, help="the prompts' random pixels")
        if kind == "davis":
            one.add_argument("--sequences", nargs="*", help="only these sequences")
        if kind == "bop":
            one.add_argument("--train-scenes", nargs="*", help="scenes to teach from (default: the first)")
            one.add_argument("--frame-stride", type=int, default=10)
            one.add_argument("--max-frames", type=int, default=60, help="per scene (0: all)")


def cmd_import(args) -> int:
    from isar_ros.isar import importers

    options = importers.ImportOptions(
        train_frames=args.train_frames,
        test_stride=args.test_stride,
        absent=args.absent,
        absent_frames=args.absent_frames,
        max_side=args.max_side,
        seed=args.seed,
        frame_stride=getattr(args, "frame_stride", 1),
        max_frames=getattr(args, "max_frames", 0),
    )
    if not args.source.exists():
        raise MissingResource(f"{args.source} does not exist")
    if args.kind == "davis":
        summaries = importers.import_videos(
            importers.davis_videos(args.source, args.sequences), args.out, options
        )
    elif args.kind == "generic":
        summaries = importers.import_videos(importers.generic_videos(args.source), args.out, options)
    elif args.kind == "perseg":
        summaries = importers.import_perseg(args.source, args.out, options)
    else:
        summaries = importers.import_bop(args.source, args.out, options, args.train_scenes)
    for s in summaries:
        print(
            f"{s['task']}: {len(s['objects'])} object(s), {s['train']} train + {s['test']} test scenes, "
            f"{s['frames']} frames"
        )
    print(f"imported {len(summaries)} task(s) into {args.out}")
    return 0


def add_evaluate(sub) -> None:
    parser = sub.add_parser(
        "evaluate", help="one method configuration over many data sets (config/eval/dev.yaml, test.yaml)"
    )
    parser.add_argument("suite", type=Path, help="suite file, e.g. config/eval/dev.yaml")
    parser.add_argument(
        "--out", type=Path, help="report folder (default out/eval/<suite name>); resumes from it"
    )
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="method option, over the suite's"
    )
    parser.add_argument("--only", nargs="*", help="only these data sets or groups")
    parser.add_argument(
        "--compare", type=Path, metavar="OLD.json", help="print the deltas to an earlier report.json"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="score every data set again (cached data is kept)"
    )
    parser.add_argument("--quiet", action="store_true")


def _generate_dataset(settings: dict, folder: Path) -> None:
    from sim_bridge.generator import GeneratorConfig, generate

    generate(GeneratorConfig(**settings), folder, progress=False)


def cmd_evaluate(args) -> int:
    import json

    from isar_ros.isar.evaluation import compare, evaluate, load_suite
    from sim_bridge.generator import GeneratorConfig

    suite = load_suite(args.suite, {f.name for f in fields(GeneratorConfig)})
    suite.options.update(_parse_options(args.option))
    out = args.out or workspace_dir() / "out" / "eval" / suite.name
    report = evaluate(suite, out, _generate_dataset, args.only, args.fresh, progress=not args.quiet)
    print((out / "report.md").read_text())
    if args.compare:
        print(compare(report, json.loads(args.compare.read_text())))
    print(f"reports: {out / 'report.md'}, {out / 'report.json'}, {out / 'report.png'}")
    return 0


def add_objects(sub) -> None:
    parser = sub.add_parser(
        "objects",
        help="taught objects: list, rename, forget, export, import (a running teach node or a folder)",
    )
    parser.add_argument(
        "--memory-dir", type=Path, help="work on this memory folder instead of a running teach node"
    )
    parser.add_argument("--node", default="/isar_teach", help="the teach node to ask (default /isar_teach)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the teach node")
    objects = parser.add_subparsers(dest="objects_command", required=True)
    objects.add_parser("list", help="id, name and number of taught views of every object")
    rename = objects.add_parser("rename", help="give an object (id or name) a new name")
    rename.add_argument("object")
    rename.add_argument("new_name")
    forget = objects.add_parser("forget", help="forget an object (id or name); ids are never reused")
    forget.add_argument("object")
    export = objects.add_parser(
        "export", help="the whole memory as one archive file (to load it on another robot)"
    )
    export.add_argument("file", type=Path)
    load = objects.add_parser(
        "import", help="replace the memory by an archive of `isar-ros objects export` (checked)"
    )
    load.add_argument("file", type=Path)


def add_teach(sub) -> None:
    parser = sub.add_parser(
        "teach", help="teach an object from an image file and a box (and clicks), for scripts"
    )
    parser.add_argument("image", type=Path)
    parser.add_argument(
        "--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"), help="inclusive pixel box"
    )
    parser.add_argument(
        "--point",
        type=float,
        nargs=2,
        action="append",
        default=[],
        metavar=("X", "Y"),
        help="a click on the object (repeatable)",
    )
    parser.add_argument(
        "--name", required=True, help="the object's name (an existing name gets one more view)"
    )
    parser.add_argument(
        "--memory-dir", type=Path, help="teach into this memory folder instead of a running teach node"
    )
    parser.add_argument("--node", default="/isar_teach")
    parser.add_argument("--timeout", type=float, default=60.0)


class _TeachNodeClient:
    """`isar-ros objects` / `teach` against a running teach node (its services)."""

    def __init__(self, node: str, timeout: float):
        import threading

        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from isar_ros.ros.environment import ros_environment

        os.environ.update(ros_environment())
        rclpy.init()
        self.rclpy, self.prefix, self.timeout = rclpy, node.rstrip("/"), timeout
        self.node = rclpy.create_node("isar_ros_cli")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()

    def call(self, name: str, srv_type, request):
        from isar_ros.ros import services

        client = self.node.create_client(srv_type, f"{self.prefix}/{name}")
        if not services.wait_until_ready(client, self.timeout):
            raise MissingResource(
                f"no teach node answers at {self.prefix}/{name} within {self.timeout:g} s; start one "
                "(isar-ros up) or pass --memory-dir to work on a memory folder"
            )
        try:
            return services.call(client, request, self.timeout)
        except TimeoutError as error:
            raise MissingResource(f"{error}; is the teach node busy or stopped?") from None

    def close(self) -> None:
        """Stop spinning and join the thread before rclpy goes (else the process aborts at exit)."""
        self.executor.shutdown()
        self.spinner.join(timeout=10.0)
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def _object_id(reference: str, objects) -> int:
    """An id given as a number, or the id of the object with that name."""
    if reference.isdigit():
        return int(reference)
    matches = [o.object_id for o in objects if o.name == reference]
    if len(matches) != 1:
        raise ConfigurationError(
            f"{'no' if not matches else 'several'} objects named {reference!r}; "
            "isar-ros objects list shows ids and names"
        )
    return matches[0]


def cmd_objects(args) -> int:
    if args.memory_dir is not None:
        return _objects_in_folder(args)
    import tempfile

    from isar_ros_msgs.srv import ForgetObject, ListObjects, LoadMemory, RenameObject, SaveMemory

    from isar_ros.core.memory_store import export_archive, import_archive

    client = _TeachNodeClient(args.node, args.timeout)
    try:
        listed = client.call("list", ListObjects, ListObjects.Request())
        command = args.objects_command
        if command == "list":
            print(
                f"memory version {listed.memory_version}, backbone {listed.backbone_id}, "
                f"{len(listed.objects)} objects"
            )
            for o in listed.objects:
                print(f"  {o.object_id:>5}  {o.name}  ({o.num_exemplars} views)")
            return 0
        if command in ("rename", "forget"):
            object_id = _object_id(args.object, listed.objects)
            if command == "rename":
                answer = client.call(
                    "rename", RenameObject, RenameObject.Request(object_id=object_id, new_name=args.new_name)
                )
            else:
                answer = client.call("forget", ForgetObject, ForgetObject.Request(object_id=object_id))
            print(answer.message)
            return 0 if answer.success else 1
        with tempfile.TemporaryDirectory(prefix="isar_ros_objects_") as tmp:
            if command == "export":
                answer = client.call("save", SaveMemory, SaveMemory.Request(directory=tmp))
                if not answer.success:
                    print(answer.message, file=sys.stderr)
                    return 1
                print(f"exported {len(listed.objects)} objects to {export_archive(tmp, args.file)}")
                return 0
            from isar_ros.core.memory_store import save_memory

            save_memory(import_archive(args.file), tmp)  # checked before the node sees it
            answer = client.call("load", LoadMemory, LoadMemory.Request(directory=tmp))
            print(answer.message)
            return 0 if answer.success else 1
    finally:
        client.close()


def _objects_in_folder(args) -> int:
    from isar_ros.core.memory_store import export_archive, import_archive, load_memory, save_memory

    command, folder = args.objects_command, args.memory_dir
    if command == "import":
        memory = import_archive(args.file)
        save_memory(memory, folder)
        print(f"imported {len(memory.objects)} objects into {folder}")
        return 0
    if command == "export":
        print(f"exported {folder} to {export_archive(folder, args.file)}")
        return 0
    memory = load_memory(folder)
    snapshot = memory.snapshot()
    if command == "list":
        print(
            f"memory version {memory.version}, backbone {memory.backbone_id}, {len(snapshot.objects)} objects"
        )
        for o in snapshot.objects:
            print(f"  {o.object_id:>5}  {o.name}  ({o.num_exemplars} views)")
        return 0
    object_id = _object_id(args.object, snapshot.objects)
    if command == "rename":
        memory.rename(object_id, args.new_name)
        print(f"object {object_id} is now {args.new_name!r}")
    else:
        memory.forget(object_id)
        print(f"forgot object {object_id}")
    save_memory(memory, folder)
    return 0


def cmd_teach(args) -> int:
    import cv2

    from isar_ros.core.prompt_mask import POSITIVE, Prompt

    bgr = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
    if bgr is None:
        raise MissingResource(f"{args.image}: not an image file OpenCV can read")
    rgb = bgr[..., ::-1].copy()
    points = [(x, y) for x, y in args.point]
    prompt = Prompt(
        np.array(points, np.float32).reshape(-1, 2),
        np.full(len(points), POSITIVE, np.int32),
        None if args.box is None else np.array(args.box, np.float32),
    )
    prompt.validate(rgb.shape[1], rgb.shape[0])
    if args.memory_dir is not None:
        from isar_ros.core.memory_store import load_memory
        from isar_ros.core.perception import Perception, PerceptionConfig

        perception = Perception(PerceptionConfig())
        if (args.memory_dir / "manifest.json").is_file():
            perception.memory = load_memory(args.memory_dir, perception.backbone.backbone_id)
        result = perception.teach_images([(rgb, [prompt])], name=args.name)
        perception.save(args.memory_dir)
        print(f"taught object {result.object_id} ({args.name}) into {args.memory_dir}")
        return 0
    from isar_ros_msgs.srv import TeachObject

    from isar_ros.msgio.image_codec import numpy_to_image
    from isar_ros.ros.conversions import prompt_to_msg

    client = _TeachNodeClient(args.node, args.timeout)
    try:
        request = TeachObject.Request(name=args.name, image=numpy_to_image(rgb, "rgb8"))
        request.prompts = [prompt_to_msg(prompt, request.image.header)]
        answer = client.call("teach", TeachObject, request)
        print(answer.message)
        return 0 if answer.success else 1
    finally:
        client.close()


def add_weights(sub) -> None:
    parser = sub.add_parser(
        "weights", help="model checkpoints: list, download, verify (where they go: isar-ros weights list)"
    )
    weights = parser.add_subparsers(dest="weights_command", required=True)
    weights.add_parser("list", help="every known checkpoint, its file and whether it is found")
    download = weights.add_parser(
        "download", help="fetch an official checkpoint into the weights folder and verify it"
    )
    download.add_argument("name", help="a name of `isar-ros weights list`, e.g. dinov2_vits14 or sam_vit_b")
    download.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the server")
    verify = weights.add_parser(
        "verify", help="check the checkpoints that are found (size, MD5 prefix, SHA-256)"
    )
    verify.add_argument("name", nargs="*", help="only these (default: every one found)")


def cmd_weights(args) -> int:
    from isar_ros.core import weights

    if args.weights_command == "list":
        print(
            f"weights folder: {weights.cache_dir()}  (ISAR_ROS_WEIGHTS changes it; ISAR_ROS_<NAME> names "
            "one file)"
        )
        for name, spec in weights.CHECKPOINTS.items():
            path = weights.found(name)
            where = f"found: {path}" if path else "missing"
            print(f"  {name:<20} {spec.filename:<32} {where}")
        return 0
    if args.weights_command == "download":
        path = weights.download(args.name, timeout=args.timeout)
        print(f"downloaded and verified {path}")
        return 0
    names = args.name or [n for n in weights.CHECKPOINTS if weights.found(n)]
    if not names:
        print(f"no checkpoint found in {weights.cache_dir()}; nothing to verify")
        return 0
    failed = 0
    for name in names:
        ok, detail = weights.verify(name)
        failed += not ok
        print(f"{'ok  ' if ok else 'BAD '} {name}: {detail}")
    return 1 if failed else 0


def add_quantize(sub) -> None:
    parser = sub.add_parser(
        "quantize",
        help="DINOv2 on OpenVINO: an int8 copy of the network, calibrated on your own camera images",
        description="Quantises the DINOv2 network to int8 (NNCF post-training quantisation; pip install "
        "nncf) for one camera size and input short side, from a folder of the camera's colour images, and "
        "prints how close its features stay to fp32 on images it did not see. The nodes then run it with "
        "-p backend:=openvino -p precision:=int8 (the same short_side).",
    )
    parser.add_argument(
        "backbone", help="dinov2_vit{s,b,l,g}14[_reg4]; its checkpoint is found as for the nodes"
    )
    parser.add_argument(
        "--images",
        type=Path,
        required=True,
        help="a folder of the camera's colour images (.jpg/.jpeg/.png, searched recursively; grey images "
        "such as masks are skipped): 100-300 varied views of the places the robot works in",
    )
    parser.add_argument(
        "--camera-size", default="", help="WxH the node will see (default: the first image's size)"
    )
    parser.add_argument("--short-side", type=int, default=448, help="the node's short_side (224/336/448)")
    parser.add_argument("--limit", type=int, default=300, help="at most this many calibration images")
    parser.add_argument("--check", type=int, default=5, help="images held out to compare int8 with fp32")


def cmd_quantize(args) -> int:
    import cv2
    import torch

    from isar_ros.core.backbones.dinov2 import Dinov2Backbone
    from isar_ros.errors import InvalidInput
    from isar_ros.isar.importers import IMAGE_SUFFIXES

    if not args.images.is_dir():
        raise InvalidInput(f"--images {args.images} is not a folder")
    files = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    wanted = max(1, args.limit) + max(0, args.check)
    chosen = (
        [files[int(i)] for i in np.unique(np.linspace(0, len(files) - 1, wanted).round())] if files else []
    )
    images, size = [], None
    for path in chosen:
        bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if bgr is None or bgr.ndim != 3 or bgr.dtype != np.uint8:
            continue  # unreadable, grey (masks) or 16-bit (depth)
        if size is None:
            size = _camera_size(args.camera_size) or (bgr.shape[1], bgr.shape[0])
        images.append(
            cv2.cvtColor(cv2.resize(bgr[..., :3], size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        )
    if len(images) < 2:
        raise InvalidInput(
            f"{args.images} holds {len(images)} usable colour images; quantising needs at least 2 "
            "(100-300 varied views of the robot's places are best)"
        )
    held_out = set(range(0, len(images), max(2, len(images) // max(1, args.check)))[: max(0, args.check)])
    check = [image for k, image in enumerate(images) if k in held_out]
    calibration = [image for k, image in enumerate(images) if k not in held_out]
    backbone = Dinov2Backbone.from_name(
        args.backbone, torch.device("cpu"), short_side=args.short_side, backend="openvino", precision="fp32"
    )
    print(
        f"calibrating {args.backbone} at {size[0]}x{size[1]} (short side {args.short_side}) on "
        f"{len(calibration)} images, {len(check)} held out to check ..."
    )
    result = backbone.quantize(calibration, check)
    print(f"wrote {result.path} in {result.seconds:.0f} s")
    if check:
        print(
            f"int8 against fp32 on the held-out images: patch cosine min {result.min_cosine:.4f}, "
            f"mean {result.mean_cosine:.4f}"
            + (
                ""
                if result.min_cosine >= 0.99
                else "  (below 0.99: calibrate on more varied images, or use precision bf16 / fp32)"
            )
        )
    print(
        f"use it: -p backbone:={args.backbone} -p backend:=openvino -p precision:=int8 "
        f"-p short_side:={args.short_side}"
    )
    return 0


def _camera_size(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) < 14 or int(height) < 14:
        raise ConfigurationError(f"--camera-size expects WIDTHxHEIGHT such as 640x480, not {text!r}")
    return int(width), int(height)


def build_parser() -> argparse.ArgumentParser:
    """The ``isar-ros`` command line (every subcommand)."""
    parser = argparse.ArgumentParser(
        prog="isar-ros", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        add_generate,
        add_benchmark,
        add_demo,
        add_up,
        add_replay,
        add_bag,
        add_weights,
        add_import,
        add_evaluate,
        add_objects,
        add_teach,
        add_quantize,
    ):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "generate": cmd_generate,
        "benchmark": cmd_benchmark,
        "demo": cmd_demo,
        "up": cmd_up,
        "replay": cmd_replay,
        "bag": cmd_bag,
        "weights": cmd_weights,
        "import": cmd_import,
        "evaluate": cmd_evaluate,
        "objects": cmd_objects,
        "teach": cmd_teach,
        "quantize": cmd_quantize,
    }
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130
    except UserError as error:
        print(f"isar-ros {args.command}: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file or folder named on the command line: missing, not writable, ...
        print(f"isar-ros {args.command}: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
