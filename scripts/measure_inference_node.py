"""Output rate, latency and dropped frames of the inference node, as a robot sees them.

    .venv/bin/python scripts/measure_inference_node.py [--backbone handcrafted|dinov2_vits14] [--seconds 30]
        [-p backend:=openvino] [-p precision:=int8] [-p short_side:=336] ...

Starts a real ``isar_inference`` process, publishes a memory of ``--objects`` taught objects and
640x480 rgb8 frames at ``--rate`` Hz (best-effort, like a camera), and reads the node's own
``~/status`` after a warm-up. DINOv2 runs with *random* weights written in the official checkpoint
format (the real ones cannot be downloaded here; speed does not depend on the weights); with
``-p precision:=int8`` the network is first quantised on 24 other benchmark frames.
Appends the result to docs/inference_node.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from isar_ros.ros.environment import pick_domain_id, ros_environment  # noqa: E402


def random_dinov2_checkpoint(name: str, folder: Path) -> None:
    import torch

    from isar_ros.core.backbones.dinov2 import DinoVisionTransformer, parse_name

    spec, registers = parse_name(name)
    torch.save(DinoVisionTransformer(spec, registers).state_dict(), folder / f"{name}_pretrain.pth")


def quantize(backbone: str, short_side: int) -> None:
    """int8 needs a calibrated network first (``isar-ros quantize``): here on 24 other benchmark frames."""
    import torch
    from benchmark_core import test_image

    from isar_ros.core.backbones.dinov2 import Dinov2Backbone

    network = Dinov2Backbone.from_name(
        backbone, torch.device("cpu"), short_side=short_side, backend="openvino", precision="fp32"
    )
    done = network.quantize([test_image(seed=s)[0] for s in range(1, 25)], [test_image()[0]])
    print(f"quantised in {done.seconds:.0f} s, min patch cosine with fp32 {done.min_cosine:.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="handcrafted")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--objects", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "inference_node.json")
    parser.add_argument(
        "--depth",
        action="store_true",
        help="also publish depth (16UC1), camera_info and a camera pose with every image: 3-D per instance",
    )
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="a parameter of the inference node (repeatable), e.g. -p pipeline:=false",
    )
    args = parser.parse_args()
    from isar_ros.errors import ConfigurationError
    from isar_ros.ros.inference_node import parameter_specs
    from isar_ros.settings import assignments

    try:  # checked and converted as `isar-ros up -p` does
        node_parameters = assignments(
            args.param, {"inference": {s.name: s for s in parameter_specs()}}, " of the inference node"
        )["inference"]
    except ConfigurationError as error:
        parser.error(str(error))

    weights = tempfile.mkdtemp(prefix="isar_weights_")
    if args.backbone.startswith("dinov2"):
        random_dinov2_checkpoint(args.backbone, Path(weights))
    os.environ.update(ros_environment(localhost_only=True, domain_id=pick_domain_id()))
    os.environ["ISAR_ROS_WEIGHTS"] = weights
    if node_parameters.get("precision") == "int8":
        quantize(args.backbone, int(node_parameters.get("short_side", 448)))

    import rclpy
    from benchmark_core import test_image
    from diagnostic_msgs.msg import DiagnosticStatus
    from geometry_msgs.msg import PoseStamped
    from isar_ros_msgs.msg import InstanceMemory
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from isar_ros.core.perception import Perception, PerceptionConfig
    from isar_ros.core.prompt_mask import Prompt
    from isar_ros.msgio.image_codec import numpy_to_image
    from isar_ros.ros.conversions import snapshot_to_msg
    from isar_ros.ros.launcher import Graph, NodeSpec

    image, boxes = test_image()
    perception = Perception(PerceptionConfig(backbone=args.backbone, device="cpu", mask_predictor="grabcut"))
    frame = perception.encode(image)
    for k in range(args.objects):
        perception.teach([(frame, [Prompt.from_isar(box_xyxy=boxes[k % len(boxes)])])], name=f"object {k}")

    rclpy.init()
    node = rclpy.create_node("measure_inference")
    latched = QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
    )
    memory_pub = node.create_publisher(InstanceMemory, "/memory", latched)
    image_pub = node.create_publisher(Image, "/image", qos_profile_sensor_data)
    depth_pub = node.create_publisher(Image, "/depth", qos_profile_sensor_data)
    info_pub = node.create_publisher(CameraInfo, "/camera_info", qos_profile_sensor_data)
    pose_pub = node.create_publisher(PoseStamped, "/camera_pose", qos_profile_sensor_data)
    statuses = []
    node.create_subscription(
        DiagnosticStatus,
        "/isar_inference/status",
        lambda m: statuses.append({kv.key: kv.value for kv in m.values}),
        10,
    )
    memory_pub.publish(snapshot_to_msg(perception.snapshot(), node.get_clock().now().to_msg()))
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    message = numpy_to_image(image, "rgb8")
    height, width = image.shape[:2]
    depth = numpy_to_image(np.full((height, width), 1500, np.uint16), "16UC1")
    info = CameraInfo(
        width=width, height=height, k=[width / 2, 0.0, width / 2, 0.0, width / 2, height / 2, 0.0, 0.0, 1.0]
    )
    pose = PoseStamped()
    pose.header.frame_id, pose.pose.orientation.w = "world", 1.0
    running = True

    def camera():
        period, next_time = 1.0 / args.rate, time.monotonic()
        while running:
            message.header.stamp = node.get_clock().now().to_msg()
            if args.depth:
                for part, publisher in ((depth, depth_pub), (info, info_pub), (pose, pose_pub)):
                    part.header.stamp = message.header.stamp
                    publisher.publish(part)
            image_pub.publish(message)
            next_time += period
            time.sleep(max(0.0, next_time - time.monotonic()))

    with Graph(log_dir=Path(tempfile.mkdtemp(prefix="isar_measure_"))) as graph:
        graph.start(
            NodeSpec(
                "inference_node",
                {"backbone": args.backbone, "device": "cpu", "status_period_s": 1.0, **node_parameters},
            )
        )
        deadline = time.monotonic() + 120
        while not statuses and time.monotonic() < deadline:
            time.sleep(0.2)
        publisher = threading.Thread(target=camera, daemon=True)
        publisher.start()
        time.sleep(args.warmup)
        first = len(statuses)
        time.sleep(args.seconds)
        running = False
        publisher.join()  # no publish may race rclpy's shutdown
        window = statuses[first:]
    if not window:
        print("no status from the inference node", file=sys.stderr)
        return 1
    last = window[-1]
    frames_in = args.rate * args.seconds
    result = {
        "backbone": args.backbone + (" (random weights)" if args.backbone.startswith("dinov2") else ""),
        "image": "640x480 rgb8" + (" + depth, camera_info, pose (3-D per instance)" if args.depth else ""),
        # null without depth (strict JSON has no NaN)
        "locate_ms_p50": float(last["locate_ms_p50"]) if "locate_ms_p50" in last and args.depth else None,
        "input_rate_hz": float(last["input_rate_hz"]),
        "output_rate_hz": float(np.median([float(s["output_rate_hz"]) for s in window])),
        "latency_ms_p50": float(last["latency_ms_p50"]),
        "latency_ms_p90": float(last["latency_ms_p90"]),
        # the node's own work per frame beside the backbone (conversion, finder, publications)
        "backbone_ms_p50": float(last["backbone_ms_p50"]),
        "outside_backbone_ms_p50": float(last["outside_backbone_ms_p50"]),
        "outside_vs_backbone": float(last["outside_backbone_ms_p50"])
        / max(float(last["backbone_ms_p50"]), 1e-9),
        "dropped_frames": int(last["dropped_frames"]),
        "objects": args.objects,
        "parameters": node_parameters,
        "device": last["device"],
        "seconds_measured": args.seconds,
        "frames_sent_in_window": int(frames_in),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result, indent=1))
    previous = json.loads(args.out.read_text()) if args.out.is_file() else []
    previous = [
        r
        for r in previous
        if (r["backbone"], r.get("parameters", {}), r["image"])
        != (result["backbone"], node_parameters, result["image"])
    ] + [result]
    args.out.write_text(json.dumps(previous, indent=1))
    executor.shutdown()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
