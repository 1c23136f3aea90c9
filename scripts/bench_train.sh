#!/usr/bin/env bash
# Data-efficiency benchmark (README, "Learning from a handful of models"): how well a
# category is learnt from 7, 14 or 28 training models, from scratch and fine-tuned from a
# shared backbone that never saw it, with 2 validation models, as a small real dataset
# would give. Test mGE per category under `--rotate yaw`, against raw coordinates.
#
# - Data: `synth` complete clouds, 60 models per category (42 train / 9 val / 9 test).
#   Every training cloud is turned to a random yaw each time it is drawn
#   (`augment.rotation: yaw`): orientations as unaligned as a dataset's authors leave them
#   (their up agrees; test clouds are turned the same way, `eval --rotate yaw`).
# - Leave-categories-out: two backbones, each trained on every procedural category but
#   one fold's three (FOLDS below), single views and complete clouds, any yaw; each fold's
#   categories are then trained from the other backbone only.
# - Every run records the test split's mGE at each validation (`monitor_test`), so how
#   each checkpoint choice (`select: best | smoothed | last`) would have done is read
#   after the fact, on the same runs.
# Runs already done are skipped, so an interrupted benchmark resumes. About an hour on
# 2 cores (the shipped backbone 5 minutes of it).
#   scripts/bench_train.sh [OUT_DIR]        (default runs/bench-train)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/bench-train}"
STEPS="${STEPS:-240}" # optimizer steps of every per-category run, whatever its size
FOLDS=(mug,laptop,knife bottle,bowl,pitcher)
SIZES=(7 14 28)
cargo build --locked --bin semcorr
B=target/debug/semcorr # the dev profile is optimised (Cargo.toml)
DATA="$OUT/data"
[ -f "$DATA/synth.json" ] || "$B" synth --out "$DATA" --models 60 --seed 3 >/dev/null
ALL=$(python3 -c "import json; print(','.join(json.load(open('$DATA/synth.json'))['categories']))")

# The zoo's compact PointNet on 1024 points.
common=(--set "data=$DATA" --set progress=false --set prepare.num_points=1024
  --set backbone.kind=pointnet --set 'backbone.global=[64,128,256]'
  --set 'backbone.seg=[256,128]' --set augment.rotation=yaw --set prepare.canonical_yaw=true)

backbone() { # out categories
  [ -f "$1/backbone.safetensors" ] || "$B" train "${common[@]}" --set "category=$2" \
    --set "out=$1" --set epochs=20 --set lr=1e-3 --set lr_schedule=cosine \
    --set augment.partial_view_prob=0.5 --set val_models=3 | tail -n 1
}

few() { # out category models init|"" [extra args...]
  local out=$1 cat=$2 n=$3 init=$4
  shift 4
  local epochs=$(((STEPS * 4 + n - 1) / n))
  local every=$(((epochs + 23) / 24)) # about 24 validations a run
  local recipe=(--set lr=1e-3 --set lr_schedule=cosine)
  if [ -n "$init" ]; then # config/finetune.yaml's schedule
    recipe=(--config config/finetune.yaml --init "$init" --set "warmup_epochs=$((epochs / 20))")
  fi
  [ -f "$out/best.safetensors" ] || "$B" train "${recipe[@]}" "${common[@]}" \
    --set "category=$cat" --set "out=$out" --set "epochs=$epochs" --set "val_every=$every" \
    --set "train_models=$n" --set val_models=2 --set monitor_test=true \
    --set select=smoothed "$@" >/dev/null
}

