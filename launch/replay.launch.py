"""Sim bridge + teach + inference on an ISAR-format scene (full ROS 2 install):

    ros2 launch isar_ros replay.launch.py data:=/path/to/isar task:=<task> split:=test

The same graph as `isar-ros replay`, from the same config/isar_ros.yaml.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    params = os.path.join(get_package_share_directory("isar_ros"), "config", "isar_ros.yaml")
    camera_remaps = [("image", "/camera/image_raw"), ("camera_info", "/camera/camera_info"),
                     ("depth", "/camera/depth/image_raw"), ("camera_pose", "/camera/pose")]
    return LaunchDescription([
        DeclareLaunchArgument("data", default_value="data/isar_demo"),
        DeclareLaunchArgument("task", default_value=""),
        DeclareLaunchArgument("split", default_value="test"),
        DeclareLaunchArgument("scene", default_value=""),
        Node(package="isar_ros", executable="sim_bridge_node", name="isar_sim_bridge", parameters=[params, {
            "data": LaunchConfiguration("data"), "task": LaunchConfiguration("task"),
            "split": LaunchConfiguration("split"), "scene": LaunchConfiguration("scene")}],
             remappings=camera_remaps, output="screen"),
        Node(package="isar_ros", executable="teach_node", name="isar_teach", parameters=[params],
             remappings=camera_remaps + [("image_mouse_left", "/camera/image_raw_mouse_left")], output="screen"),
        Node(package="isar_ros", executable="inference_node", name="isar_inference", parameters=[params],
             remappings=[("image", "/camera/image_raw")], output="screen"),
    ])
