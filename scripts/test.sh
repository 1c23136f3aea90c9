#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints (without ROS, with ROS; with CUDA on demand),
# and all tests, including the real-ROS tests of semcorr_node against an rclpy peer.
# Usage: scripts/test.sh            (from anywhere; installs what it needs, idempotently)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# A sourced ROS 2 is used as it is; otherwise Jazzy from PyPI is provisioned once.
# shellcheck source=scripts/ros_env.sh
source scripts/ros_env.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (no ROS: the library and CLI alone)"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo clippy --features ros"
cargo clippy --all-targets --features ros --locked -- -D warnings
# The device path, on demand: SEMCORR_CUDA_CHECK=1 installs Debian's CUDA 11.8 toolkit once
# and compile-checks `--features cuda` with kernels built for Jetson Orin (87), so nvcc never
# asks nvidia-smi. Off by default: no code of ours is gated on the feature (it only switches
# candle's backend), and building candle's kernels plus the 1.7 GB toolkit was about 20 of
# CI's 57 minutes, against a 30-minute budget.
if [ "${SEMCORR_CUDA_CHECK:-0}" = 1 ]; then
  scripts/cuda_toolkit.sh
  echo "== cargo clippy --features cuda (compile check of the GPU path)"
  CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-87}" cargo clippy --all-targets --features cuda --locked -- -D warnings
fi
echo "== cargo test --features ros"
cargo test --all-targets --features ros --locked
