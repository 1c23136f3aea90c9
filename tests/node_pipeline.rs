//! The node's ROS-free message path (decode, the shared pipeline, encode) on the shipped
//! mug model and single-object sample sensor clouds (no table: `segment_scene` off, the
//! REP-103 frame's +z up). Whole scenes are `tests/scenes.rs`'.

use semcorr::node::pointcloud2::{self, datatype, RawPointCloud2};
use semcorr::node::process_message;
use semcorr::pipeline::params::{DeviceChoice, PrecisionChoice, UpAxis, UpSetting};
use semcorr::pipeline::{NodeParams, Pipeline, Settings};
use semcorr::tools::samples::{sample_clouds, SampleOptions};
use semcorr::Cloud;
use std::path::Path;

fn cloud_message(cloud: &Cloud) -> RawPointCloud2 {
    pointcloud2::encode_xyz(&cloud.points)
}

fn mug_params() -> NodeParams {
    NodeParams {
        model_dir: Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .display()
            .to_string(),
        model_paths: vec!["mug_partial.gguf".into()],
        segment_scene: false,
        up_axis: UpSetting::Axis(UpAxis::PosZ),
        ..Default::default()
    }
}

#[test]
fn sample_views_yield_keypoints_near_the_truth() {
    let params = mug_params();
    let pipeline = Pipeline::new(&params).unwrap();
    let settings = Settings::from_params(&params).unwrap();
    let ids: Vec<u32> = pipeline.models[0]
        .templates
        .templates
        .iter()
        .map(|t| t.semantic_id)
        .collect();
    let samples = sample_clouds(&SampleOptions {
        count: 6,
        ..Default::default()
    })
    .unwrap();
    let (mut near, mut found) = (0, 0);
    for s in &samples {
        let msg = cloud_message(&s.cloud);
        let output = process_message(&pipeline, &msg, &settings).unwrap();
        let out = &output.result;
        assert_eq!(out.input_points, s.cloud.len());
        assert_eq!(out.objects.len(), 1, "the whole cloud is one object");
        let published = out.correspondences();
        for (object, c) in &published {
            assert_eq!(*object, 0);
            assert!(ids.contains(&c.keypoint_id), "{}", c.keypoint_id);
            assert!((0.0..=1.0).contains(&c.score));
            assert!(c.score >= settings.score_threshold);
            assert_eq!(
                c.xyz, s.cloud.points[c.input_index],
                "published in the input frame"
            );
            if let Some((_, truth)) = s.keypoints.iter().find(|(id, _)| *id == c.keypoint_id) {
                found += 1;
                let d = semcorr::cloud::dist2(&c.xyz, truth).sqrt();
                near += usize::from(d <= 0.03);
            }
        }
        let wire = &output.correspondences;
        assert_eq!(wire.width as usize, published.len());
        assert_eq!(wire.fields[3].name, "keypoint_id");
        assert_eq!(wire.fields[3].datatype, datatype::UINT32);
        assert_eq!(wire.fields[5].name, "object_id");
        assert_eq!(output.detections.len(), 1);
        assert_eq!(output.detections[0].class_id, "mug");
    }
    eprintln!("{near} of {found} published keypoints within 3 cm of the truth");
    assert!(found >= 12, "too few correspondences: {found}");
    assert!(near * 10 >= found * 6, "{near} of {found} within 3 cm");
}

#[test]
fn filters_and_limits_apply() {
    let params = NodeParams {
        max_keypoints: 2,
        voxel_size: 0.004,
        publish_embedding_cloud: true,
        ..mug_params()
    };
    let pipeline = Pipeline::new(&params).unwrap();
    let settings = Settings::from_params(&params).unwrap();
    let s = &sample_clouds(&SampleOptions {
        count: 1,
        ..Default::default()
    })
    .unwrap()[0];
    let output = process_message(&pipeline, &cloud_message(&s.cloud), &settings).unwrap();
    let out = &output.result;
    assert!(out.correspondences().len() <= 2);
    assert!(out.filtered.len() < s.cloud.len(), "voxel filter thins");
    let emb = output.embedding_cloud.unwrap();
    assert_eq!(emb.fields.len(), 4);
    assert!(emb.width > 0);
    // A crop box that excludes the object leaves too few points: a clear error.
    let away = Settings {
        crop_box: Some([5.0, 5.0, 5.0, 6.0, 6.0, 6.0]),
        ..settings.clone()
    };
    let e = process_message(&pipeline, &cloud_message(&s.cloud), &away).unwrap_err();
    assert!(e.to_string().contains("crop_box"), "{e}");
}

#[test]
fn malformed_messages_are_errors_and_the_next_cloud_still_works() {
    let params = mug_params();
    let pipeline = Pipeline::new(&params).unwrap();
    let settings = Settings::from_params(&params).unwrap();
    let s = &sample_clouds(&SampleOptions {
        count: 1,
        ..Default::default()
    })
    .unwrap()[0];
    let good = cloud_message(&s.cloud);
    let mut no_z = good.clone();
    no_z.fields.truncate(2);
    let mut short = good.clone();
    short.data.truncate(good.data.len() / 2);
    let mut small_step = good.clone();
    small_step.point_step = 8;
    let mut nan = good.clone();
    for b in nan.data.chunks_mut(4) {
        b.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    let empty = pointcloud2::encode_correspondences(&[]);
    for (what, msg, needle) in [
        ("no z", &no_z, "'z'"),
        ("short data", &short, "bytes"),
        ("small point_step", &small_step, "point_step"),
        ("all NaN", &nan, "not finite"),
        ("empty", &empty, "usable points"),
    ] {
        let e = process_message(&pipeline, msg, &settings)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{what}: {e}");
    }
    assert!(!process_message(&pipeline, &good, &settings)
        .unwrap()
        .result
        .correspondences()
        .is_empty());
}

#[test]
fn bad_model_or_precision_stops_start_up_naming_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("bad.gguf");
    std::fs::write(&corrupt, b"GGUF\x03\x00\x00\x00 truncated").unwrap();
    for (p, name) in [
        (
            NodeParams {
                model_paths: vec!["/nonexistent/model.gguf".into()],
                ..Default::default()
            },
            "model_paths",
        ),
        (
            NodeParams {
                model_paths: vec![corrupt.display().to_string()],
                ..Default::default()
            },
            "model_paths",
        ),
        (
            NodeParams {
                precision: "q4_0".parse().unwrap(),
                ..mug_params()
            },
            "precision",
        ),
        (
            NodeParams {
                device: DeviceChoice::Cuda(0),
                ..mug_params()
            },
            "device",
        ),
        (
            NodeParams {
                classifier_path: "/nonexistent/classifier.safetensors".into(),
                ..mug_params()
            },
            "classifier_path",
        ),
        (
            NodeParams {
                classifier_path: corrupt.display().to_string(),
                ..mug_params()
            },
            "classifier_path",
        ),
    ] {
        let e = Pipeline::new(&p).unwrap_err().to_string();
        assert!(e.contains(&format!("'{name}'")), "{name}: {e}");
    }
    // The file's own precision runs quantized.
    assert!(Pipeline::new(&NodeParams {
        precision: "q8_0".parse::<PrecisionChoice>().unwrap(),
        ..mug_params()
    })
    .is_ok());
}
