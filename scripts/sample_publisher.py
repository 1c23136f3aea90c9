#!/usr/bin/env python3
"""Replays `semcorr samples` clouds to semcorr_node at a fixed rate and prints the
correspondences as they come back, with their distance to the annotated truth.

    python3 scripts/sample_publisher.py --samples out/samples [--rate 10] [--seconds 20]

Needs a ROS 2 environment (scripts/ros_env.sh). Exits non-zero when no correspondence
arrived, so scripts can tell a working node from a silent one.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ros_peer  # noqa: E402


def process_cpu_seconds(pid):
    """User + system CPU time of a process, from /proc (0 without a pid)."""
    if not pid:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_memory_mb(pid):
    """Resident memory now and at its peak, from /proc/PID/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out["rss_mb" if key == "VmRSS" else "peak_rss_mb"] = int(value.split()[0]) / 1024
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", required=True, help="folder written by `semcorr samples`")
    ap.add_argument("--rate", type=float, default=10.0, help="clouds per second")
    ap.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0 = never)")
    ap.add_argument("--frame", default="camera_link", help="frame_id of the published clouds")
    ap.add_argument("--node", default="/semcorr_node", help="the node's fully qualified name")
    ap.add_argument("--quiet", action="store_true", help="print only the summary")
    ap.add_argument("--node-pid", type=int, help="measure this process's CPU time and memory")
    ap.add_argument("--summary-json", help="also write the summary figures here")
    args = ap.parse_args()

    clouds, truth = ros_peer.load_samples(args.samples)
    rclpy.init()
    node = rclpy.create_node("semcorr_sample_publisher")
    pub = node.create_publisher(PointCloud2, f"{args.node}/input/points", qos_profile_sensor_data)
    sent = {}  # stamp -> (sample index, send time)
    names = {}
    latencies = []
    near = [0, 0]
    count = [0]

    def publish():
        i = count[0] % len(clouds)
        stamp = node.get_clock().now().to_msg()
        pub.publish(ros_peer.make_cloud(clouds[i], args.frame, stamp))
        sent[(stamp.sec, stamp.nanosec)] = (i, time.monotonic())
        count[0] += 1

    def on_markers(msg):
        names.update(ros_peer.keypoint_names(msg))

    def on_correspondences(msg):
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if key not in sent:
            return
        i, t0 = sent.pop(key)
        latency = 1e3 * (time.monotonic() - t0)
        latencies.append(latency)
        xyz, ids, scores = ros_peer.parse_correspondences(msg)
        say = (lambda _: None) if args.quiet else (lambda text: print(text, flush=True))
        say(
            f"sample {i} in '{msg.header.frame_id}': {len(ids)} correspondences, "
            f"{latency:.1f} ms after sending"
        )
        for p, k, s in zip(xyz, ids, scores):
            line = f"  {int(k):3d} {names.get(int(k), ''):22s} score {s:.2f}  " + (
                "xyz (%+.3f, %+.3f, %+.3f)" % tuple(p)
            )
            if int(k) in truth[i]:
                d = float(np.linalg.norm(p - truth[i][int(k)]))
                near[0] += d <= 0.03
                near[1] += 1
                line += f"  {100 * d:.1f} cm from the annotation"
            say(line)

    node.create_subscription(MarkerArray, f"{args.node}/output/markers", on_markers, QoSProfile(depth=10))
    node.create_subscription(
        PointCloud2, f"{args.node}/output/correspondences", on_correspondences, QoSProfile(depth=10)
    )
    print(f"waiting for {args.node} ...", flush=True)
    deadline = time.monotonic() + 30
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    if pub.get_subscription_count() == 0:
        print("no subscriber on the input topic after 30 s: is semcorr_node running?", file=sys.stderr)
        return 2
    print(f"publishing {len(clouds)} sample clouds at {args.rate:g} Hz in '{args.frame}'", flush=True)
    diagnostics = []  # only the latest is kept

    def on_diagnostics(msg):
        diagnostics[:] = [msg]

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, QoSProfile(depth=10))
    node.create_timer(1.0 / args.rate, publish)
    cpu0 = process_cpu_seconds(args.node_pid)
    end = time.monotonic() + args.seconds if args.seconds > 0 else float("inf")
    try:
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
    except KeyboardInterrupt:
        pass
    cpu1 = process_cpu_seconds(args.node_pid)
    summary = {"sent": count[0], "answered": len(latencies), "points": int(np.mean([len(c) for c in clouds]))}
    if latencies:
        lat = np.array(latencies)
        summary.update(
            e2e_p50_ms=float(np.percentile(lat, 50)),
            e2e_p99_ms=float(np.percentile(lat, 99)),
            within_3cm=near[0],
            truth_matched=near[1],
        )
        print(
            f"\n{count[0]} clouds sent, {len(lat)} answered; latency p50 {summary['e2e_p50_ms']:.1f} ms, "
            f"p99 {summary['e2e_p99_ms']:.1f} ms; {near[0]} of {near[1]} keypoints within 3 cm "
            "of the annotation"
        )
    if args.node_pid:
        summary["cpu_ms_per_cloud"] = 1e3 * (cpu1 - cpu0) / max(1, len(latencies))
        summary.update(process_memory_mb(args.node_pid))
    if diagnostics:
        values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
        summary["node_p50_ms"] = float(values.get("latency_p50_ms", "nan"))
        summary["node_p99_ms"] = float(values.get("latency_p99_ms", "nan"))
        summary["skipped"] = int(values.get("skipped", "0"))
    if args.summary_json:
        with open(args.summary_json, "w") as f:
            json.dump(summary, f, indent=1)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0 if latencies else 1


if __name__ == "__main__":
    sys.exit(main())
