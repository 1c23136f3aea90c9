#!/usr/bin/env bash
# The main job: build, generate a procedural dataset, and print the baselines' mGE tables.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked --bin semcorr
B=target/release/semcorr
DATA="${SEMCORR_DEMO_DATA:-data/synth}"
[ -d "$DATA/annotations" ] || "$B" synth --out "$DATA" --models 40 --seed 0
for e in random xyz fpfh; do
  "$B" eval --data "$DATA" --split test --embedder "$e"
done
