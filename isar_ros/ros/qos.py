"""The QoS profiles of the graph, in one place."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

# The taught memory: reliable and latched, so an inference node that starts later gets the newest one.
MEMORY = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
# Observations of located objects from every inference node: every one counts.
OBSERVATIONS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
# Operator input and feedback (clicks, arm, feedback, taught masks): every message matters.
EVENTS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
# Outputs of the inference node (instances, label image, overlay, status).
OUTPUTS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Replayed scenes: reliable with a third of a second of history, so a briefly slow reader loses nothing.
REPLAY = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
SENSOR = qos_profile_sensor_data
IMAGE_RELIABILITY = ("best_effort", "reliable")


def camera_qos(reliability: str) -> QoSProfile:
    """Subscription QoS of a camera stream: ``best_effort`` (sensor data, the driver default) or
    ``reliable``."""
    if reliability == "best_effort":
        return SENSOR
    return QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
