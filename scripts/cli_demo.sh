#!/usr/bin/env bash
# The CLI tour: build, generate a procedural dataset, print the baselines' and a
# shipped model's mGE tables, and find the keypoints of an unseen mug with models/mug.gguf.
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
"$B" eval --data "$DATA" --split test --model models/mug.gguf
mug=$(grep -m1 '^90000001-' "$DATA/splits/test.txt")
mkdir -p out
# Dataset clouds are in the models' own frame (y up), not a sensor's: say so.
"$B" infer --model models/mug.gguf --cloud "$DATA/pcds/90000001/${mug#90000001-}.pcd" \
  --set up_axis=+y --set face_sensor=false --json out/mug.json --png out/mug.png
echo "picture: out/mug.png"
