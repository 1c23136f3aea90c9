//! Deployment end to end on a tiny trained mug model: export at each precision, load,
//! compare with the checkpoint, reject damaged files, infer from the CLI, few-shot
//! templates.

use candle_core::quantized::gguf_file::{self, Content, Value};
use semcorr::dataset::synth::{generate_dataset, SynthOptions};
use semcorr::dataset::{Dataset, Split};
use semcorr::deploy::{DeployedModel, Precision, Runtime};
use semcorr::embedding::Embedder;
use semcorr::matching::Matcher;
use semcorr::train::{load_network, train, TrainConfig, LAST_CHECKPOINT};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    ckpt: PathBuf,
}

fn synth(dir: &Path, models: usize, seed: u64) {
    let opts = SynthOptions {
        categories: vec!["mug".into()],
        models_per_category: models,
        seed,
        ..Default::default()
    };
    generate_dataset(dir, &opts).unwrap();
}

/// One small trained model shared by every test (training is the slow part).
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        synth(&data, 10, 11);
        let out = dir.path().join("run");
        let sets: Vec<String> = vec![
            format!("data={}", data.display()),
            "category=mug".into(),
            format!("out={}", out.display()),
            "epochs=3".into(),
            "prepare.num_points=256".into(),
            "lr=3e-3".into(),
            "progress=false".into(),
        ];
        train(TrainConfig::load(None, &sets).unwrap(), None).unwrap();
        Fixture {
            ckpt: out.join(LAST_CHECKPOINT),
            data,
            _dir: dir,
        }
    })
}

fn exported(precision: Precision, dir: &Path) -> PathBuf {
    let f = fixture();
    let m = DeployedModel::from_checkpoint(&f.ckpt, precision, None, Split::Train).unwrap();
    let path = dir.join(format!("mug-{precision}.gguf"));
    m.save(&path).unwrap();
    path
}

fn test_clouds() -> Vec<semcorr::Cloud> {
    let ds = Dataset::open(&fixture().data).unwrap();
    let cat = ds.category("mug").unwrap();
    ds.load_split(cat, Split::Test)
        .unwrap()
        .into_iter()
        .map(|m| m.cloud)
        .collect()
}

/// Mean and minimum per-point cosine similarity of two embeddings.
fn cosine(a: &semcorr::embedding::Embeddings, b: &semcorr::embedding::Embeddings) -> (f32, f32) {
    let (mut sum, mut min) = (0f32, f32::MAX);
    for i in 0..a.num_points {
        let (x, y) = (a.row(i), b.row(i));
        let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
        let nx = x.iter().map(|p| p * p).sum::<f32>().sqrt();
        let ny = y.iter().map(|p| p * p).sum::<f32>().sqrt();
        let c = dot / (nx * ny).max(1e-12);
        sum += c;
        min = min.min(c);
    }
    (sum / a.num_points as f32, min)
}

#[test]
fn export_load_gives_the_checkpoint_embeddings() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture();
    let (net, ckpt) = load_network(&f.ckpt).unwrap();
    let reference = net.embedder(ckpt.meta.config.prepare, &candle_core::Device::Cpu);
    let clouds = test_clouds();
    let mut sizes = vec![];
    // (precision, min mean cosine similarity vs f32 network)
    for (p, tol) in [
        (Precision::F32, 1.0),
        (Precision::F16, 0.999),
        (Precision::Q8_0, 0.99),
        (Precision::Q4_0, 0.9),
    ] {
        let path = exported(p, tmp.path());
        sizes.push(std::fs::metadata(&path).unwrap().len());
        let model = DeployedModel::load(&path).unwrap();
        assert_eq!(model.precision, p);
        assert_eq!(model.category.name, "mug");
        assert_eq!(model.prepare.num_points, 256);
        assert!(!model.templates.templates.is_empty());
        let want = reference.embed(&clouds[0]).unwrap();
        let got = Embedder::embed(&model, &clouds[0]).unwrap();
        if p == Precision::F32 {
            let scale = want.data.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
            let diff = want
                .data
                .iter()
                .zip(&got.data)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(diff <= 1e-5 * scale, "f32 differs by {diff}");
        } else {
            let (mean, _) = cosine(&want, &got);
            assert!(mean > tol, "{p}: mean cosine similarity {mean} <= {tol}");
        }
        // The QMatMul runtime computes the same function.
        let q = DeployedModel::load_with(&path, Runtime::Quantized).unwrap();
        let (mean, min) = cosine(&got, &Embedder::embed(&q, &clouds[0]).unwrap());
        assert!(
            mean > 0.999 && min > 0.99,
            "{p}: runtimes differ ({mean}, {min})"
        );
    }
    assert!(
        sizes.windows(2).all(|w| w[1] < w[0]),
        "sizes must shrink f32 > f16 > q8_0 > q4_0: {sizes:?}"
    );
}

