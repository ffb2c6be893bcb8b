"""Record isar_ros outputs into a rosbag2 bag (``ros2 bag record`` is not installable from pip).

    isar-ros bag record --out BAG [--topic /isar_inference/instances ...] [--task T --scene S --split test]

Subscribes to each topic in raw mode (the CDR bytes are written as received, not re-encoded), with
reliable QoS and a deep history, and writes them with the ``rosbags`` library (MCAP, message
definitions embedded). The bag's metadata can name the ISAR scene the outputs answer, so that
``isar-ros benchmark --recorded BAG`` can score it. Stops on Ctrl-C, after ``--duration`` seconds,
or once ``--idle`` seconds pass without a message after the first one.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from isar_ros.errors import ConfigurationError
from isar_ros.ros.node_main import run_node

DEFAULT_TOPICS = ("/isar_inference/instances",)
TYPES = {
    "/isar_inference/instances": "isar_ros_msgs/msg/InstanceSegmentation",
    "/isar_inference/label_image": "sensor_msgs/msg/Image",
    "/isar_inference/overlay": "sensor_msgs/msg/Image",
    "/memory": "isar_ros_msgs/msg/InstanceMemory",
}


def _message_class(msgtype: str):
    import importlib

    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


class Recorder(Node):
    def __init__(
        self, out: Path, topics: list[str], metadata: dict[str, str], duration: float = 0.0, idle: float = 0.0
    ):
        super().__init__("isar_recorder")
        from rosbags.rosbag2 import StoragePlugin, Writer

        from isar_ros.msgio.bag_types import typestore

        self.store = typestore()
        self.writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        for key, value in metadata.items():
            self.writer.set_custom_data(key, str(value))
        self.lock = threading.Lock()
        self.count = 0
        self.last = 0.0
        self.started = time.monotonic()
        self.duration, self.idle = duration, idle
        qos = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)
        for topic in topics:
            msgtype = TYPES.get(topic)
            if msgtype is None:
                raise ConfigurationError(f"unknown topic {topic!r} to record; known: {', '.join(TYPES)}")
            connection = self.writer.add_connection(topic, msgtype, typestore=self.store)
            self.create_subscription(
                _message_class(msgtype), topic, lambda data, c=connection: self.write(c, data), qos, raw=True
            )
        self.create_timer(0.2, self.check_done)
        self.get_logger().info(f"recording {', '.join(topics)} into {out}")

    def write(self, connection, data: bytes) -> None:
        with self.lock:
            self.writer.write(connection, self.get_clock().now().nanoseconds, bytes(data))
            self.count += 1
            self.last = time.monotonic()

    def check_done(self) -> None:
        now = time.monotonic()
        if (self.duration and now - self.started > self.duration) or (
            self.idle and self.count and now - self.last > self.idle
        ):
            import rclpy

            rclpy.try_shutdown()

    def close(self) -> None:
        with self.lock:
            self.writer.close()
        self.get_logger().info(f"recorded {self.count} messages")


def record(
    out: Path, topics: list[str], metadata: dict[str, str], duration: float = 0.0, idle: float = 0.0
) -> int:
    return run_node(lambda: Recorder(out, topics, metadata, duration, idle))
