"""Teach + inference on a live camera (full ROS 2 install):

    ros2 launch isar_ros isar_ros.launch.py image:=/camera/color/image_raw
    camera_info:=/camera/color/camera_info \
        namespace:=robot2 memory_dir:=~/.ros/isar_ros/memory use_sim_time:=false
        params_file:=/path/to/params.yaml web:=true web_port:=8088

The same graph as `isar-ros up`, from the same config/isar_ros.yaml; `web:=true` adds the browser
teach panel (`isar-ros up --web`), bound to loopback unless `web_bind_address` and `web_token` are set.
All nodes are lifecycle nodes that configure and activate themselves (`autostart: true`); set
`autostart:=false` to drive them with a lifecycle manager instead.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from launch import LaunchDescription


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("isar_ros"), "config", "isar_ros.yaml")
    image = LaunchConfiguration("image")
    camera_remaps = [
        ("image", image),
        ("camera_info", LaunchConfiguration("camera_info")),
        ("depth", LaunchConfiguration("depth")),
        ("camera_pose", LaunchConfiguration("camera_pose")),
        ("image_mouse_left", [image, "_mouse_left"]),
    ]
    common = {
        "use_sim_time": LaunchConfiguration("use_sim_time"),
        "autostart": LaunchConfiguration("autostart"),
    }
    params = LaunchConfiguration("params_file")
    return LaunchDescription(
        [
            DeclareLaunchArgument("image", default_value="/camera/image_raw"),
            DeclareLaunchArgument(
                "camera_info", default_value="/camera/camera_info", description="beside the image topic"
            ),
            DeclareLaunchArgument("depth", default_value="/camera/depth/image_raw"),
            DeclareLaunchArgument("camera_pose", default_value="/camera/pose"),
            DeclareLaunchArgument("namespace", default_value=""),
            DeclareLaunchArgument("params_file", default_value=default_params),
            DeclareLaunchArgument("memory_dir", default_value="~/.ros/isar_ros/memory"),
            DeclareLaunchArgument("use_sim_time", default_value="false"),
            DeclareLaunchArgument("autostart", default_value="true"),
            DeclareLaunchArgument("web", default_value="false", description="start the browser teach panel"),
            DeclareLaunchArgument("web_port", default_value="8088"),
            DeclareLaunchArgument("web_bind_address", default_value="127.0.0.1"),
            DeclareLaunchArgument("web_token", default_value="", description="needed off loopback"),
            LifecycleNode(
                package="isar_ros",
                executable="teach_node",
                name="isar_teach",
                namespace=LaunchConfiguration("namespace"),
                parameters=[params, common, {"memory_dir": LaunchConfiguration("memory_dir")}],
                remappings=camera_remaps,
                output="screen",
            ),
            LifecycleNode(
                package="isar_ros",
                executable="inference_node",
                name="isar_inference",
                namespace=LaunchConfiguration("namespace"),
                parameters=[params, common],
                remappings=camera_remaps[:4],  # image, camera_info, depth, camera_pose
                output="screen",
            ),
            LifecycleNode(
                package="isar_ros",
                executable="web_node",
                name="isar_web",
                namespace=LaunchConfiguration("namespace"),
                parameters=[
                    params,
                    common,
                    {
                        "port": LaunchConfiguration("web_port"),
                        "bind_address": LaunchConfiguration("web_bind_address"),
                        "token": LaunchConfiguration("web_token"),
                    },
                ],
                remappings=camera_remaps[:1],  # image
                condition=IfCondition(LaunchConfiguration("web")),
                output="screen",
            ),
        ]
    )
