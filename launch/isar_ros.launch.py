"""Teach + inference on a live camera (full ROS 2 install): ros2 launch isar_ros isar_ros.launch.py image:=/camera/image_raw

The same graph as `isar-ros up`, from the same config/isar_ros.yaml.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    params = os.path.join(get_package_share_directory("isar_ros"), "config", "isar_ros.yaml")
    image = LaunchConfiguration("image")
    camera_remaps = [
        ("image", image),
        ("camera_info", LaunchConfiguration("camera_info")),
        ("depth", LaunchConfiguration("depth")),
        ("camera_pose", LaunchConfiguration("camera_pose")),
        ("image_mouse_left", [image, "_mouse_left"]),
    ]
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info"),
        DeclareLaunchArgument("depth", default_value="/camera/depth/image_raw"),
        DeclareLaunchArgument("camera_pose", default_value="/camera/pose"),
        Node(package="isar_ros", executable="teach_node", name="isar_teach", parameters=[params],
             remappings=camera_remaps, output="screen"),
        Node(package="isar_ros", executable="inference_node", name="isar_inference", parameters=[params],
             remappings=[("image", image)], output="screen"),
    ])