/// Rewrites a model file through candle's GGUF reader/writer, editing it on the way.
fn rewrite(
    src: &Path,
    dst: &Path,
    edit_meta: impl Fn(&mut Vec<(String, Value)>),
    drop_tensor: Option<&str>,
) {
    let bytes = std::fs::read(src).unwrap();
    let mut cur = Cursor::new(bytes.as_slice());
    let content = Content::read(&mut cur).unwrap();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let tensors: Vec<(String, _)> = names
        .into_iter()
        .filter(|n| Some(n.as_str()) != drop_tensor)
        .map(|n| {
            let t = content
                .tensor(&mut cur, n, &candle_core::Device::Cpu)
                .unwrap();
            (n.clone(), t)
        })
        .collect();
    let mut meta: Vec<(String, Value)> = content.metadata.into_iter().collect();
    edit_meta(&mut meta);
    let md: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, _)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &md, &ts).unwrap();
    std::fs::write(dst, out.into_inner()).unwrap();
}

fn load_err(path: &Path) -> String {
    DeployedModel::load(path).unwrap_err().to_string()
}

fn set_meta(key: &'static str, value: &'static str) -> impl Fn(&mut Vec<(String, Value)>) {
    move |meta| {
        for (k, v) in meta.iter_mut() {
            if k == key {
                *v = Value::String(value.into());
            }
        }
    }
}

