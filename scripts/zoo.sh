#!/usr/bin/env bash
# Makes the tabletop zoo the node loads by default (models/README.md): the data, the seven
# compact single-view models, the object classifier, and their mGE table (canonical
# views; views at any yaw turned back by the classifier; the same leaning up to 20
# degrees). Each step is skipped when its output exists, so an interrupted run resumes.
# About 45 minutes on 2 cores (the classifier is 31 of them, 17 generating its 600 scenes).
#   scripts/zoo.sh [OUT_DIR]      (default runs/zoo; copy OUT_DIR/models/* to models/)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/zoo}"
cargo build --locked --bin semcorr
B=target/debug/semcorr # the dev profile is optimised (Cargo.toml)
mkdir -p "$OUT/models" "$OUT/eval"
synth() { # dir args...
  local dir=$1; shift
  [ -f "$dir/synth.json" ] || "$B" synth --out "$dir" --seed 0 "$@"
}
# Views to train and test on (canonical objects, camera anywhere), complete clouds for the
# templates' canonical positions, and the same test views in the node's frame.
CATS=mug,bottle,bowl,can,pitcher,laptop,knife
synth "$OUT/data/views" --categories "$CATS" --models 100 --partial
synth "$OUT/data/complete" --categories "$CATS" --models 40
synth "$OUT/data/viewframe" --categories "$CATS" --models 100 --partial --view-frame

# Compact PointNet on 1024 points, a third of the views cut by an image border.
compact=(--set prepare.num_points=1024 --set 'backbone.global=[64,128,256]'
  --set 'backbone.seg=[256,128]' --set augment.cut_prob=0.3)
model() { # category epochs size-range rest extra-args...
  local cat=$1 epochs=$2 range=$3 rest=$4; shift 4
  local run="$OUT/train-$cat" gguf="$OUT/models/${cat}_partial.gguf"
  [ -f "$run/best.safetensors" ] || "$B" train --config config/train-pointnet.yaml \
    --set data="$OUT/data/views" --set category="$cat" --set out="$run" \
    --set epochs="$epochs" --set progress=false "${compact[@]}" "$@" | tail -n 2
  [ -f "$gguf" ] || "$B" export --checkpoint "$run/best.safetensors" --precision q8_0 \
    --positions "$OUT/data/complete" --size-range "$range" --rest "$rest" --out "$gguf"
}
# Categories with a yaw of their own learn it within 30 degrees either way (the
# classifier's yaw is that good); round ones are trained facing, as the node reads them.
# `augment.lean_deg`: leaning up to that much, what the classifier's levelling leaves;
# chosen per model by measurement (models/README.md): the mug, the bowl and the laptop
# kept their models trained upright (the leaning laptop took a box of a real scan for a
# laptop).
model mug 60 0.08:0.30 upright --set augment.rotation=yaw:30
model bottle 30 0.12:0.50 upright --set augment.lean_deg=4
model bowl 30 0.10:0.40 upright --set augment.floor_cut=0.3
model can 30 0.07:0.28 upright --set augment.lean_deg=10
model pitcher 60 0.12:0.50 upright --set augment.rotation=yaw:30 --set augment.lean_deg=10
model laptop 60 0.21:0.84 upright --set augment.rotation=yaw:30
# A knife lies on its side (its views show it so); poses are fitted front up and back up.
model knife 60 0.15:0.45 on-side --set augment.rotation=yaw:30

C="$OUT/models/classifier.safetensors"
[ -f "$C" ] || "$B" train-classifier --categories "$CATS" --views 600 --scenes 600 --epochs 90 --seed 8 --out "$C"

printf '%-8s %10s %10s %10s\n' model canonical "any yaw" "+ lean 20" | tee "$OUT/eval/table.txt"
for cat in ${CATS//,/ }; do
  m="$OUT/models/${cat}_partial.gguf"
  mge() { "$B" eval --categories "$cat" --model "$m" "$@" | awk '/^mean/ {print $2}'; }
  a=$(mge --data "$OUT/data/views")
  b=$(mge --data "$OUT/data/viewframe" --classifier "$C")
  c=$(mge --data "$OUT/data/viewframe" --classifier "$C" --rotate tilt:20)
  printf '%-8s %10s %10s %10s\n' "$cat" "$a" "$b" "$c" | tee -a "$OUT/eval/table.txt"
done

