#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints, and all tests.
# Usage: scripts/test.sh            (from anywhere; installs what it needs, idempotently)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --all-targets --locked
