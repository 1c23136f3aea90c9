//! The CLI end to end: a procedural dataset, then baselines evaluated on it.

use std::path::Path;
use std::process::Command;

fn semcorr(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_semcorr"))
        .args(args)
        .output()
        .expect("run semcorr");
    assert!(
        out.status.success(),
        "semcorr {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn mean_mge(path: &Path) -> f64 {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let obj = v.as_object().unwrap();
    // `rotation_yaw_in_data` only when a rotation was applied to view-frame views.
    let mut keys: Vec<&String> = obj
        .keys()
        .filter(|k| *k != "rotation_yaw_in_data")
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["categories", "mean_mge", "rotation", "rotation_seed"]
    );
    for (class_id, c) in obj["categories"].as_object().unwrap() {
        assert!(class_id.starts_with("900000"), "{class_id}");
        let c = c.as_object().unwrap();
        let mut fields: Vec<&String> = c.keys().collect();
        fields.sort();
        assert_eq!(fields, ["mge", "pairs", "pck", "sets"]);
        let pck: Vec<f64> = c["pck"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(pck.len(), 11);
        assert!(
            pck.windows(2).all(|w| w[0] <= w[1]),
            "PCK is a cumulative curve: {pck:?}"
        );
        assert!(c["sets"].as_u64().unwrap() > 0 && c["pairs"].as_u64().unwrap() > 0);
    }
    v["mean_mge"].as_f64().unwrap()
}

#[test]
fn synth_then_baselines_rank_as_expected() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_s = data.to_str().unwrap();
    let summary = semcorr(&[
        "synth",
        "--out",
        data_s,
        "--categories",
        "mug,knife,airplane",
        "--models",
        "20",
        "--seed",
        "3",
    ]);
    assert!(
        summary.contains("mug") && summary.contains("airplane"),
        "{summary}"
    );
    let mut mge = std::collections::HashMap::new();
    for embedder in ["random", "xyz", "fpfh"] {
        let json = tmp.path().join(format!("{embedder}.json"));
        let table = semcorr(&[
            "eval",
            "--data",
            data_s,
            "--split",
            "test",
            "--embedder",
            embedder,
            "--json",
            json.to_str().unwrap(),
        ]);
        assert!(table.contains("knife") && table.contains("mean"), "{table}");
        mge.insert(embedder, mean_mge(&json));
    }
    assert!(mge["random"] > mge["fpfh"], "{mge:?}");
    assert!(mge["random"] > mge["xyz"], "{mge:?}");

    // Raw coordinates know where "front" is only in the canonical pose: turned at random
    // about the up axis they score worse, and the report says how the clouds were turned.
    let json = tmp.path().join("xyz-yaw.json");
    let table = semcorr(&[
        "eval",
        "--data",
        data_s,
        "--embedder",
        "xyz",
        "--rotate",
        "yaw",
        "--seed",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(table.contains("rotation: yaw (seed 2)"), "{table}");
    assert!(
        mean_mge(&json) > mge["xyz"] * 1.5,
        "{} vs {}",
        mean_mge(&json),
        mge["xyz"]
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(
        (v["rotation"].as_str(), v["rotation_seed"].as_u64()),
        (Some("yaw"), Some(2))
    );
    for (bad, named) in [("spin", "unknown rotation mode"), ("tilt:95", "[0, 90]")] {
        let out = Command::new(env!("CARGO_BIN_EXE_semcorr"))
            .args([
                "eval",
                "--data",
                data_s,
                "--embedder",
                "xyz",
                "--rotate",
                bad,
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--rotate") && err.contains(named), "{err}");
    }
}

#[test]
fn bad_arguments_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_semcorr"))
        .args([
            "eval",
            "--data",
            tmp.path().to_str().unwrap(),
            "--embedder",
            "random",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("annotations"), "{err}");

    semcorr(&[
        "synth",
        "--out",
        tmp.path().join("d").to_str().unwrap(),
        "--categories",
        "mug",
        "--models",
        "6",
    ]);
    let out = Command::new(env!("CARGO_BIN_EXE_semcorr"))
        .args([
            "eval",
            "--data",
            tmp.path().join("d").to_str().unwrap(),
            "--embedder",
            "sift",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("sift"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_semcorr"))
        .args([
            "synth",
            "--out",
            tmp.path().join("e").to_str().unwrap(),
            "--categories",
            "kettle",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("kettle"), "{err}");
    // A scene category the scenes do not have is named with the ones they do.
    let out = Command::new(env!("CARGO_BIN_EXE_semcorr"))
        .args(["samples", "--scene", "--out"])
        .arg(tmp.path().join("s"))
        .args(["--categories", "mug,guitar"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("guitar") && err.contains("pitcher"),
        "{err}"
    );
}

#[test]
fn samples_write_sensor_clouds_with_their_truth() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("samples");
    let text = semcorr(&[
        "samples",
        "--out",
        out.to_str().unwrap(),
        "--count",
        "2",
        "--points",
        "3000",
    ]);
    assert!(text.contains("wrote 2 clouds"), "{text}");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("keypoints.json")).unwrap()).unwrap();
    let entries = index.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for e in entries {
        let cloud = semcorr::Cloud::read(out.join(e["file"].as_str().unwrap())).unwrap();
        assert_eq!(cloud.len(), 3000);
        let kps = e["keypoints"].as_array().unwrap();
        assert!(!kps.is_empty());
        // The truth lies on the cloud (within the 1 mm noise, a few sigma).
        for k in kps {
            let xyz: Vec<f32> = k["xyz"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let nearest = cloud
                .points
                .iter()
                .map(|p| semcorr::cloud::dist2(p, &[xyz[0], xyz[1], xyz[2]]).sqrt())
                .fold(f32::INFINITY, f32::min);
            assert!(nearest < 0.006, "{nearest}");
        }
    }
}

#[test]
fn samples_write_depth_camera_scenes_with_their_truth() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scenes");
    let text = semcorr(&[
        "samples",
        "--scene",
        "--out",
        out.to_str().unwrap(),
        "--count",
        "2",
    ]);
    assert!(text.contains("wrote 2 scenes"), "{text}");
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("truth.json")).unwrap()).unwrap();
    let scenes = truth.as_array().unwrap();
    assert_eq!(scenes.len(), 2);
    for s in scenes {
        let file = out.join(s["file"].as_str().unwrap());
        let head = std::fs::read(&file).unwrap();
        let header = String::from_utf8_lossy(&head[..300.min(head.len())]).to_string();
        assert!(header.contains("DATA binary_compressed"), "{header}");
        let cloud = semcorr::Cloud::read(&file).unwrap();
        let shape = cloud.organised.unwrap();
        assert_eq!((shape.width, shape.height), (640, 480));
        let objects = s["objects"].as_array().unwrap();
        assert!((1..=4).contains(&objects.len()));
        let tilt = s["tilt_deg"].as_f64().unwrap();
        assert!((20.0..=60.0).contains(&tilt), "{tilt}");
        for o in objects {
            let category = o["category"].as_str().unwrap();
            assert!(
                semcorr::tools::scenes::TABLETOP
                    .iter()
                    .any(|(name, _)| *name == category),
                "{category}"
            );
            // Visible keypoints lie on the cloud (range noise is a few mm at 1 m).
            for k in o["keypoints"].as_array().unwrap() {
                let xyz: Vec<f32> = k[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect();
                let nearest = cloud
                    .points
                    .iter()
                    .filter(|p| p[0].is_finite())
                    .map(|p| semcorr::cloud::dist2(p, &[xyz[0], xyz[1], xyz[2]]).sqrt())
                    .fold(f32::INFINITY, f32::min);
                assert!(nearest < 0.015, "{nearest}");
            }
        }
    }
}

/// `eval --classifier`: views at any yaw (`--view-frame`) turned back by the shipped
/// classifier read better than the same views as they are; a file that is no classifier,
/// or a classifier without a deployed model, is refused by name.
#[test]
fn eval_turns_views_back_with_the_classifier() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (model, classifier) = (
        root.join("models/pitcher_partial.gguf"),
        root.join("models/classifier.safetensors"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("views");
    let d = data.to_str().unwrap();
    semcorr(&[
        "synth",
        "--out",
        d,
        "--categories",
        "pitcher",
        "--models",
        "20",
        "--seed",
        "11",
        "--partial",
        "--view-frame",
        "--points",
        "1024",
    ]);
    let json = |name: &str| tmp.path().join(name);
    let m = model.to_str().unwrap();
    semcorr(&[
        "eval",
        "--data",
        d,
        "--model",
        m,
        "--json",
        json("as.json").to_str().unwrap(),
    ]);
    // `eval` turned back by the classifier, with `extra` arguments; its report in `out`.
    let turned_back = |extra: &[&str], out: &str| {
        let path = json(out);
        let mut args = vec![
            "eval",
            "--data",
            d,
            "--model",
            m,
            "--classifier",
            classifier.to_str().unwrap(),
            "--json",
            path.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        semcorr(&args)
    };
    let text = turned_back(&[], "turned.json");
    assert!(text.contains("turned back by the classifier"), "{text}");
    let (plain, turned) = (mean_mge(&json("as.json")), mean_mge(&json("turned.json")));
    assert!(turned < 0.6 * plain, "turned {turned} vs as seen {plain}");
    // Leaning up to 20 degrees: the views' own yaw stands for the rotation's (recorded),
    // and the classifier's up levels them, so little is lost.
    let text = turned_back(&["--rotate", "tilt:20"], "leaning.json");
    assert!(text.contains("less its yaw"), "{text}");
    let leaning = mean_mge(&json("leaning.json"));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(json("leaning.json")).unwrap()).unwrap();
    assert_eq!(v["rotation"], "tilt:20");
    assert_eq!(v["rotation_yaw_in_data"], true);
    assert!(
        leaning < 1.5 * turned,
        "leaning {leaning} vs upright {turned}"
    );

    for (args, named) in [
        (vec!["--model", m, "--classifier", m], "not a classifier"),
        (
            vec![
                "--embedder",
                "xyz",
                "--classifier",
                classifier.to_str().unwrap(),
            ],
            "--model",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_semcorr"))
            .args(["eval", "--data", d])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(named), "{err}");
    }
}

/// `train --init` fine-tunes from the shipped backbone, taking its architecture and
/// preprocessing; `--init-layers` needs `--init` and a known value.
#[test]
fn train_starts_from_the_shipped_backbone() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    semcorr(&[
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--categories",
        "mug",
        "--models",
        "8",
        "--seed",
        "5",
    ]);
    let backbone =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/backbone-pointnet.safetensors");
    let run = tmp.path().join("run");
    let train = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_semcorr"))
            .args(["train", "--config", "config/finetune.yaml"])
            .args(["--set", &format!("data={}", data.display())])
            .args([
                "--set",
                "category=mug",
                "--set",
                "epochs=2",
                "--set",
                "progress=false",
            ])
            .args(["--set", &format!("out={}", run.display())])
            .args(extra)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    let out = train(&[
        "--init",
        backbone.to_str().unwrap(),
        "--init-layers",
        "body",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("init: the body's layers"), "{stdout}");
    let (_, ckpt) = semcorr::train::load_network(&run.join("last.safetensors")).unwrap();
    assert!(
        ckpt.meta.config.prepare.canonical_yaw,
        "the backbone's preprocessing"
    );
    assert_eq!(ckpt.meta.config.prepare.num_points, 1024);

    let out = train(&["--init-layers", "body"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--init"), "{err}");
    let out = train(&[
        "--init",
        backbone.to_str().unwrap(),
        "--init-layers",
        "head",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("head"), "{err}");
}
