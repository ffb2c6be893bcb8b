"""Two separate processes exchange a 640x480 image and an InstanceSegmentation over real DDS."""

import os

import pytest
from processes import PEERS, Process, python, running

pytestmark = pytest.mark.ros


def test_isolated_ros_environment():
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert 1 <= int(os.environ["ROS_DOMAIN_ID"]) <= 100
    assert os.environ["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("config/fastdds_shm.xml")


def test_image_and_segmentation_cross_processes():
    with running(str(PEERS / "image_exchange.py"), "publish") as publisher:
        receiver = Process(python(str(PEERS / "image_exchange.py"), "receive"))
        code = receiver.wait(timeout=90)
        assert code == 0, f"receiver failed:\n{receiver.output}\npublisher:\n{publisher.output}"
        assert "all pixels and fields match" in receiver.output
