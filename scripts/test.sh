#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints (with and without ROS), and all tests,
# including the real-ROS tests of semcorr_node against an rclpy peer.
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
echo "== cargo test --features ros"
cargo test --all-targets --features ros --locked