for i in "${!FOLDS[@]}"; do
  held=${FOLDS[$i]}
  seen=$(python3 -c "h='$held'.split(','); print(','.join(c for c in '$ALL'.split(',') if c not in h))")
  bb="$OUT/backbone-fold$i"
  backbone "$bb" "$seen"
  for cat in ${held//,/ }; do
    xyz="$OUT/xyz-$cat.txt"
    [ -f "$xyz" ] || "$B" eval --data "$DATA" --categories "$cat" --embedder xyz --rotate yaw >"$xyz"
    for n in "${SIZES[@]}"; do
      few "$OUT/$cat-$n-scratch" "$cat" "$n" ""
      few "$OUT/$cat-$n-tuned" "$cat" "$n" "$bb/backbone.safetensors"
    done
    # Ablations on 14 models: fine-tuning's rate; the body only and soft positives (both
    # at the first recipe's 3e-4).
    few "$OUT/$cat-14-tuned-lr1e-4" "$cat" 14 "$bb/backbone.safetensors" --set lr=1e-4
    few "$OUT/$cat-14-tuned-lr3e-4" "$cat" 14 "$bb/backbone.safetensors" --set lr=3e-4
    few "$OUT/$cat-14-body" "$cat" 14 "$bb/backbone.safetensors" --set lr=3e-4 \
      --set init_layers=body
    few "$OUT/$cat-14-scratch-soft" "$cat" 14 "" --set augment.soft_positives=4
    few "$OUT/$cat-14-tuned-soft" "$cat" 14 "$bb/backbone.safetensors" --set lr=3e-4 \
      --set augment.soft_positives=4
  done
done

# The shipped backbone, models/backbone-pointnet.safetensors: the same recipe on every
# category (cp "$OUT/backbone-all/backbone.safetensors" models/backbone-pointnet.safetensors).
backbone "$OUT/backbone-all" "$ALL"

# The tables: test mGE at the epoch each rule picks (the runs' best.safetensors kept
# `smoothed`); RULE is the one the main tables report, config/finetune.yaml's.
RULE="${RULE:-$(awk '/^select:/ {print $2}' config/finetune.yaml)}"
python3 - "$OUT" "${FOLDS[*]}" "${SIZES[*]}" "$RULE" <<'EOF' | tee "$OUT/table.md"
import csv, sys
out, folds, sizes = sys.argv[1], sys.argv[2].replace(',', ' ').split(), sys.argv[3].split()
rule = sys.argv[4]
WINDOW = 5  # the trainer's default select_window

def curve(run):
    rows = list(csv.DictReader(open(f"{out}/{run}/metrics.csv")))
    return [(float(r["val_mge"]), float(r["test_mge"])) for r in rows if r["val_mge"]]

def pick(c, rule):  # mirrors train::chosen_epoch (ties keep the earlier)
    if rule == "last":
        return c[-1][1]
    if rule == "best":
        scores = [v for v, _ in c]
    else:
        scores = [sum(v for v, _ in c[max(0, i + 1 - WINDOW):i + 1]) / len(c[max(0, i + 1 - WINDOW):i + 1])
                  for i in range(len(c))]
    return c[scores.index(min(scores))][1]

def xyz(cat):
    return next(float(l.split()[1]) for l in open(f"{out}/xyz-{cat}.txt") if l.startswith("mean"))

def mean(v):
    return sum(v) / len(v)

print("| models | " + " | ".join(folds) + " | mean | fine-tuned / scratch | fine-tuned / raw xyz |")
print("|---|" + "---|" * (len(folds) + 3))
print("| raw xyz | " + " | ".join(f"{xyz(c):.4f}" for c in folds) + f" | {mean([xyz(c) for c in folds]):.4f} | | |")
for n in sizes:
    s = [pick(curve(f"{c}-{n}-scratch"), rule) for c in folds]
    t = [pick(curve(f"{c}-{n}-tuned"), rule) for c in folds]
    x = [xyz(c) for c in folds]
    print(f"| {n}, scratch | " + " | ".join(f"{v:.4f}" for v in s) + f" | {mean(s):.4f} | | {mean(s) / mean(x):.2f} |")
    print(f"| {n}, fine-tuned | " + " | ".join(f"{v:.4f}" for v in t) + f" | {mean(t):.4f} | **{mean(t) / mean(s):.2f}** | **{mean(t) / mean(x):.2f}** |")
print()
print("| checkpoint choice (2 val models) | " + " | ".join(f"{n}, {k}" for n in sizes for k in ("scratch", "tuned")) + " | mean |")
print("|---|" + "---|" * (2 * len(sizes) + 1))
for r in ("best", "smoothed", "last"):
    cells = [mean([pick(curve(f"{c}-{n}-{k}"), r) for c in folds]) for n in sizes for k in ("scratch", "tuned")]
    print(f"| {r} | " + " | ".join(f"{v:.4f}" for v in cells) + f" | {mean(cells):.4f} |")
oracle = [mean([min(t for _, t in curve(f"{c}-{n}-{k}")) for c in folds]) for n in sizes for k in ("scratch", "tuned")]
print("| (lowest test mGE of the run) | " + " | ".join(f"{v:.4f}" for v in oracle) + f" | {mean(oracle):.4f} |")
print()
print(f"| 14 models ({rule}) | " + " | ".join(folds) + " | mean |")
print("|---|" + "---|" * (len(folds) + 1))
for name, run in [("scratch", "scratch"), ("fine-tuned (lr 1e-3, all layers)", "tuned"),
                  ("fine-tuned, lr 3e-4", "tuned-lr3e-4"), ("fine-tuned, lr 1e-4", "tuned-lr1e-4"),
                  ("fine-tuned, lr 3e-4, body only", "body"),
                  ("scratch, soft positives", "scratch-soft"),
                  ("fine-tuned, lr 3e-4, soft positives", "tuned-soft")]:
    v = [pick(curve(f"{c}-14-{run}"), rule) for c in folds]
    print(f"| {name} | " + " | ".join(f"{x:.4f}" for x in v) + f" | {mean(v):.4f} |")
EOF
