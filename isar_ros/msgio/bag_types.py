"""The rosbags type store for this project's bags: ROS 2 Kilted's types plus ``isar_ros_msgs``.

The ``isar_ros_msgs`` definitions are read from ``msg/msg/*.msg`` in a source checkout, or from the
installed package's share folder, so bags written here embed exactly the definitions the nodes use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from isar_ros.paths import SOURCE_ROOT

MESSAGE_PACKAGE = "isar_ros_msgs"


def msg_folder() -> Path:
    """The folder holding ``isar_ros_msgs``'s ``.msg`` files."""
    folder = SOURCE_ROOT / "msg" / "msg"
    if folder.is_dir():
        return folder
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory(MESSAGE_PACKAGE)) / "msg"


def typestore() -> Any:
    """The ROS 2 Kilted type store with every ``isar_ros_msgs`` message registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for path in sorted(msg_folder().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{MESSAGE_PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store
