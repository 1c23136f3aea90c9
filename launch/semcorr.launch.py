"""Starts semcorr_node.

    ros2 launch semcorr semcorr.launch.py input:=/camera/depth/points
    ros2 launch semcorr semcorr.launch.py params_file:=/path/to/my_params.yaml

Arguments: input (the PointCloud2 topic to read), params_file (ros__parameters YAML,
default: the package's config/semcorr.yaml), model_dir (where the params file's relative
model_paths are found; default: the package's models folder), namespace.
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
            "model_dir",
            default_value=PathJoinSubstitution([share, "models"]),
            description="folder of the params file's relative model_paths",
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
            {"model_dir": LaunchConfiguration("model_dir")},
        ],
        remappings=[("~/input/points", LaunchConfiguration("input"))],
    )
    return LaunchDescription(args + [node])
