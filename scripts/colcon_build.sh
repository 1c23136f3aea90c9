#!/usr/bin/env bash
# Builds semcorr the way a robot's colcon workspace does (colcon-ros-cargo +
# cargo-ament-build), into a workspace of its own, and checks what got installed.
#   scripts/colcon_build.sh [workspace, default target/colcon_ws]
# Afterwards: source <ws>/install/setup.bash (with a real ROS) and
#   ros2 launch semcorr semcorr.launch.py input:=/your/points
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
ws="${1:-$repo/target/colcon_ws}"
# shellcheck source=scripts/ros_env.sh
source "$repo/scripts/ros_env.sh"

# The colcon tools and its cargo plugin, from PyPI, into the Python that ROS runs on (the
# provisioned venv; with a system ROS, install them yourself if this pip refuses).
if ! python3 -c 'import colcon_ros_cargo, colcon_package_selection' 2>/dev/null; then
  python3 -m pip install --quiet colcon-common-extensions colcon-ros-cargo colcon-cargo
fi
command -v cargo-ament-build >/dev/null || cargo install --locked cargo-ament-build

mkdir -p "$ws/src"
ln -sfn "$repo" "$ws/src/semcorr"
# colcon crawls src/ for package.xml files: keep it out of our build outputs and venv.
mkdir -p "$repo/target" && touch "$repo/target/COLCON_IGNORE"
[ -d "$repo/.ros-venv" ] && touch "$repo/.ros-venv/COLCON_IGNORE"

cd "$ws"
colcon build --packages-select semcorr --cargo-args --features ros
for f in lib/semcorr/semcorr_node lib/semcorr/semcorr share/semcorr/package.xml \
  share/semcorr/launch/semcorr.launch.py share/semcorr/config/semcorr.yaml \
  share/semcorr/models/mug_partial.gguf; do
  [ -e "install/semcorr/$f" ] || { echo "colcon_build: install/semcorr/$f is missing" >&2; exit 1; }
done
echo "colcon_build: installed to $ws/install/semcorr"
