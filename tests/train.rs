//! Training end to end on small procedural data: the loss falls, the network beats random
//! embeddings, resuming equals training straight through, and bad configs are named.

use semcorr::dataset::synth::{generate_dataset, SynthOptions};
use semcorr::dataset::{Dataset, Split};
use semcorr::eval::{evaluate_models, RandomEmbedder};
use semcorr::train::{load_network, train, TrainConfig, LAST_CHECKPOINT};
use std::path::Path;

fn synth(dir: &Path, models: usize) {
    let opts = SynthOptions {
        categories: vec!["mug".into()],
        models_per_category: models,
        seed: 11,
        ..Default::default()
    };
    generate_dataset(dir, &opts).unwrap();
}

fn config(data: &Path, out: &Path, epochs: usize, extra: &[&str]) -> TrainConfig {
    let mut sets: Vec<String> = vec![
        format!("data={}", data.display()),
        "category=mug".into(),
        format!("out={}", out.display()),
        format!("epochs={epochs}"),
        "prepare.num_points=256".into(),
        "progress=false".into(),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    TrainConfig::load(None, &sets).unwrap()
}

#[test]
fn tiny_run_lowers_loss_and_beats_random() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 16);
    let out = tmp.path().join("run");
    let outcome = train(config(&data, &out, 8, &["lr=3e-3", "val_every=4"]), None).unwrap();
    let h = &outcome.history;
    assert_eq!(h.len(), 8);
    assert!(
        h.last().unwrap().train_loss < 0.5 * h[0].train_loss,
        "loss did not fall: {:?}",
        h.iter().map(|m| m.train_loss).collect::<Vec<_>>()
    );
    for f in [
        "metrics.csv",
        "curves.png",
        "last.safetensors",
        "best.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 9);

    let ds = Dataset::open(&data).unwrap();
    let cat = ds.category("mug").unwrap();
    let test = ds.load_split(cat, Split::Test).unwrap();
    let (net, ckpt) = load_network(&out.join("best.safetensors")).unwrap();
    let trained = evaluate_models(
        &cat.class_id,
        "mug",
        &test,
        &net.embedder(ckpt.meta.config.prepare, &candle_core::Device::Cpu),
    )
    .unwrap();
    let random = evaluate_models(&cat.class_id, "mug", &test, &RandomEmbedder::new(0)).unwrap();
    assert!(
        trained.mge < 0.6 * random.mge,
        "trained mGE {} vs random {}",
        trained.mge,
        random.mge
    );
}

#[test]
fn resume_continues_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 10);
    let straight = tmp.path().join("straight");
    train(
        config(&data, &straight, 4, &["augment.rotate_up=true"]),
        None,
    )
    .unwrap();
    let split = tmp.path().join("split");
    train(config(&data, &split, 2, &["augment.rotate_up=true"]), None).unwrap();
    let resumed = train(
        config(&data, &split, 4, &[]),
        Some(&split.join(LAST_CHECKPOINT)),
    )
    .unwrap();
    assert_eq!(resumed.history.len(), 4);
    let (a, _) = load_network(&straight.join(LAST_CHECKPOINT)).unwrap();
    let (b, ckpt) = load_network(&split.join(LAST_CHECKPOINT)).unwrap();
    assert_eq!(ckpt.meta.epoch, 4);
    assert!(
        ckpt.meta.config.augment.rotate_up,
        "the checkpoint's config wins"
    );
    let (wa, wb) = (a.weights(), b.weights());
    assert_eq!(wa.len(), wb.len());
    for (name, ta) in &wa {
        let diff = (ta - &wb[name])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "{name} differs by {diff}");
    }
}

#[test]
fn bad_configs_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere");
    let err = train(config(&missing, &tmp.path().join("r"), 1, &[]), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("'data'") && err.contains("nowhere"), "{err}");

    let data = tmp.path().join("data");
    synth(&data, 6);
    let err = train(
        config(&data, &tmp.path().join("r"), 1, &["category=kettle"]),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("kettle"), "{err}");

    // A category whose models carry no keypoints cannot be trained.
    let ann = data.join("annotations/mug.json");
    let mut models = semcorr::dataset::read_annotations(&ann).unwrap();
    for m in &mut models {
        m.keypoints.clear();
        m.symmetries = Default::default();
    }
    semcorr::dataset::write_annotations(&ann, &models).unwrap();
    let err = train(config(&data, &tmp.path().join("r"), 1, &[]), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no annotated training models"), "{err}");

    let err = TrainConfig::load(
        None,
        &["data=x".into(), "category=mug".into(), "lr=-1".into()],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("'lr'"), "{err}");
}

/// Mean embedding distance between keypoints of different correspondence sets on the test
/// models: how far apart the network keeps different semantics.
fn between_set_spread(run: &Path, data: &Path) -> f64 {
    use semcorr::embedding::Embedder;
    let ds = Dataset::open(data).unwrap();
    let cat = ds.category("mug").unwrap();
    let (net, ckpt) = load_network(&run.join(LAST_CHECKPOINT)).unwrap();
    let embedder = net.embedder(ckpt.meta.config.prepare, &candle_core::Device::Cpu);
    let (mut sum, mut count) = (0.0, 0);
    for m in ds.load_split(cat, Split::Test).unwrap() {
        let e = embedder.embed(&m.cloud).unwrap();
        let kps = &m.annotation.keypoints;
        for (i, a) in kps.iter().enumerate() {
            for b in &kps[i + 1..] {
                let d: f32 = e
                    .row(a.point_index)
                    .iter()
                    .zip(e.row(b.point_index))
                    .map(|(x, y)| (x - y) * (x - y))
                    .sum();
                sum += d.sqrt() as f64;
                count += 1;
            }
        }
    }
    sum / count as f64
}

#[test]
fn pull_only_collapses_and_the_push_prevents_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 12);
    let mut spread = Vec::new();
    for margin in ["geodesic", "none"] {
        let out = tmp.path().join(margin);
        let set = format!("loss.margin={margin}");
        // Long enough for the pull to shrink embedding distances below the margins, where
        // the push starts to act; before that both runs are the same.
        let cfg = config(
            &data,
            &out,
            30,
            &["lr=5e-3", "val_every=30", "prepare.num_points=128", &set],
        );
        train(cfg, None).unwrap();
        spread.push(between_set_spread(&out, &data));
    }
    // Geodesic margins are 0.1-1 apart; without a push everything drifts together.
    eprintln!("between-set embedding spread (geodesic, none): {spread:?}");
    assert!(spread[0] > 0.1, "the push keeps sets apart: {spread:?}");
    assert!(
        spread[1] < 0.2 * spread[0],
        "pull only collapses: {spread:?}"
    );
}
