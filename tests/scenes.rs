//! Whole depth-camera scenes through the pipeline with the shipped default parameters and
//! models: quality on fresh sample scenes (seeds never used in training), and what each
//! kind of bad scene gives (a result or an error that says what happened; the next cloud
//! is still processed).

use nalgebra::Vector3;
use semcorr::cloud::Cloud;
use semcorr::pipeline::{CloudResult, NodeParams, Pipeline, Settings, UpSource};
use semcorr::pose::Rest;
use semcorr::tools::scene_eval::evaluate;
use semcorr::tools::scenes::{sample_scenes, SceneOptions, SceneSample};
use std::path::Path;
use std::sync::OnceLock;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped config's parameters with the repository's models.
fn params() -> NodeParams {
    let mut p =
        NodeParams::from_ros_yaml(&root().join("config/semcorr.yaml"), "semcorr_node").unwrap();
    p.model_dir = root().join(&p.model_dir).display().to_string();
    p
}

fn pipeline() -> &'static (Pipeline, Settings) {
    static P: OnceLock<(Pipeline, Settings)> = OnceLock::new();
    P.get_or_init(|| {
        let p = params();
        (
            Pipeline::new(&p).unwrap(),
            Settings::from_params(&p).unwrap(),
        )
    })
}

fn scenes(count: usize, seed: u64) -> Vec<SceneSample> {
    sample_scenes(&SceneOptions {
        count,
        seed,
        ..Default::default()
    })
    .unwrap()
}

fn run(cloud: &Cloud) -> CloudResult {
    let (p, s) = pipeline();
    p.process(cloud, s).unwrap()
}

/// The bars on fresh scenes of the whole tabletop zoo, objects within 30 degrees
/// of facing the camera (`yaw`) or turned any way (`any`), with the classifier deciding
/// category and yaw. Round categories' rotation is their axis only (see scene_eval).
fn assert_quality_bars(yaw: f32, seed: u64) {
    let (p, s) = pipeline();
    let samples = sample_scenes(&SceneOptions {
        count: 16,
        seed,
        max_yaw_deg: yaw,
        ..Default::default()
    })
    .unwrap();
    let score = evaluate(p, s, &samples).unwrap();
    eprintln!("{score}");
    assert!(score.total.objects >= 30, "{score}");
    // Measured on 100 scenes each way (seed 9800): found 85.8% / 89.7%, classifier 98.2% /
    // 95.9% (README, "The tabletop zoo at any yaw"); 16 scenes spread around that.
    assert!(score.found_rate() >= 0.85, "{score}");
    assert!(score.category_rate() >= 0.85, "{score}");
    assert!(score.classified_rate() >= 0.95, "{score}");
    assert!(score.near_rate() >= 0.85, "{score}");
    assert!(score.recall() >= 0.60, "{score}");
    // Over all objects with a fitted pose; per category, the README's tables (on 100
    // scenes at any yaw every category is within 2 cm / 10 degrees; facing the camera the
    // jug's and the laptop's positions are about 2 cm).
    assert!(score.median_pose_m() <= 0.02, "{score}");
    assert!(score.median_pose_deg() <= 10.0, "{score}");
}

#[test]
fn fresh_scenes_meet_the_quality_bars() {
    assert_quality_bars(30.0, 9100);
}

#[test]
fn objects_turned_any_way_meet_the_quality_bars() {
    assert_quality_bars(180.0, 9150);
}

/// Mug-and-bottle scenes through the two-category pipeline without the classifier
/// (`classifier_path: ""`, the shape-test gate): what the zoo's defaults replaced still
/// works. Found and category right: 97.0% on 40 scenes of seed 9700, 92.9-93.6% on 20 of
/// seeds 9100 and 9200 (README).
#[test]
fn the_two_category_pipeline_still_reads_its_scenes() {
    let mut params = params();
    params.model_paths = vec!["mug_partial.gguf".into(), "bottle_partial.gguf".into()];
    params.classifier_path = String::new();
    let p = Pipeline::new(&params).unwrap();
    let s = Settings::from_params(&params).unwrap();
    let samples = sample_scenes(&SceneOptions {
        count: 20,
        seed: 9100,
        categories: vec![("mug".into(), 0.15), ("bottle".into(), 0.25)],
        ..Default::default()
    })
    .unwrap();
    let score = evaluate(&p, &s, &samples).unwrap();
    eprintln!("{score}");
    assert!(score.total.objects >= 30, "{score}");
    assert!(score.found_rate() >= 0.9, "{score}");
    assert!(score.category_rate() >= 0.9, "{score}");
    assert!(score.near_rate() >= 0.85, "{score}");
    assert!(score.recall() >= 0.60, "{score}");
    for category in ["mug", "bottle"] {
        let (m, deg, n) = score.category_pose(category);
        assert!(n >= 5 && m <= 0.02 && deg <= 10.0, "{category}: {score}");
    }
}

