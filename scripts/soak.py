"""Soak test of the inference node: hours of camera in minutes, with memory updates and a flood.

    .venv/bin/python scripts/soak.py [--minutes 10] [--flood-seconds 60]

A real ``isar_inference`` process (offline backbone) gets 640x480 rgb8 frames at 30 Hz (best effort)
with 20 taught objects, and a new memory version every ``--update-every`` seconds (an object renamed
in turn); then a flood at 200 Hz. Every second it records the node's own ~/status (output rate,
latency percentiles, dropped frames, memory version) and its resident memory (/proc/<pid>/status).
Writes docs/soak.md (table) and docs/soak.png (plot) and prints the summary.
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


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--flood-seconds", type=float, default=60.0)
    parser.add_argument("--update-every", type=float, default=5.0)
    parser.add_argument("--objects", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    os.environ.update(ros_environment(localhost_only=True, domain_id=pick_domain_id()))

    import rclpy
    from benchmark_core import teach_test_objects, test_image
    from diagnostic_msgs.msg import DiagnosticStatus
    from isar_ros_msgs.msg import InstanceMemory
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from isar_ros.core.perception import Perception, PerceptionConfig
    from isar_ros.msgio.image_codec import numpy_to_image
    from isar_ros.ros.conversions import snapshot_to_msg
    from isar_ros.ros.launcher import Graph, NodeSpec

    image = test_image()[0]
    perception = Perception(PerceptionConfig(device="cpu", mask_predictor="grabcut"))
    teach_test_objects(perception, args.objects)

    rclpy.init()
    node = rclpy.create_node("isar_soak")
    latched = QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
    )
    memory_pub = node.create_publisher(InstanceMemory, "/memory", latched)
    image_pub = node.create_publisher(Image, "/image", qos_profile_sensor_data)
    status = {}
    node.create_subscription(
        DiagnosticStatus,
        "/isar_inference/status",
        lambda m: status.update({kv.key: kv.value for kv in m.values}),
        10,
    )
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    memory_pub.publish(snapshot_to_msg(perception.snapshot(), node.get_clock().now().to_msg()))
    message = numpy_to_image(image, "rgb8")
    rate = {"hz": 30.0}
    running = True

    def camera():
        next_time = time.monotonic()
        while running:
            message.header.stamp = node.get_clock().now().to_msg()
            image_pub.publish(message)
            next_time += 1.0 / rate["hz"]
            time.sleep(max(0.0, next_time - time.monotonic()))

    samples = []
    with Graph(log_dir=Path(tempfile.mkdtemp(prefix="isar_soak_"))) as graph:
        process = graph.start(NodeSpec("inference_node", {"device": "cpu", "status_period_s": 1.0}))
        while not status:
            time.sleep(0.2)
        publisher = threading.Thread(target=camera, daemon=True)
        publisher.start()
        started = time.monotonic()
        last_update, renamed = started, 0
        phases = [("30 Hz", args.minutes * 60, 30.0), ("200 Hz flood", args.flood_seconds, 200.0)]
        for phase, seconds, hz in phases:
            rate["hz"] = hz
            phase_end = time.monotonic() + seconds
            while time.monotonic() < phase_end:
                time.sleep(1.0)
                now = time.monotonic()
                if now - last_update >= args.update_every:
                    object_id = sorted(perception.memory.objects)[renamed % args.objects]
                    perception.rename(object_id, f"object {object_id} v{renamed}")
                    memory_pub.publish(
                        snapshot_to_msg(perception.snapshot(), node.get_clock().now().to_msg())
                    )
                    last_update, renamed = now, renamed + 1
                samples.append(
                    {
                        "t": now - started,
                        "phase": phase,
                        "rss_mb": rss_mb(process.popen.pid),
                        **{
                            k: status.get(k)
                            for k in (
                                "input_rate_hz",
                                "output_rate_hz",
                                "latency_ms_p50",
                                "latency_ms_p90",
                                "dropped_frames",
                                "bad_frames",
                                "memory_version",
                                "frames_out",
                            )
                        },
                    }
                )
        running = False
        publisher.join()  # no publish may race rclpy's shutdown
        alive = process.popen.poll() is None
    executor.shutdown()
    rclpy.try_shutdown()
    report(samples, perception.memory.version, alive, args)
    return 0 if alive else 1


def report(samples: list[dict], final_version: int, alive: bool, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([s["t"] for s in samples]) / 60
    get = lambda key: np.array([float(s[key]) if s[key] not in (None, "nan") else np.nan for s in samples])  # noqa: E731
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    axes[0].plot(t, get("input_rate_hz"), label="input Hz")
    axes[0].plot(t, get("output_rate_hz"), label="output Hz")
    axes[1].plot(t, get("latency_ms_p50"), label="latency p50 ms")
    axes[1].plot(t, get("latency_ms_p90"), label="latency p90 ms")
    axes[2].plot(t, get("rss_mb"), label="resident memory MB")
    for ax in axes:
        ax.legend(loc="upper left")
        ax.grid(alpha=0.3)
    axes[2].set_xlabel("minutes (the last part is the 200 Hz flood)")
    fig.suptitle("isar_inference soak: 640x480, 20 objects, memory updates every few seconds")
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "soak.png", dpi=90)
    plt.close(fig)
    rows = []
    for phase in dict.fromkeys(s["phase"] for s in samples):
        chosen = [s for s in samples if s["phase"] == phase]
        warm = chosen[len(chosen) // 10 :] if phase == "30 Hz" else chosen
        rss = [s["rss_mb"] for s in warm]
        rows.append(
            f"| {phase} | {len(chosen)} s | {np.median([float(s['input_rate_hz']) for s in warm]):.1f} | "
            f"{np.median([float(s['output_rate_hz']) for s in warm]):.1f} | "
            f"{np.median([float(s['latency_ms_p50']) for s in warm]):.0f} | "
            f"{np.median([float(s['latency_ms_p90']) for s in warm]):.0f} | {min(rss):.0f} - {max(rss):.0f} |"
        )
    first_rss = [s["rss_mb"] for s in samples if s["phase"] == "30 Hz"]
    growth = np.median(first_rss[-60:]) - np.median(first_rss[len(first_rss) // 10 :][:60])
    text = f"""# Soak test of the inference node

`.venv/bin/python scripts/soak.py --minutes {args.minutes:g} --flood-seconds {args.flood_seconds:g}` on 2 CPU
cores:
a real `isar_inference` process (offline backbone) fed 640x480 rgb8 at 30 Hz, best effort, with
{args.objects} taught objects and a new memory version every {args.update_every:g} s; then a flood at 200 Hz.
Medians per phase after warm-up (the first tenth of the 30 Hz phase is left out of the medians):

| phase | length | input Hz | output Hz | latency p50 ms | latency p90 ms | resident memory MB |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

- Frames dropped in all (the node works on the newest frame and drops the rest):
{samples[-1]["dropped_frames"]};
  frames answered: {samples[-1]["frames_out"]}; bad frames: {samples[-1]["bad_frames"]}.
- Memory versions: the last one published was {final_version}; the node reported
{samples[-1]["memory_version"]} at the end
  (its last status message can predate an update published in the last second).
- Resident memory, median of the last minute minus median of the first minute after warm-up: {growth:+.1f} MB.
- The node was {"still running" if alive else "NOT running"} at the end.

![soak](soak.png)
"""
    (args.out / "soak.md").write_text(text)
    (args.out / "soak.json").write_text(json.dumps(samples))
    print(text)


if __name__ == "__main__":
    sys.exit(main())
