"""Helpers for rclpy peers of semcorr_node: PCD reading, PointCloud2 building and parsing.

Used by scripts/sample_publisher.py (the demo) and tests/ros/test_node.py (the real-ROS
tests). Only numpy and the message packages are needed (no sensor_msgs_py).
"""

import json
import os

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField

FLOAT32 = PointField.FLOAT32
FLOAT64 = PointField.FLOAT64
UINT32 = PointField.UINT32


def read_pcd(path, organised=False):
    """x, y, z of a PCD file with FIELDS x y z and float32 data (ascii or binary); with
    `organised`, also (width, height)."""
    with open(path, "rb") as f:
        header = {}
        while True:
            line = f.readline()
            if not line:
                raise ValueError(f"{path}: no DATA line")
            words = line.decode("ascii").split()
            if not words or words[0].startswith("#"):
                continue
            header[words[0]] = words[1:]
            if words[0] == "DATA":
                break
        n = int(header["POINTS"][0])
        if header["FIELDS"][:3] != ["x", "y", "z"]:
            raise ValueError(f"{path}: fields {header['FIELDS']}, expected x y z first")
        if header["DATA"][0] == "binary":
            width = len(header["FIELDS"])
            data = np.frombuffer(f.read(4 * width * n), dtype="<f4").reshape(n, width)
        elif header["DATA"][0] == "ascii":
            data = np.loadtxt(f, dtype=np.float32, ndmin=2)
        else:
            raise ValueError(f"{path}: DATA {header['DATA'][0]} (write it with --pcd-encoding binary)")
        xyz = np.ascontiguousarray(data[:, :3], dtype=np.float32)
        if organised:
            return xyz, (int(header["WIDTH"][0]), int(header["HEIGHT"][0]))
        return xyz


def load_samples(folder):
    """(clouds, truth) from a `semcorr samples` folder: clouds as (N, 3) float32 arrays,
    truth as one {semantic_id: xyz} dict per cloud."""
    with open(os.path.join(folder, "keypoints.json")) as f:
        index = json.load(f)
    clouds = [read_pcd(os.path.join(folder, entry["file"])) for entry in index]
    truth = [{k["semantic_id"]: np.array(k["xyz"]) for k in e["keypoints"]} for e in index]
    return clouds, truth


def load_scenes(folder):
    """(clouds, shapes, truth) from a `semcorr samples --scene` folder: clouds as (N, 3)
    float32 arrays with NaN holes, shapes as (width, height), truth as truth.json's list."""
    with open(os.path.join(folder, "truth.json")) as f:
        truth = json.load(f)
    loaded = [read_pcd(os.path.join(folder, entry["file"]), organised=True) for entry in truth]
    return [c for c, _ in loaded], [s for _, s in loaded], truth


def make_cloud(points, frame_id, stamp, dtype=np.float32, big_endian=False, extra_field=True, shape=None):
    """A PointCloud2 of (N, 3) points, unorganised or `shape` = (width, height) organised
    (NaN holes kept, is_dense false). By default an `intensity` field sits before x, y, z
    with 4 bytes of padding after them, so consumers must honour offsets."""
    points = np.asarray(points)
    n = len(points)
    size = np.dtype(dtype).itemsize
    order = ">" if big_endian else "<"
    names, formats, offsets = [], [], []
    offset = 0
    if extra_field:
        names.append("intensity")
        formats.append(order + "f4")
        offsets.append(0)
        offset = 4
    for axis in "xyz":
        names.append(axis)
        formats.append(order + ("f8" if size == 8 else "f4"))
        offsets.append(offset)
        offset += size
    step = offset + (4 if extra_field else 0)
    record = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": step})
    rows = np.zeros(n, dtype=record)
    for i, axis in enumerate("xyz"):
        rows[axis] = points[:, i]
    if extra_field:
        rows["intensity"] = 1.0
    msg = PointCloud2()
    msg.header.frame_id = frame_id
    msg.header.stamp = stamp
    width, height = shape if shape else (n, 1)
    if width * height != n:
        raise ValueError(f"{n} points do not fill {width} x {height}")
    msg.height = height
    msg.width = width
    msg.fields = [
        PointField(
            name=name,
            offset=off,
            datatype=(FLOAT32 if "4" in fmt else FLOAT64),
            count=1,
        )
        for name, fmt, off in zip(names, formats, offsets)
    ]
    msg.is_bigendian = big_endian
    msg.point_step = step
    msg.row_step = step * width
    msg.data = rows.tobytes()
    msg.is_dense = bool(np.isfinite(points).all())
    return msg


def parse_correspondences(msg, with_objects=False):
    """Rows of ~/output/correspondences as (xyz (N, 3), keypoint_id (N,), score (N,)), plus
    object_id (N,) with `with_objects`. Checks the documented layout and raises ValueError
    when it differs."""
    fields = {f.name: (f.offset, f.datatype) for f in msg.fields}
    expected = {
        "x": (0, FLOAT32),
        "y": (4, FLOAT32),
        "z": (8, FLOAT32),
        "keypoint_id": (12, UINT32),
        "score": (16, FLOAT32),
        "object_id": (20, UINT32),
    }
    if fields != expected or msg.point_step != 24 or msg.is_bigendian:
        raise ValueError(f"unexpected correspondence layout: {fields}, step {msg.point_step}")
    record = np.dtype(
        {
            "names": ["x", "y", "z", "keypoint_id", "score", "object_id"],
            "formats": ["<f4", "<f4", "<f4", "<u4", "<f4", "<u4"],
            "offsets": [0, 4, 8, 12, 16, 20],
            "itemsize": 24,
        }
    )
    rows = np.frombuffer(bytes(msg.data), dtype=record, count=msg.width * msg.height)
    xyz = np.stack([rows["x"], rows["y"], rows["z"]], axis=1)
    out = (xyz, rows["keypoint_id"].copy(), rows["score"].copy())
    return out + (rows["object_id"].copy(),) if with_objects else out


def keypoint_names(marker_array):
    """{keypoint id: label} from the node's text markers ("<id> <name> <score>")."""
    names = {}
    for m in marker_array.markers:
        if m.type == m.TEXT_VIEW_FACING and m.action == m.ADD:
            words = m.text.split()
            # Object labels ("<category> <n> <score>") start with a name, not an id.
            if len(words) >= 3 and words[0].isdigit():
                names[int(words[0])] = " ".join(words[1:-1])
    return names
