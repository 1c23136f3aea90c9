#!/usr/bin/env python3
"""Replays `semcorr samples --scene` depth-camera scenes to semcorr_node at a fixed rate
and prints a line per detected object as the detections come back: category, score, pose,
distance to the true object, and its keypoints' distances to the annotated ones.

    python3 scripts/scene_publisher.py --scenes out/scenes [--rate 10] [--seconds 20]

The scenes must be written with `--pcd-encoding binary` (numpy reads them; the node and
`semcorr infer` read binary_compressed too). Needs a ROS 2 environment with vision_msgs
and tf2_msgs (scripts/ros_env.sh). Exits non-zero when no detection arrived.
"""

import argparse
import os
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3DArray

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ros_peer  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", required=True, help="folder written by `semcorr samples --scene`")
    ap.add_argument("--rate", type=float, default=10.0, help="clouds per second")
    ap.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0 = never)")
    ap.add_argument("--frame", default="camera_optical_frame", help="frame_id of the clouds")
    ap.add_argument("--node", default="/semcorr_node", help="the node's fully qualified name")
    ap.add_argument("--quiet", action="store_true", help="print only the summary")
    args = ap.parse_args()

    clouds, shapes, truth = ros_peer.load_scenes(args.scenes)
    rclpy.init()
    node = rclpy.create_node("semcorr_scene_publisher")
    pub = node.create_publisher(PointCloud2, f"{args.node}/input/points", qos_profile_sensor_data)
    sent = {}  # stamp -> (scene index, send time)
    pending = {}  # stamp -> {"detections": msg, "keypoints": (...)}
    frames = set()
    figures = {"answered": 0, "objects": 0, "found": 0, "right": 0, "kp": 0, "kp_near": 0}
    latencies = []
    count = [0]
    say = (lambda _: None) if args.quiet else (lambda text: print(text, flush=True))

    def publish():
        i = count[0] % len(clouds)
        stamp = node.get_clock().now().to_msg()
        pub.publish(ros_peer.make_cloud(clouds[i], args.frame, stamp, extra_field=False, shape=shapes[i]))
        sent[(stamp.sec, stamp.nanosec)] = (i, time.monotonic())
        count[0] += 1

    def report(key):
        entry = pending[key]
        if "detections" not in entry or "keypoints" not in entry or key not in sent:
            return
        del pending[key]
        i, t0 = sent.pop(key)
        latency = 1e3 * (time.monotonic() - t0)
        latencies.append(latency)
        figures["answered"] += 1
        dets = entry["detections"].detections
        xyz, ids, scores, objects = entry["keypoints"]
        counted = [o for o in truth[i]["objects"] if o["visible_points"] >= 500]
        figures["objects"] += len(counted)
        say(f"scene {i} in '{entry['detections'].header.frame_id}': {len(dets)} detections "
            f"of {len(counted)} objects, {latency:.1f} ms after sending")
        used = set()
        for n, d in enumerate(dets):
            hyp = d.results[0].hypothesis
            p = d.results[0].pose.pose.position
            at = np.array([p.x, p.y, p.z])
            best = min(
                (k for k in range(len(counted)) if k not in used),
                key=lambda k: np.linalg.norm(at - counted[k]["position"]),
                default=None,
            )
            line = (f"  {hyp.class_id:7s} {d.id:>2s}  score {hyp.score:.2f}  at "
                    "(%+.3f, %+.3f, %+.3f)" % tuple(at))
            mine = objects == n
            if best is not None and np.linalg.norm(at - counted[best]["position"]) < 0.6 * counted[best]["size"]:
                used.add(best)
                t = counted[best]
                figures["found"] += 1
                figures["right"] += hyp.class_id == t["category"]
                line += f"  {100 * np.linalg.norm(at - t['position']):.1f} cm from the true {t['category']}"
                true_kp = {k: np.array(v) for k, v in t["keypoints"]}
                near = [float(np.linalg.norm(q - true_kp[int(k)])) <= 0.03
                        for q, k in zip(xyz[mine], ids[mine]) if int(k) in true_kp]
                figures["kp"] += len(near)
                figures["kp_near"] += sum(near)
                line += f"; {int(mine.sum())} keypoints, {sum(near)} of {len(near)} annotated within 3 cm"
            else:
                line += f"; {int(mine.sum())} keypoints (no true object there)"
            say(line)

    def on_detections(msg):
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        pending.setdefault(key, {})["detections"] = msg
        report(key)

    def on_correspondences(msg):
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        pending.setdefault(key, {})["keypoints"] = ros_peer.parse_correspondences(msg, with_objects=True)
        report(key)

    def on_tf(msg):
        frames.update(t.child_frame_id for t in msg.transforms)

    qos = QoSProfile(depth=10)
    node.create_subscription(Detection3DArray, f"{args.node}/output/detections", on_detections, qos)
    node.create_subscription(PointCloud2, f"{args.node}/output/correspondences", on_correspondences, qos)
    node.create_subscription(TFMessage, "/tf", on_tf, qos)
    print(f"waiting for {args.node} ...", flush=True)
    deadline = time.monotonic() + 30
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    if pub.get_subscription_count() == 0:
        print("no subscriber on the input topic after 30 s: is semcorr_node running?", file=sys.stderr)
        return 2
    print(f"publishing {len(clouds)} scenes (640 x 480, organised) at {args.rate:g} Hz in '{args.frame}'",
          flush=True)
    node.create_timer(1.0 / args.rate, publish)
    end = time.monotonic() + args.seconds if args.seconds > 0 else float("inf")
    try:
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
    except KeyboardInterrupt:
        pass
    f = figures
    if latencies:
        lat = np.array(latencies)
        print(
            f"\n{count[0]} scenes sent, {f['answered']} answered; latency p50 {np.percentile(lat, 50):.1f} ms, "
            f"p99 {np.percentile(lat, 99):.1f} ms; {f['found']} of {f['objects']} objects found "
            f"({f['right']} with the right category); {f['kp_near']} of {f['kp']} keypoints within 3 cm "
            f"of the annotation; tf frames seen: {', '.join(sorted(frames)) or 'none'}"
        )
    node.destroy_node()
    rclpy.shutdown()
    return 0 if f["found"] else 1


if __name__ == "__main__":
    sys.exit(main())
