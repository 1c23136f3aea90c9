"""Starts semcorr_node.

    ros2 launch semcorr semcorr.launch.py input:=/camera/depth/points
    ros2 launch semcorr semcorr.launch.py params_file:=/path/to/my_params.yaml

Arguments: input (the PointCloud2 topic to read), params_file (ros__parameters YAML,
default: the package's config/semcorr.yaml), model_path (default: the package's
models/mug_partial.gguf), namespace.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("semcorr")
    args = [
        DeclareLaunchArgument(
            "input",
            default_value="/camera/depth/points",
            description="PointCloud2 topic remapped to ~/input/points",
        ),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "semcorr.yaml"]),
            description="ROS 2 parameters file (semcorr_node: ros__parameters: ...)",
        ),
        DeclareLaunchArgument(
            "model_path",
            default_value=PathJoinSubstitution([share, "models", "mug_partial.gguf"]),
            description="deployed model (.gguf); overrides the params file's",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
    ]
    node = Node(
        package="semcorr",
        executable="semcorr_node",
        name="semcorr_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {"model_path": LaunchConfiguration("model_path")},
        ],
        remappings=[("~/input/points", LaunchConfiguration("input"))],
    )
    return LaunchDescription(args + [node])