#[test]
fn detections_are_in_the_input_frame_with_their_keypoints() {
    let scene = &scenes(1, 9200)[0];
    let (p, _) = pipeline();
    let r = run(&scene.cloud);
    assert_eq!(r.scene.up_source, UpSource::Plane);
    assert!(r.detections().count() >= 1);
    for (_, o) in r.detections() {
        for c in &o.correspondences {
            assert_eq!(c.xyz, scene.cloud.points[c.input_index], "an input pixel");
        }
        let q = o.pose.rotation();
        let up = Vector3::from(r.scene.up);
        match p.models[o.model].templates.rest {
            // Upright on the table: the object's z is the plane's normal.
            Rest::Upright => assert!((q * Vector3::z()).dot(&up) > 0.99),
            // On its side: its front (x) faces up or down.
            Rest::OnSide => assert!((q * Vector3::x()).dot(&up).abs() > 0.99),
        }
        assert!(o.pose.size.iter().all(|&v| v > 0.0 && v < 0.6));
    }
}

/// `yaw_hypotheses` turns each object for each model before its forward pass; the
/// correspondences still index input points on the object and the objects are still found.
#[test]
fn yaw_hypotheses_keep_objects_and_their_points() {
    // The shape test's yaws are used without a classifier.
    let mut params = params();
    params.classifier_path = String::new();
    let p = &Pipeline::new(&params).unwrap();
    let s = &Settings::from_params(&params).unwrap();
    let searched = Settings {
        yaw_hypotheses: 8,
        ..s.clone()
    };
    for scene in scenes(2, 9300) {
        let plain = p.process(&scene.cloud, s).unwrap();
        let r = p.process(&scene.cloud, &searched).unwrap();
        assert_eq!(r.objects.len(), plain.objects.len());
        assert!(r.detections().count() >= 1);
        for (_, o) in r.detections() {
            for c in &o.correspondences {
                assert_eq!(c.xyz, scene.cloud.points[c.input_index]);
                assert!(o.indices.iter().any(|&i| r.input_index[i] == c.input_index));
            }
        }
    }
}

/// The category gate: at 0 only the model of the classifier's most likely category runs
/// on an object (so most objects get one verdict, not one per model) and the categories
/// stay right; at 1 every model runs on every object.
#[test]
fn the_category_gate_skips_models_but_not_categories() {
    let (p, s) = pipeline();
    let strict = Settings {
        category_gate: 0.0,
        ..s.clone()
    };
    let open = Settings {
        category_gate: 1.0,
        ..s.clone()
    };
    let samples = scenes(4, 9400);
    let score = evaluate(p, &strict, &samples).unwrap();
    // Only the classifier's category runs: it must be right, and what is found named so
    // (a miss is the matches' verdict, not the gate's).
    assert!(score.classified_rate() >= 0.9, "{score}");
    assert!(score.found_rate() >= 0.6, "{score}");
    assert!(score.category_rate() >= 0.9 * score.found_rate(), "{score}");
    let (mut verdicts, mut objects) = (0, 0);
    for scene in &samples {
        for o in p.process(&scene.cloud, &open).unwrap().objects {
            if !o.candidates.is_empty() {
                assert_eq!(o.candidates.len(), p.models.len(), "every model ran");
            }
        }
        for o in p.process(&scene.cloud, &strict).unwrap().objects {
            verdicts += o.candidates.len();
            objects += usize::from(!o.candidates.is_empty());
        }
    }
    assert!(objects >= 4);
    assert!(
        verdicts < 2 * objects,
        "{verdicts} verdicts on {objects} objects"
    );
    // A degenerate object (every point the same) has no shape to compare: a result, not
    // a panic, and the next cloud is still processed.
    let whole = Settings {
        scene: None,
        up: semcorr::scene::UpSearch::Near(Vector3::new(0.0, -1.0, 0.0)),
        ..strict.clone()
    };
    let dot = Cloud::new(vec![[0.1, 0.2, 0.7]; 64]);
    let _ = p.process(&dot, &whole);
    assert!(p.process(&samples[0].cloud, &strict).is_ok());
}

