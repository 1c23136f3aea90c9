#!/usr/bin/env python3
"""Replays `semcorr samples` clouds to semcorr_node at a fixed rate and prints the
correspondences as they come back, with their distance to the annotated truth.

    python3 scripts/sample_publisher.py --samples out/samples [--rate 10] [--seconds 20]

Needs a ROS 2 environment (scripts/ros_env.sh). Exits non-zero when no correspondence
arrived, so scripts can tell a working node from a silent one.
"""

import argparse
import os
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ros_peer  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", required=True, help="folder written by `semcorr samples`")
    ap.add_argument("--rate", type=float, default=10.0, help="clouds per second")
    ap.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0 = never)")
    ap.add_argument("--frame", default="camera_link", help="frame_id of the published clouds")
    ap.add_argument("--node", default="/semcorr_node", help="the node's fully qualified name")
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
        print(
            f"sample {i} in '{msg.header.frame_id}': {len(ids)} correspondences, "
            f"{latency:.1f} ms after sending",
            flush=True,
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
            print(line, flush=True)

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
    node.create_timer(1.0 / args.rate, publish)
    end = time.monotonic() + args.seconds if args.seconds > 0 else float("inf")
    try:
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
    except KeyboardInterrupt:
        pass
    if latencies:
        lat = np.array(latencies)
        print(
            f"\n{count[0]} clouds sent, {len(lat)} answered; latency p50 {np.percentile(lat, 50):.1f} ms, "
            f"p99 {np.percentile(lat, 99):.1f} ms; {near[0]} of {near[1]} keypoints within 3 cm "
            "of the annotation"
        )
    node.destroy_node()
    rclpy.try_shutdown()
    return 0 if latencies else 1


if __name__ == "__main__":
    sys.exit(main())