#[test]
fn damaged_files_fail_with_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let good = exported(Precision::Q8_0, tmp.path());
    let bytes = std::fs::read(&good).unwrap();
    let bad = tmp.path().join("bad.gguf");

    // A rewrite that changes nothing still loads (the test helper is sound).
    rewrite(&good, &bad, |_| {}, None);
    DeployedModel::load(&bad).unwrap();

    // One flipped bit inside a weight tensor: only the checksum can see it.
    let content = Content::read(&mut Cursor::new(bytes.as_slice())).unwrap();
    let info = &content.tensor_infos["pointnet.seg.1.weight"];
    let at = (content.tensor_data_offset + info.offset) as usize + 100;
    let mut flipped = bytes.clone();
    flipped[at] ^= 0x04;
    std::fs::write(&bad, &flipped).unwrap();
    let e = load_err(&bad);
    assert!(
        e.contains("checksum mismatch") && e.contains("bad.gguf"),
        "{e}"
    );

    std::fs::write(&bad, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let e = load_err(&bad);
    assert!(e.contains("truncated"), "{e}");
    std::fs::write(&bad, &bytes[..100]).unwrap();
    let e = load_err(&bad);
    assert!(e.contains("truncated"), "{e}");

    let mut magic = bytes.clone();
    magic[..4].copy_from_slice(b"PK\x03\x04");
    std::fs::write(&bad, &magic).unwrap();
    let e = load_err(&bad);
    assert!(e.contains("wrong magic"), "{e}");

    rewrite(&good, &bad, |_| {}, Some("pointnet.head.bias"));
    let e = load_err(&bad);
    assert!(e.contains("missing tensor 'pointnet.head.bias'"), "{e}");

    rewrite(&good, &bad, set_meta("semcorr.precision", "q3_k"), None);
    let e = load_err(&bad);
    assert!(e.contains("unknown precision 'q3_k'"), "{e}");

    rewrite(
        &good,
        &bad,
        set_meta("semcorr.backbone", "{\"kind\":"),
        None,
    );
    let e = load_err(&bad);
    assert!(e.contains("bad metadata: 'semcorr.backbone'"), "{e}");

    // A backbone wider than the stored weights: a shape mismatch, named.
    rewrite(
        &good,
        &bad,
        set_meta("semcorr.backbone", r#"{"kind":"pointnet","embed_dim":64}"#),
        None,
    );
    let e = load_err(&bad);
    assert!(e.contains("has shape") || e.contains("templates"), "{e}");

    // Metadata edited without updating the checksum.
    rewrite(
        &good,
        &bad,
        set_meta("semcorr.category.name", "bottle"),
        None,
    );
    let e = load_err(&bad);
    assert!(e.contains("checksum mismatch"), "{e}");
}

/// `semcorr` with args; panics with stderr on failure.
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

/// `semcorr` with args that must fail; its stderr.
fn semcorr_refused(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_semcorr"))
        .args(args)
        .output()
        .expect("run semcorr");
    assert!(!out.status.success(), "semcorr {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&b[12..16], b"IHDR");
    let be = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
    (be(&b[16..20]), be(&b[20..24]))
}

#[test]
fn cli_export_infer_on_ply_and_pcd_and_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture();
    let model = tmp.path().join("mug.gguf");
    let m = model.to_str().unwrap();
    semcorr(&[
        "export",
        "--checkpoint",
        f.ckpt.to_str().unwrap(),
        "--precision",
        "f16",
        "--out",
        m,
    ]);
    let cloud = &test_clouds()[0];
    for ext in ["ply", "pcd"] {
        let c = tmp.path().join(format!("scan.{ext}"));
        cloud.write(&c).unwrap();
        let json = tmp.path().join(format!("{ext}.json"));
        let png = tmp.path().join(format!("{ext}.png"));
        // Dataset clouds are already in the models' frame: y up, no turn toward a sensor.
        let out = semcorr(&[
            "infer",
            "--model",
            m,
            "--cloud",
            c.to_str().unwrap(),
            "--set",
            "up_axis=+y",
            "--set",
            "face_sensor=false",
            "--set",
            "segment_scene=false",
            "--json",
            json.to_str().unwrap(),
            "--png",
            png.to_str().unwrap(),
        ]);
        assert!(out.contains("score") && out.contains("handle"), "{out}");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let object = &v["objects"][0];
        let matches = object["matches"].as_array().unwrap();
        assert!(!matches.is_empty());
        for k in matches {
            let i = k["index"].as_u64().unwrap() as usize;
            assert!(i < cloud.len());
            let s = k["score"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&s));
        }
        let published = object["keypoints"].as_array().unwrap();
        assert!(!published.is_empty() && published.len() <= matches.len());
        for c in published {
            let i = c["input_index"].as_u64().unwrap() as usize;
            let xyz: Vec<f32> = c["xyz"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(
                xyz,
                cloud.points[i].to_vec(),
                "published in the input frame"
            );
        }
        assert_eq!(png_size(&png), (800, 600));
    }
    let out = semcorr(&["eval", "--data", f.data.to_str().unwrap(), "--model", m]);
    assert!(out.contains("gguf-f16") && out.contains("mug"), "{out}");

    // Unknown precision on the command line.
    let ckpt = f.ckpt.to_str().unwrap();
    let stderr = semcorr_refused(&[
        "export",
        "--checkpoint",
        ckpt,
        "--precision",
        "int3",
        "--out",
        m,
    ]);
    assert!(
        stderr.contains("'int3'") && stderr.contains("q8_0"),
        "{stderr}"
    );

    // How the category rests travels in the file; an unknown way is refused by name.
    let lying = tmp.path().join("lying.gguf");
    let l = lying.to_str().unwrap();
    semcorr(&[
        "export",
        "--checkpoint",
        f.ckpt.to_str().unwrap(),
        "--rest",
        "on-side",
        "--out",
        l,
    ]);
    let rest = DeployedModel::load(&lying).unwrap().templates.rest;
    assert_eq!(rest, semcorr::pose::Rest::OnSide);
    assert!(DeployedModel::load(&model)
        .unwrap()
        .templates
        .rest
        .is_upright());
    let stderr = semcorr_refused(&[
        "export",
        "--checkpoint",
        ckpt,
        "--rest",
        "sideways",
        "--out",
        l,
    ]);
    assert!(
        stderr.contains("--rest") && stderr.contains("'sideways'"),
        "{stderr}"
    );
}

#[test]
fn matcher_finds_annotated_keypoints_on_training_models() {
    let tmp = tempfile::tempdir().unwrap();
    let model = DeployedModel::load(exported(Precision::F32, tmp.path())).unwrap();
    let ds = Dataset::open(&fixture().data).unwrap();
    let cat = ds.category("mug").unwrap();
    let train = ds.load_split(cat, Split::Train).unwrap();
    let matcher = Matcher::default();
    let (mut hits, mut total) = (0, 0);
    for m in &train {
        let found = model.find_keypoints(&m.cloud, &matcher).unwrap();
        assert_eq!(found.len(), model.templates.templates.len());
        for k in &m.annotation.keypoints {
            let Some(f) = found.iter().find(|f| f.semantic_id == k.semantic_id) else {
                continue;
            };
            total += 1;
            let d = semcorr::cloud::dist2(&f.xyz, &m.cloud.points[k.point_index]).sqrt();
            hits += usize::from(d < 0.1);
        }
    }
    // 3 epochs of training: far from perfect, far better than chance (~3%).
    assert!(hits * 4 > total, "{hits} of {total} within 0.1");
}

#[test]
fn few_shot_templates_replace_the_template_set() {
    let tmp = tempfile::tempdir().unwrap();
    let path = exported(Precision::Q8_0, tmp.path());
    let mut model = DeployedModel::load(&path).unwrap();
    let before = model.templates.clone();
    let user = tmp.path().join("user");
    synth(&user, 4, 99);
    model.retemplate(&user, Split::Train, None).unwrap();
    assert_ne!(model.templates, before);
    assert!(model.templates.source.contains("user"));
    let out = tmp.path().join("few.gguf");
    // Through the CLI as well; the file loads and carries the new templates.
    semcorr(&[
        "templates",
        "--model",
        path.to_str().unwrap(),
        "--data",
        user.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let again = DeployedModel::load(&out).unwrap();
    assert_eq!(again.templates, model.templates);
    assert_eq!(again.weights().len(), model.weights().len());
    assert_eq!(again.name(), "gguf-q8_0");
}

/// The preprocessing travels with the model: a non-default setting given to training is in
/// the checkpoint's config and in the exported file, so `eval --model` and the node use it.
#[test]
fn preprocessing_travels_from_training_config_to_the_exported_file() {
    use semcorr::cloud::{NormalizationMode, SamplingMode};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth(&data, 6, 5);
    let out = dir.path().join("run");
    let sets: Vec<String> = vec![
        format!("data={}", data.display()),
        "category=mug".into(),
        format!("out={}", out.display()),
        "epochs=1".into(),
        "prepare.num_points=128".into(),
        "prepare.normalization=unit_sphere".into(),
        "prepare.sampling=random".into(),
        "progress=false".into(),
    ];
    train(TrainConfig::load(None, &sets).unwrap(), None).unwrap();
    let ckpt = out.join(LAST_CHECKPOINT);
    let (_, stored) = load_network(&ckpt).unwrap();
    let prepare = stored.meta.config.prepare;
    assert_eq!(prepare.normalization, NormalizationMode::UnitSphere);
    assert_eq!(prepare.sampling, SamplingMode::Random);
    let path = dir.path().join("m.gguf");
    DeployedModel::from_checkpoint(&ckpt, Precision::Q8_0, None, Split::Train)
        .unwrap()
        .save(&path)
        .unwrap();
    let model = DeployedModel::load(&path).unwrap();
    assert_eq!(model.prepare, prepare);
    assert_eq!(model.prepare.num_points, 128);
    // Pose fitting's inputs travel too: canonical template positions (in the normalised
    // frame: inside the unit sphere here) and the category's typical size (dataset units).
    for t in &model.templates.templates {
        let p = t.position.expect("canonical position");
        assert!(p.iter().map(|c| c * c).sum::<f32>() <= 1.0 + 1e-3, "{p:?}");
    }
    let size = model.templates.typical_size.unwrap();
    assert!((size - 1.0).abs() < 0.01, "{size}");
    // A bad key in the block is named.
    let e = TrainConfig::load(None, &["prepare.sampling=fastest".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("sampling") || e.contains("fastest"), "{e}");
}

/// A preparation shared between models gives the embeddings each model's own preparation
/// gives, and a preparation for another point count is refused, naming both counts.
#[test]
fn shared_preparation_gives_the_same_embeddings() {
    let model = DeployedModel::load(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mug_partial.gguf"),
    )
    .unwrap();
    let clouds = test_clouds();
    let own = model.embed_batch(&clouds).unwrap();
    let shared = model
        .forward_prepared(model.prepare_batch(&clouds).unwrap())
        .unwrap();
    for ((_, a), (_, b)) in own.iter().zip(&shared) {
        assert_eq!(a, b);
    }
    let mut other = model.prepare;
    other.num_points /= 2;
    let wrong = semcorr::cloud::prepare(&clouds[0], &other, 0, "c").unwrap();
    let e = model.forward_prepared(vec![wrong]).unwrap_err().to_string();
    assert!(
        e.contains(&format!("{}", other.num_points))
            && e.contains(&format!("{}", model.prepare.num_points)),
        "{e}"
    );
}
