#!/usr/bin/env bash
# The main job: build semcorr_node, start it on the shipped default models (the tabletop
# zoo: mug, bottle, bowl, can, pitcher, laptop, and the object classifier), and replay
# sample depth-camera scenes (640 x 480, organised, NaN holes, a tilted camera above a
# table with 1-4 procedural objects never seen in training, turned any way) at 10 Hz
# through a small rclpy publisher that prints a line per detected object: its category,
# score, pose, distance to the true object, and its keypoints' accuracy.
#
#   scripts/demo.sh                      # 10 seconds
#   SEMCORR_DEMO_SECONDS=0 scripts/demo.sh   # until Ctrl-C
#
# Uses a sourced ROS 2 if there is one; otherwise provisions Jazzy from PyPI (once).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# shellcheck source=scripts/ros_env.sh
source scripts/ros_env.sh
cargo build --release --locked --features ros --bins
target/release/semcorr samples --scene --out out/scenes --count 8 --seed 9500 \
  --yaw any --pcd-encoding binary

LD_PRELOAD="${SEMCORR_LD_PRELOAD:-}" target/release/semcorr_node \
  --ros-args --params-file config/semcorr.yaml &
node_pid=$!
trap 'kill -INT $node_pid 2>/dev/null; wait $node_pid 2>/dev/null || true' EXIT
python3 scripts/scene_publisher.py --scenes out/scenes --rate 10 \
  --seconds "${SEMCORR_DEMO_SECONDS:-10}"
