#!/usr/bin/env bash
# Reproduces the README's results table: baselines, PointNet per category, DGCNN, and the
# margin ablation, on the procedural dataset. Long-running (tens of minutes on 2 cores).
#   scripts/experiments.sh [OUT_DIR]      (default runs/experiments)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/experiments}"
EPOCHS="${EPOCHS:-30}"
DGCNN_EPOCHS="${DGCNN_EPOCHS:-20}"
CATEGORIES="${CATEGORIES:-mug bottle chair table lamp airplane knife guitar}"
DGCNN_CATEGORIES="${DGCNN_CATEGORIES:-mug airplane}"
cargo build --release --locked --bin semcorr
B=target/release/semcorr
DATA="$OUT/data"
[ -d "$DATA/annotations" ] || "$B" synth --out "$DATA" --models 40 --seed 0
mkdir -p "$OUT/eval"
for e in random xyz fpfh; do
  "$B" eval --data "$DATA" --embedder "$e" --json "$OUT/eval/$e.json" > "$OUT/eval/$e.txt"
done
train() { # name category extra-args...
  local name=$1 cat=$2; shift 2
  [ -f "$OUT/$name-$cat/best.safetensors" ] && [ -f "$OUT/eval/$name-$cat.json" ] && return 0
  "$B" train --config config/train-pointnet.yaml --set data="$DATA" --set category="$cat" \
    --set out="$OUT/$name-$cat" --set progress=false "$@" | tail -n 3
  "$B" eval --data "$DATA" --model "$OUT/$name-$cat/best.safetensors" \
    --json "$OUT/eval/$name-$cat.json" > "$OUT/eval/$name-$cat.txt"
}
for c in $CATEGORIES; do train pointnet "$c" --set epochs="$EPOCHS"; done
train constant-margin mug --set epochs="$EPOCHS" --set loss.margin=constant
train pull-only mug --set epochs="$EPOCHS" --set loss.margin=none
for c in $DGCNN_CATEGORIES; do train dgcnn "$c" --set epochs="$DGCNN_EPOCHS" --set backbone.kind=dgcnn; done
echo "results in $OUT/eval"
