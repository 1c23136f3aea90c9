#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints (without ROS, with ROS, with CUDA, with ROS and
# CUDA), and all tests, including the real-ROS tests of semcorr_node against an rclpy peer.
# The CUDA lints only compile the device path (no GPU is needed): they keep it from rotting.
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
# The device path: Debian's CUDA 11.8 toolkit (installed once), kernels built for Jetson
# Orin (87) so nvcc never asks nvidia-smi. SEMCORR_SKIP_CUDA=1 skips it on a machine that
# cannot install the toolkit (not in CI).
if [ "${SEMCORR_SKIP_CUDA:-0}" != 1 ]; then
  scripts/cuda_toolkit.sh
  cap="${CUDA_COMPUTE_CAP:-87}"
  echo "== cargo clippy --features cuda (compile check of the GPU path)"
  CUDA_COMPUTE_CAP="$cap" cargo clippy --all-targets --features cuda --locked -- -D warnings
  echo "== cargo clippy --features ros,cuda"
  CUDA_COMPUTE_CAP="$cap" cargo clippy --all-targets --features ros,cuda --locked -- -D warnings
fi
echo "== cargo test --features ros"
cargo test --all-targets --features ros --locked
