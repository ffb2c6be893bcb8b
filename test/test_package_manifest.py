"""package.xml declares exactly what the code imports (and nothing it does not)."""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Python import -> rosdep key of the package that provides it.
ROSDEP = {
    "numpy": "python3-numpy",
    "PIL": "python3-pil",
    "cv2": "python3-opencv",
    "scipy": "python3-scipy",
    "sklearn": "python3-sklearn",
    "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib",
    "torch": "python3-pytorch-pip",
    "rosbags": "python3-rosbags-pip",
    "threadpoolctl": "python3-threadpoolctl",
    "segment_anything": "python3-segment-anything-pip",
    "openvino": "python3-openvino-pip",
    "nncf": "python3-nncf-pip",
    "tf2_ros": "tf2_ros_py",
    "ament_index_python": "ament_index_python",
}
ROS_PACKAGES = {
    "rclpy",
    "std_msgs",
    "sensor_msgs",
    "geometry_msgs",
    "rosgraph_msgs",
    "diagnostic_msgs",
    "std_srvs",
    "builtin_interfaces",
    "rcl_interfaces",
    "isar_ros_msgs",
    "launch",
    "launch_ros",
    "visualization_msgs",
}
# Imported by name through importlib, or needed by what the code imports.
INDIRECT = {
    "segment_anything": "isar_ros/core/sam.py imports it with importlib",
    "lifecycle_msgs": "rclpy.lifecycle (the lifecycle nodes) needs its services",
}


def imported_top_levels() -> set[str]:
    names = set()
    for path in [
        *(ROOT / "isar_ros").rglob("*.py"),
        *(ROOT / "sim_bridge").rglob("*.py"),
        *(ROOT / "launch").glob("*.py"),
    ]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def required() -> set[str]:
    names = imported_top_levels() | set(INDIRECT)
    keys = {ROSDEP[n] for n in names if n in ROSDEP}
    keys |= {n for n in names if n in ROS_PACKAGES or n == "lifecycle_msgs"}
    return keys


def declared() -> dict[str, set[str]]:
    root = ET.parse(ROOT / "package.xml").getroot()
    kinds: dict[str, set[str]] = {}
    for tag in ("depend", "exec_depend", "build_depend", "test_depend"):
        kinds[tag] = {e.text.strip() for e in root.findall(tag)}
    return kinds


def test_every_import_is_declared_and_every_declared_runtime_dependency_is_used():
    runtime = declared()["depend"] | declared()["exec_depend"]
    assert not required() - runtime, f"imported but not in package.xml: {sorted(required() - runtime)}"
    assert not runtime - required(), f"in package.xml but never imported: {sorted(runtime - required())}"


def test_the_check_knows_every_third_party_import():
    import sys

    unknown = {
        n
        for n in imported_top_levels()
        if n not in sys.stdlib_module_names
        and n not in ROSDEP
        and n not in ROS_PACKAGES
        and n not in ("isar_ros", "sim_bridge")
    }
    assert not unknown, f"map these imports to rosdep keys in ROSDEP: {sorted(unknown)}"
