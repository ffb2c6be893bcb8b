"""Environment variables for the ROS 2 processes this package starts.

Kept free of rclpy imports: it is used before any ROS process exists (the launcher, the tests).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping

from isar_ros.paths import config_file

SHM_PROFILE = "fastdds_shm.xml"


def ros_environment(
    base: Mapping[str, str] | None = None, *, localhost_only: bool = False, domain_id: int | None = None
) -> dict[str, str]:
    """Return ``base`` (default: ``os.environ``) completed for isar_ros processes.

    * ``FASTDDS_DEFAULT_PROFILES_FILE`` -> the shipped 64 MB shared-memory profile, unless the user
      already chose a profile (camera images are lost over fragmented UDP without it).
    * ``localhost_only``: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` so no traffic leaves the machine.
    * ``domain_id``: sets ``ROS_DOMAIN_ID``.
    """
    env = dict(os.environ if base is None else base)
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(config_file(SHM_PROFILE)))
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if localhost_only:
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    return env


def pick_domain_id(rng: random.Random | None = None) -> int:
    """A ROS domain id for one isolated run (1..100: safe port range on Linux, 0 left to users)."""
    return (rng or random.SystemRandom()).randint(1, 100)
