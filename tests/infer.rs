//! `semcorr infer` runs the node's pipeline on files: an organised depth-camera cloud of
//! one object with NaN holes, in a camera optical frame, works with `--set up_axis=-y
//! --set segment_scene=false`; bad parameters and unreadable files are refused naming
//! what was wrong. Whole scenes are `tests/scenes.rs`'.

use semcorr::tools::samples::{sample_clouds, SampleOptions};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_semcorr"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run semcorr")
}

/// REP-103 sensor frame (x forward, z up) -> camera optical frame (z forward, y down).
fn to_optical(p: [f32; 3]) -> [f32; 3] {
    [-p[1], -p[2], p[0]]
}

/// Writes an organised binary PCD (`width` x `height`), as a depth camera's driver does.
fn write_organised_pcd(path: &Path, points: &[[f32; 3]], width: usize) {
    assert_eq!(points.len() % width, 0);
    let mut f = std::fs::File::create(path).unwrap();
    write!(
        f,
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\n\
         TYPE F F F\nCOUNT 1 1 1\nWIDTH {width}\nHEIGHT {}\nVIEWPOINT 0 0 0 1 0 0 0\n\
         POINTS {}\nDATA binary\n",
        points.len() / width,
        points.len()
    )
    .unwrap();
    for p in points {
        for c in p {
            f.write_all(&c.to_le_bytes()).unwrap();
        }
    }
}

#[test]
fn organised_optical_frame_cloud_with_nan_holes() {
    let samples = sample_clouds(&SampleOptions {
        count: 3,
        seed: 4242,
        ..Default::default()
    })
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (mut near, mut published) = (0, 0);
    for (k, s) in samples.iter().enumerate() {
        // Every third pixel is a hole, and whole rows of holes follow the object.
        let width = 64;
        let mut pixels = Vec::new();
        for (i, &p) in s.cloud.points.iter().enumerate() {
            if i % 3 == 0 {
                pixels.push([f32::NAN; 3]);
            }
            pixels.push(to_optical(p));
        }
        pixels.resize(
            pixels.len().div_ceil(width) * width + 2 * width,
            [f32::NAN; 3],
        );
        let holes = pixels.iter().filter(|p| p[0].is_nan()).count();
        let pcd = tmp.path().join(format!("scan{k}.pcd"));
        write_organised_pcd(&pcd, &pixels, width);
        let json = tmp.path().join(format!("scan{k}.json"));
        let out = run(&[
            "infer",
            "--cloud",
            pcd.to_str().unwrap(),
            "--set",
            "up_axis=-y",
            "--set",
            "segment_scene=false",
            "--json",
            json.to_str().unwrap(),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("({holes} not finite)")),
            "{stdout}"
        );
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(v["dropped_non_finite"].as_u64().unwrap() as usize, holes);
        assert_eq!(v["input_points"].as_u64().unwrap() as usize, pixels.len());
        let objects = v["objects"].as_array().unwrap();
        assert_eq!(objects.len(), 1, "the whole cloud is one object");
        for c in objects[0]["keypoints"].as_array().unwrap() {
            let xyz: Vec<f32> = c["xyz"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            let i = c["input_index"].as_u64().unwrap() as usize;
            assert_eq!(xyz, pixels[i].to_vec(), "in the input frame, at its pixel");
            let id = c["id"].as_u64().unwrap() as u32;
            if let Some((_, truth)) = s.keypoints.iter().find(|(t, _)| *t == id) {
                published += 1;
                let t = to_optical(*truth);
                let d: f32 = (0..3).map(|a| (xyz[a] - t[a]).powi(2)).sum::<f32>().sqrt();
                near += usize::from(d <= 0.03);
            }
        }
    }
    eprintln!("{near} of {published} published keypoints within 3 cm of the truth");
    assert!(published >= 6, "too few correspondences: {published}");
    assert!(
        near * 10 >= published * 6,
        "{near} of {published} within 3 cm"
    );
}

#[test]
fn bad_parameters_and_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let truncated = tmp.path().join("truncated.pcd");
    std::fs::write(
        &truncated,
        "VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 100\n\
         HEIGHT 1\nPOINTS 100\nDATA binary\n\x00\x00",
    )
    .unwrap();
    let good = tmp.path().join("few.pcd");
    // Readable, but 8 finite points are not an object.
    let mut few = vec![[f32::NAN; 3]; 64];
    for (i, p) in few.iter_mut().take(8).enumerate() {
        *p = [0.5, i as f32 * 0.01, 0.0];
    }
    write_organised_pcd(&good, &few, 8);
    let params = tmp.path().join("p.yaml");
    std::fs::write(&params, "semcorr_node:\n  ros__parameters:\n    voxel: 1\n").unwrap();
    let t = truncated.to_str().unwrap();
    let g = good.to_str().unwrap();
    for (args, needles) in [
        (vec!["--cloud", g, "--set", "up_axis=up"], vec!["'up_axis'"]),
        (
            vec!["--cloud", g, "--set", "scor_threshold=0.5"],
            vec!["scor_threshold"],
        ),
        (
            vec!["--cloud", g, "--set", "crop_box=[1,2]"],
            vec!["'crop_box'"],
        ),
        (
            vec!["--cloud", g, "--set", "voxel_size"],
            vec!["name=value"],
        ),
        (
            vec!["--cloud", g, "--params", params.to_str().unwrap()],
            vec!["p.yaml", "voxel"],
        ),
        (
            vec!["--cloud", g, "--set", "model_paths=/nonexistent.gguf"],
            vec!["'model_paths'", "nonexistent.gguf"],
        ),
        (vec!["--cloud", t], vec!["truncated.pcd"]),
        (vec!["--cloud", "/nonexistent/scan.pcd"], vec!["scan.pcd"]),
        (vec!["--cloud", g], vec!["usable points"]),
    ] {
        let mut full = vec!["infer"];
        full.extend(&args);
        let out = run(&full);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(stderr.contains(n), "{args:?}: {stderr}");
        }
    }
}
