#!/usr/bin/env bash
# The main job: build semcorr_node, start it on the shipped default model, and replay
# sample sensor clouds (procedural mugs seen from a sensor, partial views with noise) at
# 10 Hz through a small rclpy publisher that prints the correspondences coming back.
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
target/release/semcorr samples --out out/samples --category mug --count 8

LD_PRELOAD="${SEMCORR_LD_PRELOAD:-}" target/release/semcorr_node \
  --ros-args --params-file config/semcorr.yaml &
node_pid=$!
trap 'kill -INT $node_pid 2>/dev/null; wait $node_pid 2>/dev/null || true' EXIT
python3 scripts/sample_publisher.py --samples out/samples --rate 10 \
  --seconds "${SEMCORR_DEMO_SECONDS:-10}"