/// A point on or above a table seen by a camera tilted down 40 degrees (optical frame):
/// `a` metres to the right, `d` metres ahead (horizontally), `k` metres above the top,
/// which is 0.6 m below the camera.
fn world(a: f32, d: f32, k: f32) -> [f32; 3] {
    let (s, c) = 40f32.to_radians().sin_cos();
    let up = Vector3::new(0.0, -c, -s);
    let ahead = Vector3::new(0.0, -s, c);
    (Vector3::x() * a + ahead * d + up * (k - 0.6)).into()
}

/// An empty table: 0.8 x 0.8 m, 0.4-1.2 m ahead.
fn table() -> Vec<[f32; 3]> {
    let n = 300;
    (0..n * n)
        .map(|i| {
            let (u, v) = ((i % n) as f32 / n as f32, (i / n) as f32 / n as f32);
            world(0.8 * u - 0.4, 0.4 + 0.8 * v, 0.0)
        })
        .collect()
}

/// A filled box of `side` x `side` x `height` standing on the table, `n`^3 points.
fn block(a: f32, d: f32, side: f32, height: f32, n: usize) -> Vec<[f32; 3]> {
    let t = |i: usize| i as f32 / (n - 1) as f32;
    (0..n * n * n)
        .map(|i| {
            let (x, y, z) = (t(i % n), t((i / n) % n), t(i / (n * n)));
            world(a + side * x, d + side * y, 0.02 + height * z)
        })
        .collect()
}

#[test]
fn bad_scenes_give_documented_results() {
    let (p, s) = pipeline();
    let good = &scenes(1, 9300)[0];
    let good_count = run(&good.cloud).detections().count();
    assert!(good_count >= 1);

    // All NaN: an error that says so; nothing else is affected.
    let mut nan = Cloud::new(vec![[f32::NAN; 3]; 640 * 480]);
    nan.organised = good.cloud.organised;
    let e = p.process(&nan, s).unwrap_err().to_string();
    assert!(e.contains("not finite"), "{e}");

    // No plane (one object in the air): up falls back, and the summary says so.
    let blob: Vec<[f32; 3]> = good
        .cloud
        .points
        .iter()
        .copied()
        .filter(|p| p[2] < 0.0)
        .collect();
    let floating = semcorr::tools::samples::sample_clouds(&Default::default()).unwrap();
    let optical: Vec<[f32; 3]> = floating[0]
        .cloud
        .points
        .iter()
        .map(|p| [-p[1], -p[2], p[0]])
        .chain(blob)
        .collect();
    let r = run(&Cloud::new(optical));
    eprintln!("no plane: {}", r.scene.summary(r.detections().count()));
    assert!(r.scene.plane.is_none());
    assert_eq!(r.scene.up_source, UpSource::Fallback);
    assert!(
        r.scene.summary(0).contains("no plane found"),
        "{}",
        r.scene.summary(0)
    );

    // A wall-sized cluster on the table: refused by extent, said in the summary.
    let mut walled = table();
    for i in 0..150 {
        for j in 0..100 {
            walled.push(world(
                0.8 * i as f32 / 150.0 - 0.4,
                1.1,
                0.55 * j as f32 / 100.0,
            ));
        }
    }
    let r = run(&Cloud::new(walled));
    eprintln!("wall: {}", r.scene.summary(r.detections().count()));
    assert!(r.scene.plane.is_some());
    assert_eq!(r.detections().count(), 0);
    let line = r.scene.summary(0);
    assert!(
        line.contains("over max_object_extent") || line.contains("over max_cluster_points"),
        "{line}"
    );

    // Ten times more clusters than max_objects: the nearest are kept, the rest counted.
    let mut crowded = table();
    for k in 0..40 {
        let (a, d) = ((k % 8) as f32 * 0.09 - 0.35, 0.5 + (k / 8) as f32 * 0.12);
        crowded.extend(block(a, d, 0.03, 0.05, 7));
    }
    let r = run(&Cloud::new(crowded));
    eprintln!("crowded: {}", r.scene.summary(r.detections().count()));
    let max_objects = s.scene.as_ref().unwrap().max_objects;
    assert_eq!(r.objects.len(), max_objects, "{}", r.scene.summary(0));
    assert_eq!(r.scene.rejected.over_max_objects, 40 - max_objects);
    assert!(r.scene.summary(0).contains("beyond max_objects"));

    // Two objects touching: one cluster, one candidate (documented), no crash.
    let first = run(&good.cloud);
    if let Some(o) = first.objects.first() {
        let mut doubled = good.cloud.points.clone();
        let pts: Vec<[f32; 3]> = o
            .indices
            .iter()
            .map(|&i| first.filtered.points[i])
            .collect();
        let width = pts.iter().map(|p| p[0]).fold(f32::MIN, f32::max)
            - pts.iter().map(|p| p[0]).fold(f32::MAX, f32::min);
        doubled.extend(pts.iter().map(|p| [p[0] + width * 0.95, p[1], p[2]]));
        let r = run(&Cloud::new(doubled));
        eprintln!("touching: {}", r.scene.summary(r.detections().count()));
        assert_eq!(
            r.objects.len(),
            first.objects.len(),
            "the pair is one candidate"
        );
    }

    // An object cut by the image border: half its pixels missing.
    let truth = &good.objects[0];
    let mut cut = good.cloud.clone();
    for p in &mut cut.points {
        if p[0] < truth.position[0] {
            *p = [f32::NAN; 3];
        }
    }
    let r = run(&cut);
    eprintln!("border-cut: {}", r.scene.summary(r.detections().count()));
    assert!(!r.objects.is_empty());

    // And the next cloud is read as before.
    assert_eq!(run(&good.cloud).detections().count(), good_count);
}

