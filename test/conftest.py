"""Test-run isolation: every run gets its own ROS domain and keeps DDS traffic on this machine.

Set at import time, before any test starts a ROS process, so that every child process inherits it.
"""

import os

from isar_ros.ros.environment import pick_domain_id, ros_environment

os.environ.update(
    ros_environment(localhost_only=True, domain_id=int(os.environ.get("ISAR_TEST_DOMAIN_ID", 0)) or pick_domain_id())
)
