#!/usr/bin/env bash
# The node's latency benchmark: end-to-end latency (an rclpy peer publishes at 10 Hz and
# times the correspondences coming back), the node's own receipt-to-publish latency (its
# /diagnostics), CPU time per cloud and resident memory, for 2048- and 100k-point clouds,
# next to the pure per-cloud work measured in the same run (`semcorr bench node`).
#   scripts/bench_node.sh [seconds per size, default 30]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
# shellcheck source=scripts/ros_env.sh
source scripts/ros_env.sh
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-77}" ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
cargo build --release --locked --features ros --bins
out=out/bench-node
mkdir -p "$out"
echo "== pure per-cloud work (no ROS)"
# At the node's own 10 Hz cadence: idle gaps cool threads and caches (back to back is faster).
target/release/semcorr bench node --params config/semcorr.yaml --points 2048,100000 --repeats 60 --rate 10 | tee "$out/pure.txt"
for points in 2048 100000; do
  target/release/semcorr samples --out "$out/samples-$points" --count 8 --points "$points" >/dev/null
  # Single objects in a REP-103 frame: no table, +z up, the mug model.
  LD_PRELOAD="$SEMCORR_LD_PRELOAD" RUST_LOG=warn target/release/semcorr_node \
    --ros-args --params-file config/semcorr.yaml -p segment_scene:=false -p up_axis:=+z \
    -p "model_paths:=[mug_partial.gguf]" &
  node_pid=$!
  python3 scripts/sample_publisher.py --samples "$out/samples-$points" --rate 10 \
    --seconds "$seconds" --quiet --node-pid "$node_pid" --summary-json "$out/e2e-$points.json" |
    tail -1
  kill -INT "$node_pid"
  wait "$node_pid" || true
done
echo "== scenes: 640 x 480, 3 objects, every model (pure work, then the node over ROS)"
target/release/semcorr bench node --params config/semcorr.yaml --scene 3 --repeats 60 --rate 10 |
  tee "$out/scene-pure.txt"
target/release/semcorr samples --scene --out "$out/scenes" --count 8 --seed 9500 \
  --pcd-encoding binary >/dev/null
LD_PRELOAD="$SEMCORR_LD_PRELOAD" RUST_LOG=warn target/release/semcorr_node \
  --ros-args --params-file config/semcorr.yaml &
node_pid=$!
python3 scripts/scene_publisher.py --scenes "$out/scenes" --rate 10 --seconds "$seconds" --quiet |
  tail -1
kill -INT "$node_pid"
wait "$node_pid" || true
python3 - "$out" <<'PY'
import json, re, sys
out = sys.argv[1]
pure = {}
for line in open(f"{out}/pure.txt"):
    m = re.match(r"\s*(\d+)\s+.*\s([\d.]+)\s+([\d.]+)\s*$", line)
    if m:
        pure[int(m.group(1))] = (float(m.group(2)), float(m.group(3)))
print(f"\n{'points':>7} {'pure p50':>9} {'pure p99':>9} {'node p50':>9} {'node p99':>9} "
      f"{'p99/pure p50':>13} {'e2e p50':>8} {'e2e p99':>8} {'cpu/cloud':>10} {'rss MB':>7} "
      f"{'peak MB':>8} answered")
for points in (2048, 100000):
    s = json.load(open(f"{out}/e2e-{points}.json"))
    p50, p99 = pure[points]
    print(f"{points:>7} {p50:>9.1f} {p99:>9.1f} {s['node_p50_ms']:>9.1f} {s['node_p99_ms']:>9.1f} "
          f"{s['node_p99_ms'] / p50:>13.2f} {s['e2e_p50_ms']:>8.1f} {s['e2e_p99_ms']:>8.1f} "
          f"{s['cpu_ms_per_cloud']:>10.1f} {s['rss_mb']:>7.0f} {s['peak_rss_mb']:>8.0f} "
          f"{s['answered']}/{s['sent']}")
print("node = receipt to publish inside the node (its /diagnostics); e2e = the peer's send to "
      "receipt, DDS both ways included.\ngoal: node p99 <= 1.3 x pure p50; resident memory <= 300 MB")
PY