/// The real Kinect scan (../shared/fixtures/real): the table is found and the objects on
/// it come out as candidates (nothing there is a procedural mug or bottle, so no
/// detection is required).
#[test]
fn real_kinect_scan() {
    let path = root().join("../shared/fixtures/real/kinect_table_frame.pcd");
    if !path.is_file() {
        eprintln!("skipped: {} is absent", path.display());
        return;
    }
    let scan = Cloud::read(&path).unwrap();
    let r = run(&scan);
    eprintln!("{}", r.scene.summary(r.detections().count()));
    let plane = r.scene.plane.expect("the table");
    let facts = Vector3::new(-0.07f32, 0.69, 0.72).normalize();
    assert!(Vector3::from(plane.normal).dot(&facts).abs() > 0.99);
    assert!(r.objects.len() >= 3, "{}", r.scene.summary(0));
}

/// A category's size range rules out what its shape alone would pass (a box taken for a
/// mug): with the mug model's range moved to 0.30-0.60 m, the 15 cm mugs of sample scenes
/// are not published as mugs and their reports name the size; bottles are still found. The
/// shipped models carry their ranges.
#[test]
fn objects_outside_the_category_size_range_are_not_published() {
    use semcorr::deploy::DeployedModel;
    let p = params();
    let tmp = tempfile::tempdir().unwrap();
    for name in &p.model_paths {
        let mut m = DeployedModel::load(Path::new(&p.model_dir).join(name)).unwrap();
        assert!(
            m.templates.size_range_m.is_some(),
            "{name} has no size range"
        );
        if m.category.name == "mug" {
            m.templates.size_range_m = Some([0.30, 0.60]);
        }
        m.save(tmp.path().join(name)).unwrap();
    }
    let mut moved = p.clone();
    moved.model_dir = tmp.path().display().to_string();
    // Without the classifier, whose size prior would keep the mug model off these objects
    // before its range could refuse them.
    moved.classifier_path = String::new();
    let pipeline = Pipeline::new(&moved).unwrap();
    let s = Settings::from_params(&moved).unwrap();
    let (mut refused, mut bottles) = (0, 0);
    for scene in scenes(10, 9300) {
        for o in pipeline.process(&scene.cloud, &s).unwrap().objects {
            assert_ne!(o.category.as_deref(), Some("mug"), "{:?}", o.unrecognised);
            let why = o.unrecognised.unwrap_or_default();
            refused += usize::from(why.contains("outside the mug's 0.30-0.60 m"));
            bottles += usize::from(o.category.as_deref() == Some("bottle"));
        }
    }
    assert!(
        refused >= 2 && bottles >= 2,
        "{refused} refused, {bottles} bottles"
    );
}
