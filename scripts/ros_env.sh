# Source this file: it makes a ROS 2 available to build and run semcorr_node.
#
#   source scripts/ros_env.sh
#
# A ROS 2 that is already sourced (ROS_DISTRO and AMENT_PREFIX_PATH set, e.g. from
# /opt/ros/jazzy/setup.bash) is used as it is. Otherwise a real ROS 2 Jazzy is provisioned
# from PyPI wheels into $SEMCORR_ROS_VENV (default: .ros-venv in the repository), once; later
# calls only set the environment. See shared notes "ros2-from-pypi" for the three quirks
# handled below (missing librmw_implementation, vendored libs, libpython symbols).
#
# The node also needs vision_msgs and tf2_msgs. A ROS 2 that has them is used as it is; where
# they are missing (the PyPI wheels have neither), scripts/ros_interfaces.sh builds them once
# from their published Jazzy definitions (into $SEMCORR_ROS_VENV/semcorr-interfaces, or into
# target/ros-interfaces-$ROS_DISTRO for a sourced ROS), and that prefix joins the environment.

# Adds vision_msgs and tf2_msgs to the environment, building them first where the ROS 2 in
# use lacks them. Arguments: the repository, the install prefix, and a pip for the build tools
# (empty: use the sourced ROS's own toolchain).
_semcorr_ros_interfaces() {
  local repo="$1" prefix="$2" pip="$3" pkg p found missing=""
  for pkg in vision_msgs tf2_msgs; do
    found=""
    while IFS= read -r -d: p; do
      if [ -n "$p" ] && [ -e "$p/share/ament_index/resource_index/packages/$pkg" ]; then
        found=1
        break
      fi
    done <<<"$AMENT_PREFIX_PATH:"
    [ -n "$found" ] || missing="$missing $pkg"
  done
  [ -n "$missing" ] || return 0
  if ! bash "$repo/scripts/ros_interfaces.sh" "$prefix" ${pip:+--pip "$pip"}; then
    echo "ros_env: could not build$missing; install them with your ROS 2 (e.g. apt install" \
      "ros-$ROS_DISTRO-vision-msgs ros-$ROS_DISTRO-tf2-msgs, or rosdep install --from-paths .)" >&2
    return 1
  fi
  local site
  for site in "$prefix"/lib/python3*/site-packages "$prefix"/local/lib/python3*/dist-packages; do
    if [ -d "$site" ]; then export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"; fi
  done
  export AMENT_PREFIX_PATH="$prefix:$AMENT_PREFIX_PATH"
  export CMAKE_PREFIX_PATH="$prefix${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export LD_LIBRARY_PATH="$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

_semcorr_ros_setup() {
  local repo
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  # Depth-camera clouds (3.7 MB and more) need a larger Fast DDS shared-memory segment than
  # the default; see the profile's comment. A profile the user set wins.
  if [ -z "${FASTRTPS_DEFAULT_PROFILES_FILE:-}${FASTDDS_DEFAULT_PROFILES_FILE:-}" ]; then
    export FASTRTPS_DEFAULT_PROFILES_FILE="$repo/config/fastdds_large_data.xml"
    export FASTDDS_DEFAULT_PROFILES_FILE="$FASTRTPS_DEFAULT_PROFILES_FILE"
  fi
  if [ -n "${ROS_DISTRO:-}" ] && [ -n "${AMENT_PREFIX_PATH:-}" ]; then
    echo "ros_env: using the sourced ROS 2 $ROS_DISTRO ($AMENT_PREFIX_PATH)" >&2
    _semcorr_ros_interfaces "$repo" "$repo/target/ros-interfaces-$ROS_DISTRO" "" || return 1
    return 0
  fi
  local venv="${SEMCORR_ROS_VENV:-$repo/.ros-venv}"
  local python="${SEMCORR_PYTHON:-python3}"
  local stamp="$venv/.semcorr-provisioned-v1"
  if [ ! -f "$stamp" ]; then
    echo "ros_env: provisioning ROS 2 Jazzy from PyPI into $venv (about 2 minutes, once)" >&2
    "$python" -m venv "$venv" || return 1
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      ros-jazzy-rclpy ros-jazzy-rmw-fastrtps-cpp ros-jazzy-std-msgs \
      ros-jazzy-sensor-msgs ros-jazzy-geometry-msgs ros-jazzy-visualization-msgs \
      ros-jazzy-diagnostic-msgs ros-jazzy-rcl-action ros-jazzy-rosgraph-msgs \
      ros-jazzy-builtin-interfaces ros-jazzy-rcl-interfaces numpy || return 1
    touch "$stamp"
  fi
  # r2r's bindgen needs libclang at build time (libclang-cpp alone is not enough: bindgen
  # loads libclang.so or libclang-N.so). LIBCLANG_PATH, when set, is trusted.
  local have_clang="${LIBCLANG_PATH:-}" f
  for f in /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
    /usr/lib/*-linux-gnu/libclang.so* /usr/lib/*-linux-gnu/libclang-[0-9]*.so*; do
    if [ -e "$f" ]; then have_clang=1; break; fi
  done
  if [ -z "$have_clang" ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "ros_env: installing libclang-dev and clang (apt)" >&2
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev clang >/dev/null) || return 1
    else
      echo "ros_env: libclang is missing; install libclang-dev and clang" >&2
      return 1
    fi
  fi
  local site
  site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || return 1
  # Quirk 1: the wheels ship no librmw_implementation.so, but r2r links it. A symlink in
  # the prefix's lib folder (already on r2r's link path) avoids touching RUSTFLAGS, which
  # would invalidate every cached build.
  [ -e "$venv/lib/librmw_implementation.so" ] ||
    ln -s librmw_fastrtps_cpp.so "$venv/lib/librmw_implementation.so"
  # Quirk 2: vendored libraries live in ros_*.libs folders.
  local libs="$venv/lib"
  local d
  for d in "$site"/ros_*.libs; do
    [ -d "$d" ] && libs="$libs:$d"
  done
  # Quirk 3: librcl pulls in Python type support, which needs libpython's symbols.
  local pylib
  pylib="$("$venv/bin/python" -c 'import sysconfig, os; print(os.path.join(sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")))')"
  export ROS_DISTRO=jazzy
  export AMENT_PREFIX_PATH="$venv"
  export CMAKE_PREFIX_PATH="$venv"
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export SEMCORR_LD_PRELOAD="$pylib"
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  export PATH="$venv/bin:$PATH"
  export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
  # r2r generates bindings only for these packages; the filter does not follow dependencies,
  # so every package a used message refers to is listed (vision_msgs: std_msgs, geometry_msgs;
  # tf2_msgs: geometry_msgs, builtin_interfaces, and for its action action_msgs and
  # unique_identifier_msgs).
  export IDL_PACKAGE_FILTER="std_msgs;sensor_msgs;geometry_msgs;visualization_msgs;diagnostic_msgs;builtin_interfaces;rcl_interfaces;action_msgs;unique_identifier_msgs;service_msgs;type_description_interfaces;lifecycle_msgs;rosgraph_msgs;vision_msgs;tf2_msgs"
  _semcorr_ros_interfaces "$repo" "$venv/semcorr-interfaces" "$venv/bin/pip" || return 1
  echo "ros_env: ROS 2 Jazzy from $venv" >&2
}
_semcorr_ros_setup
