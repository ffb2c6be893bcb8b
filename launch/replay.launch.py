"""Sim bridge + teach + inference on an ISAR-format scene (full ROS 2 install):

    ros2 launch isar_ros replay.launch.py data:=/path/to/isar task:=<task> split:=test
    memory_dir:=/tmp/replay_memory

The same graph as `isar-ros replay` (without its teach-then-play sequencing), from the same
config/isar_ros.yaml. The memory goes to its own folder, never the operator's.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from launch import LaunchDescription


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("isar_ros"), "config", "isar_ros.yaml")
    params = LaunchConfiguration("params_file")
    namespace = LaunchConfiguration("namespace")
    camera_remaps = [
        ("image", "/camera/image_raw"),
        ("camera_info", "/camera/camera_info"),
        ("depth", "/camera/depth/image_raw"),
        ("camera_pose", "/camera/pose"),
    ]
    common = {"use_sim_time": LaunchConfiguration("use_sim_time")}
    return LaunchDescription(
        [
            DeclareLaunchArgument("data", default_value="data/isar_demo"),
            DeclareLaunchArgument("task", default_value=""),
            DeclareLaunchArgument("split", default_value="test"),
            DeclareLaunchArgument("scene", default_value=""),
            DeclareLaunchArgument("namespace", default_value=""),
            DeclareLaunchArgument("params_file", default_value=default_params),
            DeclareLaunchArgument("memory_dir", default_value="/tmp/isar_ros_replay_memory"),
            DeclareLaunchArgument("use_sim_time", default_value="false"),
            Node(
                package="isar_ros",
                executable="sim_bridge_node",
                name="isar_sim_bridge",
                namespace=namespace,
                parameters=[
                    params,
                    {
                        "data": LaunchConfiguration("data"),
                        "task": LaunchConfiguration("task"),
                        "split": LaunchConfiguration("split"),
                        "scene": LaunchConfiguration("scene"),
                    },
                ],
                remappings=camera_remaps,
                output="screen",
            ),
            LifecycleNode(
                package="isar_ros",
                executable="teach_node",
                name="isar_teach",
                namespace=namespace,
                parameters=[params, common, {"memory_dir": LaunchConfiguration("memory_dir")}],
                remappings=camera_remaps + [("image_mouse_left", "/camera/image_raw_mouse_left")],
                output="screen",
            ),
            LifecycleNode(
                package="isar_ros",
                executable="inference_node",
                name="isar_inference",
                namespace=namespace,
                parameters=[params, common],
                remappings=camera_remaps,
                output="screen",
            ),
        ]
    )
