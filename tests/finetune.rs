//! Shared backbones and fine-tuning on small procedural data: one run over several
//! categories makes a backbone, `init` starts a held-out category from it (all layers or the
//! body only), and a tiny fine-tune beats the same run from scratch on that category.

use semcorr::dataset::synth::{generate_dataset, SynthOptions};
use semcorr::dataset::{Dataset, Split};
use semcorr::eval::evaluate_models;
use semcorr::train::{load_network, train, Checkpoint, TrainConfig, BACKBONE_FILE};
use std::path::Path;

/// Vessels share parts (rims, bodies, bases): what a backbone can carry over to a mug.
const BACKBONE_CATEGORIES: &str = "bottle,can,pitcher";
const HELD_OUT: &str = "mug";

fn synth(dir: &Path) {
    let opts = SynthOptions {
        categories: vec![
            "bottle".into(),
            "can".into(),
            "pitcher".into(),
            HELD_OUT.into(),
        ],
        models_per_category: 20,
        seed: 23,
        ..Default::default()
    };
    generate_dataset(dir, &opts).unwrap();
}

fn config(data: &Path, out: &Path, category: &str, extra: &[String]) -> TrainConfig {
    let mut sets: Vec<String> = vec![
        format!("data={}", data.display()),
        format!("category={category}"),
        format!("out={}", out.display()),
        "prepare.num_points=256".into(),
        "backbone.kind=pointnet".into(),
        "backbone.global=[32,64,128]".into(),
        "backbone.seg=[128,64]".into(),
        "progress=false".into(),
    ];
    sets.extend(extra.iter().cloned());
    TrainConfig::load(None, &sets).unwrap()
}

fn test_mge(run: &Path, data: &Path) -> f64 {
    let ds = Dataset::open(data).unwrap();
    let cat = ds.category(HELD_OUT).unwrap();
    let test = ds.load_split(cat, Split::Test).unwrap();
    let (net, ckpt) = load_network(&run.join("best.safetensors")).unwrap();
    let embedder = net.embedder(ckpt.meta.config.prepare, &candle_core::Device::Cpu);
    evaluate_models(&cat.class_id, HELD_OUT, &test, &embedder)
        .unwrap()
        .mge
}

fn max_difference(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn a_tiny_fine_tune_beats_the_same_run_from_scratch() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data);
    let backbone_run = tmp.path().join("backbone");
    let outcome = train(
        config(
            &data,
            &backbone_run,
            BACKBONE_CATEGORIES,
            &["epochs=12".into(), "lr=3e-3".into(), "val_every=4".into()],
        ),
        None,
    )
    .unwrap();
    assert!(
        outcome.best_val_mge.is_some(),
        "validated over the categories"
    );
    let backbone = backbone_run.join(BACKBONE_FILE);
    let stored = Checkpoint::load(&backbone).unwrap();
    assert_eq!(
        stored.meta.margins_by_category.len(),
        3,
        "a table per category"
    );
    assert!(
        stored.tensors.keys().all(|k| k.starts_with("model.")),
        "the backbone file carries no optimizer state"
    );

    // The held-out category from 4 models: the same run, seeded or from the backbone.
    let few = |out: &Path, init: Option<&Path>| {
        let mut extra = vec![
            "train_models=4".into(),
            "epochs=8".into(),
            "lr=1e-3".into(),
            "lr_schedule=cosine".into(),
        ];
        if let Some(init) = init {
            extra.push(format!("init={}", init.display()));
        }
        train(config(&data, out, HELD_OUT, &extra), None).unwrap();
        test_mge(out, &data)
    };
    let scratch = few(&tmp.path().join("scratch"), None);
    let tuned = few(&tmp.path().join("tuned"), Some(&backbone));
    println!("held-out {HELD_OUT}: fine-tuned test mGE {tuned:.4}, from scratch {scratch:.4}");
    assert!(
        tuned < 0.9 * scratch,
        "fine-tuned test mGE {tuned:.4} against {scratch:.4} from scratch"
    );
}

#[test]
fn init_takes_the_architecture_and_the_body_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data);
    let source = tmp.path().join("source");
    train(config(&data, &source, "bottle", &["epochs=2".into()]), None).unwrap();
    let backbone = source.join(BACKBONE_FILE);
    // Nearly no step: what is loaded shows through. The config asks for another width,
    // which the init file overrides.
    let body = tmp.path().join("body");
    let run = train(
        config(
            &data,
            &body,
            HELD_OUT,
            &[
                "epochs=1".into(),
                "lr=1e-9".into(),
                "backbone.seg=[32]".into(),
                format!("init={}", backbone.display()),
                "init_layers=body".into(),
            ],
        ),
        None,
    );
    run.unwrap();
    let (from, _) = load_network(&backbone).unwrap();
    let (tuned, ckpt) = load_network(&body.join("last.safetensors")).unwrap();
    assert_eq!(ckpt.meta.config.backbone, from.backbone.config().clone());
    let (a, b) = (from.weights(), tuned.weights());
    let mut checked = 0;
    for (name, ta) in &a {
        if name.contains("running") {
            continue; // batch statistics move with every forward in train mode
        }
        let d = max_difference(ta, &b[name]);
        if name.starts_with("head.") {
            // Biases start at zero either way; the weights tell.
            assert!(
                name.ends_with("bias") || d > 1e-3,
                "{name} was loaded, not freshly initialised"
            );
        } else {
            assert!(d < 1e-5, "{name} differs by {d} from the backbone");
            checked += 1;
        }
    }
    assert!(checked > 4, "body weights compared: {checked}");
}

#[test]
fn bad_fine_tuning_configs_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data);
    let out = tmp.path().join("run");
    let refused = |category: &str, extra: &[&str]| {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        train(config(&data, &out, category, &extra), None)
            .err()
            .unwrap()
            .to_string()
    };
    let e = refused(HELD_OUT, &["init=/nonexistent/backbone.safetensors"]);
    assert!(e.contains("'init'") && e.contains("nonexistent"), "{e}");
    let e = refused(HELD_OUT, &["train_models=50"]);
    assert!(e.contains("'train_models'") && e.contains("50"), "{e}");
    let e = refused("mug,can,mug", &[]);
    assert!(e.contains("'mug'") && e.contains("twice"), "{e}");
    let e = refused("mug,teapot", &[]);
    assert!(e.contains("teapot"), "{e}");
}
