"""The test process's own ROS node: it plays the camera and the operator, and listens to the outputs."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from isar_ros.ros.services import wait_until_ready

# Deep history: a test must see every message even when its Python executor falls briefly behind.
RELIABLE = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


class RosClient:
    def __init__(self, name: str = "isar_test_client"):
        self.node = rclpy.create_node(name)
        self.received: dict[str, list] = defaultdict(list)
        self.lock = threading.Lock()
        self.publishers: dict[str, object] = {}
        self.clients: dict[str, object] = {}
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def listen(self, topic: str, msg_type, qos=RELIABLE) -> None:
        def store(msg):
            with self.lock:
                self.received[topic].append(msg)

        self.node.create_subscription(msg_type, topic, store, qos)

    def messages(self, topic: str) -> list:
        with self.lock:
            return list(self.received[topic])

    def clear(self, topic: str) -> None:
        with self.lock:
            self.received[topic].clear()

    def publish(self, topic: str, msg, qos=RELIABLE) -> None:
        if topic not in self.publishers:
            self.publishers[topic] = self.node.create_publisher(type(msg), topic, qos)
        self.publishers[topic].publish(msg)

    def wait_for_subscriber(self, topic: str, timeout: float = 30.0) -> None:
        wait_until(lambda: self.node.count_subscribers(topic) > 0, timeout, f"a subscriber on {topic}")

    def call(self, service: str, srv_type, request, timeout: float = 60.0):
        """One request; a new client first waits for the service and lets discovery settle."""
        if service not in self.clients:
            client = self.node.create_client(srv_type, service)
            if not wait_until_ready(client, timeout):
                self.node.destroy_client(client)
                raise AssertionError(f"service {service} did not appear within {timeout} s")
            self.clients[service] = client
        future = self.clients[service].call_async(request)
        wait_until(future.done, timeout, f"an answer from {service}")
        return future.result()

    def call_fresh_node(self, service: str, srv_type, request, timeout: float = 90.0):
        """An idempotent request to a node that has just (re)started, repeated until it is answered: a
        request can be lost while the server has not discovered the client yet, so every cached client
        of that node is made anew (and settles) as well."""
        node_prefix = service.rsplit("/", 1)[0] + "/"
        deadline = time.monotonic() + timeout
        while True:
            for name in [s for s in self.clients if s.startswith(node_prefix)]:
                self.node.destroy_client(self.clients.pop(name))
            try:
                return self.call(service, srv_type, request, timeout=5)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise

    def wait_for(self, topic: str, predicate=lambda m: True, timeout: float = 60.0, after: int = 0):
        """The first message on ``topic`` (from index ``after``) for which ``predicate`` holds."""
        found = []

        def check():
            for msg in self.messages(topic)[after:]:
                if predicate(msg):
                    found.append(msg)
                    return True
            return False

        try:
            wait_until(check, timeout, f"a matching message on {topic}")
        except AssertionError as error:
            last = [str(getattr(m, "data", m))[:200] for m in self.messages(topic)[-4:]]
            raise AssertionError(f"{error}; the last messages were: {last}") from None
        return found[0]

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)
