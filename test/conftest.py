"""Test-run isolation: every run gets its own ROS domain and keeps DDS traffic on this machine.

Set at import time, before any test starts a ROS process, so that every child process inherits it.
"""

import os

from isar_ros.ros.environment import pick_domain_id, ros_environment

os.environ.update(
    ros_environment(
        localhost_only=True, domain_id=int(os.environ.get("ISAR_TEST_DOMAIN_ID", 0)) or pick_domain_id()
    )
)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A small generated ISAR dataset (2 tasks, 1 train + 1 test scene each, 30 frames, 320x180), made once
    per run."""
    from sim_bridge.generator import GeneratorConfig, generate

    root = tmp_path_factory.mktemp("isar") / "tiny"
    config = GeneratorConfig(
        tasks=2, seed=3, width=320, height=180, frames=30, train_scenes=1, test_scenes=1, workers=2
    )
    generate(config, root, progress=False)
    return root
