"""semcorr_node against a real ROS 2 peer (rclpy over Fast DDS).

Run through `cargo test --features ros --test ros_node` (which builds the binaries and
passes their paths), in an environment from scripts/ros_env.sh. Each run uses its own
ROS_DOMAIN_ID and localhost-only discovery so parallel runs do not meet.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))

os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import rclpy  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import PointCloud2  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402
from vision_msgs.msg import Detection3DArray  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

import ros_peer  # noqa: E402

NODE_BIN = os.environ.get("SEMCORR_NODE_BIN", os.path.join(REPO, "target/debug/semcorr_node"))
CLI_BIN = os.environ.get("SEMCORR_BIN", os.path.join(REPO, "target/debug/semcorr"))
MODELS = os.path.join(REPO, "models")
MODEL = os.path.join(MODELS, "mug_partial.gguf")
# Its network samples this many points per cloud (`prepare.num_points`, models/README.md).
MODEL_SAMPLE_POINTS = 1024
PARAMS = os.path.join(REPO, "config/semcorr.yaml")
# The sample clouds are single objects in a REP-103 frame: no table, +z up. The scene
# test switches the scene stage on at run time.
SINGLE_OBJECTS = ["-p", "segment_scene:=false", "-p", "up_axis:=+z"]


def node_env():
    env = dict(os.environ)
    # Quirk 3 of the PyPI ROS: librcl needs libpython's symbols (see scripts/ros_env.sh).
    if env.get("SEMCORR_LD_PRELOAD"):
        env["LD_PRELOAD"] = env["SEMCORR_LD_PRELOAD"]
    env.setdefault("RUST_LOG", "info")
    return env


def start_node(*ros_args):
    log = tempfile.TemporaryFile()
    args = [NODE_BIN, "--ros-args", "--params-file", PARAMS, "-p", f"model_dir:={MODELS}"]
    proc = subprocess.Popen(
        args + list(ros_args), stdout=log, stderr=subprocess.STDOUT, env=node_env()
    )
    return proc, log


def read_log(log):
    log.seek(0)
    return log.read().decode(errors="replace")


def stamp(sec, nanosec=0):
    return Time(sec=sec, nanosec=nanosec)


class NodeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.samples = tempfile.mkdtemp(prefix="semcorr-samples-")
        subprocess.run(
            [CLI_BIN, "samples", "--out", cls.samples, "--count", "4"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        cls.clouds, cls.truth = ros_peer.load_samples(cls.samples)
        cls.scenes = tempfile.mkdtemp(prefix="semcorr-scenes-")
        subprocess.run(
            [CLI_BIN, "samples", "--scene", "--out", cls.scenes, "--count", "2", "--seed", "9400",
             "--pcd-encoding", "binary"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        cls.proc, cls.log = start_node(*SINGLE_OBJECTS)
        rclpy.init()
        cls.peer = rclpy.create_node("semcorr_test_peer")
        qos = QoSProfile(depth=100)
        cls.pub = cls.peer.create_publisher(PointCloud2, "/semcorr_node/input/points", qos)
        cls.results, cls.markers, cls.diagnostics = [], [], []
        cls.detections, cls.tf = [], []
        cls.peer.create_subscription(
            Detection3DArray, "/semcorr_node/output/detections", cls.detections.append, qos
        )
        cls.peer.create_subscription(TFMessage, "/tf", cls.tf.append, qos)
        cls.peer.create_subscription(
            PointCloud2, "/semcorr_node/output/correspondences", cls.results.append, qos
        )
        cls.peer.create_subscription(MarkerArray, "/semcorr_node/output/markers", cls.markers.append, qos)
        cls.peer.create_subscription(DiagnosticArray, "/diagnostics", cls.diagnostics.append, qos)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            cls.pub.get_subscription_count() > 0 and cls.diagnostics
        ):
            rclpy.spin_once(cls.peer, timeout_sec=0.1)
            if cls.proc.poll() is not None:
                raise RuntimeError("semcorr_node exited:\n" + read_log(cls.log))
        if cls.pub.get_subscription_count() == 0:
            raise RuntimeError("semcorr_node never subscribed:\n" + read_log(cls.log))
        # One full round trip before the tests: discovery can match one direction before
        # the other, and a message sent in between is lost.
        deadline = time.monotonic() + 60
        while not cls.results and time.monotonic() < deadline:
            cls.pub.publish(ros_peer.make_cloud(cls.clouds[0], "warm_up", stamp(1)))
            end = time.monotonic() + 1.0
            while not cls.results and time.monotonic() < end:
                rclpy.spin_once(cls.peer, timeout_sec=0.05)
        if not cls.results:
            raise RuntimeError("no correspondences for the warm-up cloud:\n" + read_log(cls.log))
        # The model's keypoint ids: `semcorr infer` lists a match for every template.
        matches = os.path.join(cls.samples, "matches.json")
        subprocess.run(
            [CLI_BIN, "infer", "--model", MODEL, "--cloud", os.path.join(cls.samples, "sample_000.pcd"),
             "--set", "segment_scene=false", "--set", "up_axis=+z", "--json", matches],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with open(matches) as f:
            cls.model_ids = {m["semantic_id"] for m in json.load(f)["objects"][0]["matches"]}

    @classmethod
    def tearDownClass(cls):
        cls.peer.destroy_node()
        rclpy.try_shutdown()
        cls.proc.send_signal(2)
        try:
            cls.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            cls.proc.kill()

    def setUp(self):
        self.assertIsNone(self.proc.poll(), "node died:\n" + read_log(self.log))

    def spin_until(self, predicate, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rclpy.spin_once(self.peer, timeout_sec=0.05)
            found = predicate()
            if found:
                return found
        return None

    def result_for(self, sec, nanosec=0, timeout=15.0):
        def find():
            for m in self.results:
                if (m.header.stamp.sec, m.header.stamp.nanosec) == (sec, nanosec):
                    return m
            return None

        return self.spin_until(find, timeout)

    def send(self, cloud_msg):
        self.pub.publish(cloud_msg)

    def test_correspondences_keep_the_header_and_come_with_markers(self):
        known_ids = self.model_ids
        for i, cloud in enumerate(self.clouds):
            self.send(ros_peer.make_cloud(cloud, "test_camera", stamp(10 + i, 500)))
            msg = self.result_for(10 + i, 500)
            self.assertIsNotNone(msg, f"no correspondences for sample {i}:\n" + read_log(self.log))
            self.assertEqual(msg.header.frame_id, "test_camera")
            xyz, ids, scores, objects = ros_peer.parse_correspondences(msg, with_objects=True)
            self.assertGreater(len(ids), 0)
            self.assertTrue(np.all(objects == 0), "one object: the whole cloud")
            self.assertTrue(set(ids.tolist()) <= known_ids, ids)
            self.assertTrue(np.all((scores >= 0) & (scores <= 1)), scores)
            # Every published point is one of the input's points.
            d = np.min(np.linalg.norm(cloud[None, :, :] - xyz[:, None, :], axis=2), axis=1)
            self.assertTrue(np.all(d < 1e-6), d)
            markers = self.spin_until(
                lambda: next(
                    (
                        a
                        for a in self.markers
                        if a.markers and a.markers[0].header.stamp == msg.header.stamp
                    ),
                    None,
                )
            )
            self.assertIsNotNone(markers, "no markers")
            added = [m for m in markers.markers if m.action == Marker.ADD]
            spheres = [m for m in added if m.type == Marker.SPHERE]
            self.assertEqual(len(spheres), len(ids))
            # A label per keypoint and one for the object; its box and its three axes.
            self.assertEqual(len([m for m in added if m.type == Marker.TEXT_VIEW_FACING]), len(ids) + 1)
            self.assertEqual(len([m for m in added if m.type == Marker.CUBE]), 1)
            self.assertEqual(len([m for m in added if m.type == Marker.ARROW]), 3)
            self.assertTrue(all(m.header.frame_id == "test_camera" for m in markers.markers))

    def test_scenes_give_detections_and_tf_frames_with_the_input_header(self):
        from rcl_interfaces.msg import ParameterType, ParameterValue

        def text(v):
            return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=v)

        self.set_parameter("segment_scene", ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=True))
        self.set_parameter("up_axis", text("auto"))
        try:
            clouds, shapes, truth = ros_peer.load_scenes(self.scenes)
            for i, (cloud, shape) in enumerate(zip(clouds, shapes)):
                sec = 400 + i
                self.send(ros_peer.make_cloud(cloud, "camera_optical", stamp(sec, 7), extra_field=False,
                                              shape=shape))
                msg = self.result_for(sec, 7, timeout=30)
                self.assertIsNotNone(msg, f"no correspondences for scene {i}:\n" + read_log(self.log)[-3000:])
                dets = self.spin_until(
                    lambda: next((d for d in self.detections if d.header.stamp == msg.header.stamp), None)
                )
                self.assertIsNotNone(dets, "no detections")
                self.assertEqual(dets.header.frame_id, "camera_optical")
                self.assertGreater(len(dets.detections), 0, read_log(self.log)[-2000:])
                _, _, _, objects = ros_peer.parse_correspondences(msg, with_objects=True)
                self.assertTrue(np.all(objects < len(dets.detections)), objects)
                categories = {o["category"] for o in truth[i]["objects"]}
                for n, d in enumerate(dets.detections):
                    self.assertEqual(d.id, str(n))
                    self.assertEqual(d.header, dets.header)
                    self.assertIn(d.results[0].hypothesis.class_id, categories | {"mug", "bottle"})
                    self.assertEqual(d.bbox.center, d.results[0].pose.pose)
                    self.assertGreater(d.bbox.size.z, 0)
                frames = self.spin_until(
                    lambda: next(
                        (t for t in self.tf if t.transforms and t.transforms[0].header.stamp == msg.header.stamp),
                        None,
                    )
                )
                self.assertIsNotNone(frames, "no /tf frames")
                names = [t.child_frame_id for t in frames.transforms]
                expected = [f"semcorr/{d.results[0].hypothesis.class_id}_{n}" for n, d in enumerate(dets.detections)]
                self.assertEqual(names, expected)
                for t, d in zip(frames.transforms, dets.detections):
                    self.assertEqual(t.header.frame_id, "camera_optical")
                    self.assertAlmostEqual(t.transform.translation.x, d.bbox.center.position.x, places=6)
        finally:
            self.set_parameter("up_axis", text("+z"))
            self.set_parameter("segment_scene", ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=False))

    def latest_diagnostic(self):
        if not self.diagnostics:
            return None
        return self.diagnostics[-1].status[0]

    def test_malformed_clouds_warn_and_the_next_good_cloud_is_processed(self):
        good = self.clouds[0]

        def cloud(**kw):
            return ros_peer.make_cloud(good, "test_camera", stamp(1), **kw)

        no_z = cloud()
        no_z.fields = [f for f in no_z.fields if f.name != "z"]
        small_step = cloud()
        small_step.point_step = 8
        small_step.row_step = 8 * small_step.width
        short = cloud()
        short.data = bytes(short.data)[: len(short.data) // 2]
        all_nan = ros_peer.make_cloud(np.full_like(good, np.nan), "test_camera", stamp(1))
        empty = ros_peer.make_cloud(good[:0], "test_camera", stamp(1))
        bad = [
            ("no z field", no_z, "'z'"),
            ("point_step smaller than the fields", small_step, "point_step"),
            ("data shorter than the layout", short, "bytes"),
            ("all NaN", all_nan, "not finite"),
            ("empty", empty, "usable points"),
        ]
        for n, (what, msg, needle) in enumerate(bad):
            before = len(self.diagnostics)
            self.send(msg)
            warning = self.spin_until(
                lambda: next(
                    (
                        d.status[0]
                        for d in self.diagnostics[before:]
                        if d.status[0].level == DiagnosticStatus.WARN and needle in d.status[0].message
                    ),
                    None,
                ),
                timeout=10,
            )
            self.assertIsNotNone(warning, f"{what}: no diagnostics warning with {needle!r}")
            sec = 100 + n
            self.send(ros_peer.make_cloud(good, "test_camera", stamp(sec)))
            self.assertIsNotNone(self.result_for(sec), f"{what}: the next good cloud was not processed")
        self.assertIsNone(self.proc.poll(), "node died:\n" + read_log(self.log))

    def test_float64_and_big_endian_clouds_decode_like_float32(self):
        good = self.clouds[1]
        self.send(ros_peer.make_cloud(good, "test_camera", stamp(200)))
        reference = self.result_for(200)
        self.assertIsNotNone(reference)
        ref_xyz, ref_ids, _ = ros_peer.parse_correspondences(reference)
        variants = [
            ("FLOAT64", dict(dtype=np.float64)),
            ("big-endian", dict(big_endian=True)),
            ("big-endian FLOAT64 without extra fields", dict(dtype=np.float64, big_endian=True, extra_field=False)),
        ]
        for n, (what, kw) in enumerate(variants):
            sec = 201 + n
            self.send(ros_peer.make_cloud(good, "test_camera", stamp(sec), **kw))
            msg = self.result_for(sec)
            self.assertIsNotNone(msg, f"{what}: no correspondences")
            xyz, ids, _ = ros_peer.parse_correspondences(msg)
            np.testing.assert_array_equal(ids, ref_ids, err_msg=what)
            np.testing.assert_allclose(xyz, ref_xyz, atol=1e-6, err_msg=what)

    def test_a_burst_leaves_the_node_on_the_newest_cloud(self):
        # Small clouds (one datagram each): best-effort DDS may drop fragments of large
        # ones in a burst, which would test the transport rather than the node.
        cloud = self.clouds[2]
        msgs = [ros_peer.make_cloud(cloud, "test_camera", stamp(1000 + i)) for i in range(50)]
        first = len(self.results)
        # 1 ms apart: five times faster than the node infers, yet gentle enough that the
        # loopback socket buffers keep every message (a zero-gap burst of 650 kB
        # overflowed them in about one run of five, dropping the newest).
        for m in msgs:
            self.pub.publish(m)
            time.sleep(0.001)
        newest = self.result_for(1049, timeout=30)
        answered = [m.header.stamp.sec for m in self.results[first:]]
        self.assertIsNotNone(
            newest,
            f"the newest cloud of the burst was not processed; answered {answered}:\n"
            + read_log(self.log)[-3000:],
        )
        self.spin_until(lambda: False, timeout=2.0)
        answered = [m for m in self.results[first:] if 1000 <= m.header.stamp.sec < 1050]
        print(f"\nburst: {len(answered)} of 50 clouds answered", file=sys.stderr)
        self.assertLess(len(answered), 50, "every cloud was processed: a queue, not the newest")
        self.assertEqual(answered[-1].header.stamp.sec, 1049)
        skipped = self.spin_until(
            lambda: next(
                (
                    int(kv.value)
                    for kv in (self.latest_diagnostic().values if self.latest_diagnostic() else [])
                    if kv.key == "skipped" and int(kv.value) > 0
                ),
                None,
            ),
            timeout=5,
        )
        self.assertIsNotNone(skipped, "diagnostics count no skipped clouds")


    def call(self, client, request):
        self.assertTrue(client.wait_for_service(timeout_sec=10), "parameter service missing")
        future = client.call_async(request)
        self.spin_until(future.done, timeout=10)
        self.assertTrue(future.done(), "no reply from the parameter service")
        return future.result()

    def get_parameter(self, name):
        from rcl_interfaces.srv import GetParameters

        client = self.peer.create_client(GetParameters, "/semcorr_node/get_parameters")
        return self.call(client, GetParameters.Request(names=[name])).values[0]

    def set_parameter(self, name, value):
        from rcl_interfaces.msg import Parameter
        from rcl_interfaces.srv import SetParameters

        client = self.peer.create_client(SetParameters, "/semcorr_node/set_parameters")
        self.call(client, SetParameters.Request(parameters=[Parameter(name=name, value=value)]))
        self.spin_until(lambda: False, timeout=0.5)  # the node applies changes asynchronously

    def test_parameters_are_declared_and_change_at_run_time(self):
        from rcl_interfaces.msg import ParameterType, ParameterValue

        self.assertEqual(self.get_parameter("score_threshold").double_value, 0.3)
        self.assertEqual(self.get_parameter("up_axis").string_value, "+z")
        self.set_parameter("max_keypoints", ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=1))
        self.send(ros_peer.make_cloud(self.clouds[0], "test_camera", stamp(300)))
        msg = self.result_for(300)
        self.assertIsNotNone(msg)
        self.assertEqual(msg.width, 1, "max_keypoints applied at run time")
        # An invalid value is refused and the previous one put back.
        bad = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=5.0)
        self.set_parameter("score_threshold", bad)
        self.assertEqual(self.get_parameter("score_threshold").double_value, 0.3)
        self.set_parameter("max_keypoints", ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=0))
        # The embedding cloud, switched on at run time: the network's sample, xyz + rgb.
        embedding = []
        self.peer.create_subscription(
            PointCloud2, "/semcorr_node/output/embedding_cloud", embedding.append, QoSProfile(depth=10)
        )
        on = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=True)
        self.set_parameter("publish_embedding_cloud", on)
        self.send(ros_peer.make_cloud(self.clouds[0], "test_camera", stamp(301)))
        msg = self.result_for(301)
        self.assertIsNotNone(msg)
        self.assertGreater(msg.width, 1)
        cloud = self.spin_until(
            lambda: next((m for m in embedding if m.header.stamp.sec == 301), None), timeout=10
        )
        self.assertIsNotNone(cloud, "no embedding cloud")
        self.assertEqual([f.name for f in cloud.fields], ["x", "y", "z", "rgb"])
        self.assertEqual(cloud.width, MODEL_SAMPLE_POINTS)
        self.assertEqual(cloud.header.frame_id, "test_camera")
        off = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=False)
        self.set_parameter("publish_embedding_cloud", off)


class LaunchFilesTest(unittest.TestCase):
    """The launch files cannot run here (no `launch` in the PyPI ROS); check what can be:
    they parse, start semcorr_node, remap its input, take a params file, and the package
    files they point at exist."""

    def test_python_and_xml_launch_files_agree(self):
        import py_compile
        import xml.etree.ElementTree as ET

        py = os.path.join(REPO, "launch/semcorr.launch.py")
        py_compile.compile(py, cfile=os.path.join(tempfile.mkdtemp(), "l.pyc"), doraise=True)
        text = open(py).read()
        for needle in ['executable="semcorr_node"', '"~/input/points"', '"params_file"',
                       '"config", "semcorr.yaml"', '[share, "models"]']:
            self.assertIn(needle, text)
        root = ET.parse(os.path.join(REPO, "launch/semcorr.launch.xml")).getroot()
        node = root.find("node")
        self.assertEqual(node.get("exec"), "semcorr_node")
        self.assertEqual(node.find("remap").get("from"), "~/input/points")
        self.assertEqual(node.find("param").get("from"), "$(var params_file)")
        args = {a.get("name"): a.get("default") for a in root.findall("arg")}
        self.assertEqual(set(args), {"input", "params_file", "model_dir", "namespace"})
        rel = args["params_file"].replace("$(find-pkg-share semcorr)/", "")
        self.assertTrue(os.path.isfile(os.path.join(REPO, rel)), rel)
        models = args["model_dir"].replace("$(find-pkg-share semcorr)/", "")
        for name in ("mug_partial.gguf", "bottle_partial.gguf"):
            self.assertTrue(os.path.isfile(os.path.join(REPO, models, name)), name)
        pkg = ET.parse(os.path.join(REPO, "package.xml")).getroot()
        self.assertEqual(pkg.find("export/build_type").text, "ament_cargo")
        self.assertIn("install_to_share = [\"launch\", \"config\", \"models\"]",
                      open(os.path.join(REPO, "Cargo.toml")).read())


class StartupTest(unittest.TestCase):
    def run_node(self, *ros_args):
        proc, log = start_node(*ros_args)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            self.fail("the node started despite a bad parameter:\n" + read_log(log))
        return code, read_log(log)

    def test_bad_parameters_stop_start_up_naming_them(self):
        for args, name in [
            (["-p", "score_threshold:=1.5"], "score_threshold"),
            (["-p", "num_points:=many"], "num_points"),
            (["-p", "device:=gpu"], "device"),
            (["-p", "model_paths:=[/nonexistent.gguf]"], "model_paths"),
        ]:
            code, log = self.run_node(*args)
            self.assertNotEqual(code, 0, args)
            self.assertIn(f"'{name}'", log, log)

    def test_corrupt_model_stops_start_up(self):
        with tempfile.NamedTemporaryFile(suffix=".gguf") as f, open(MODEL, "rb") as model:
            data = model.read()
            f.write(data[: len(data) // 3])
            f.flush()
            code, log = self.run_node("-p", f"model_paths:=[{f.name}]")
        self.assertNotEqual(code, 0)
        self.assertIn("model_paths", log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
