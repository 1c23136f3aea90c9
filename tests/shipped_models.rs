//! The default models in `models/`: each places most keypoints of unseen procedural test
//! clouds near the truth (geodesic error at most 0.10 of the bounding-box diagonal).

use semcorr::dataset::synth::{generate_dataset, SynthOptions};
use semcorr::dataset::{Dataset, Split};
use semcorr::deploy::DeployedModel;
use semcorr::geodesic::{KnnGraph, DEFAULT_K};
use semcorr::matching::Matcher;
use std::path::Path;

#[test]
fn shipped_models_place_keypoints_within_a_tenth_of_the_diagonal() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 3, "at least three default models ship");
    let tmp = tempfile::tempdir().unwrap();
    for path in paths {
        assert!(
            std::fs::metadata(&path).unwrap().len() <= 2_000_000,
            "{} over 2 MB",
            path.display()
        );
        let model = DeployedModel::load(&path).unwrap();
        let name = model.category.name.clone();
        // The models were trained on `semcorr synth --models 40 --seed 0` (the lying knife
        // on 100 single views); its test split was never seen in training. A category that lies on its
        // side is only ever seen so: single views show it lying.
        let data = tmp.path().join(&name);
        let lying = model.templates.rest == semcorr::pose::Rest::OnSide;
        let opts = SynthOptions {
            categories: vec![name.clone()],
            models_per_category: if lying { 100 } else { 40 },
            seed: 0,
            partial: lying,
            ..Default::default()
        };
        generate_dataset(&data, &opts).unwrap();
        let ds = Dataset::open(&data).unwrap();
        let test = ds
            .load_split(ds.category(&name).unwrap(), Split::Test)
            .unwrap();
        let matcher = Matcher::default();
        let (mut near, mut near05, mut total, mut accepted) = (0, 0, 0, 0);
        for m in &test {
            let matches = model.find_keypoints(&m.cloud, &matcher).unwrap();
            let graph = KnnGraph::build(&m.cloud.points, DEFAULT_K);
            for kp in &m.annotation.keypoints {
                let Some(found) = matches.iter().find(|x| x.semantic_id == kp.semantic_id) else {
                    continue;
                };
                let geo = graph.from_sources(&[kp.point_index]).unwrap();
                total += 1;
                near += usize::from(geo.get(0, found.index) <= 0.10);
                near05 += usize::from(geo.get(0, found.index) <= 0.05);
                accepted += usize::from(found.accepted);
            }
        }
        let fraction = near as f64 / total as f64;
        eprintln!(
            "{name}: {near}/{total} = {:.1}% of keypoints within 0.10, {:.1}% within 0.05; \
             {accepted} accepted by the matcher",
            100.0 * fraction,
            100.0 * near05 as f64 / total as f64
        );
        assert!(
            fraction >= 0.8,
            "{name}: only {:.1}% within 0.10",
            100.0 * fraction
        );
    }
}

/// Orientation hypotheses undo a turn about the up axis: the node's mug model, run at 8
/// yaws on unseen complete mugs turned by 90 degrees, picks the hypothesis that turns them
/// back (270 degrees), and on unturned mugs keeps 0. A mug without a handle looks the same
/// at every yaw, so one miss of each is allowed. Its embeddings then cover every point.
#[test]
fn yaw_search_turns_objects_back_to_the_canonical_pose() {
    use semcorr::cloud::rotation::rotate_cloud;
    use semcorr::deploy::YawSearch;
    use semcorr::embedding::Embedder;
    let model =
        DeployedModel::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mug_partial.gguf"))
            .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        categories: vec!["mug".into()],
        models_per_category: 40,
        seed: 0,
        ..Default::default()
    };
    generate_dataset(tmp.path(), &opts).unwrap();
    let ds = Dataset::open(tmp.path()).unwrap();
    let test = ds
        .load_split(ds.category("mug").unwrap(), Split::Test)
        .unwrap();
    let search = YawSearch {
        model: &model,
        hypotheses: 8,
        matcher: Matcher::default(),
        criterion: Default::default(),
    };
    let quarter = nalgebra::Rotation3::from_axis_angle(
        &nalgebra::Vector3::y_axis(),
        std::f32::consts::FRAC_PI_2,
    )
    .into_inner();
    let (mut kept, mut undone) = (0, 0);
    for m in &test {
        let plain = search.search(&m.cloud).unwrap();
        kept += usize::from(plain.yaw == 0.0);
        let mut turned = m.cloud.clone();
        rotate_cloud(&mut turned, &quarter);
        let choice = search.search(&turned).unwrap();
        eprintln!(
            "{}: canonical -> {:.0} deg, turned 90 -> {:.0} deg (agreement {:.2})",
            m.annotation.model_id,
            plain.yaw.to_degrees(),
            choice.yaw.to_degrees(),
            choice.agreement
        );
        undone += usize::from((choice.yaw.to_degrees() - 270.0).abs() < 1.0);
        let e = search.embed(&turned).unwrap();
        assert_eq!(e.num_points, turned.len());
    }
    assert!(kept + 1 >= test.len(), "{kept} of {} kept at 0", test.len());
    assert!(
        undone + 1 >= test.len(),
        "{undone} of {} turned back",
        test.len()
    );
}

/// `models/backbone-pointnet.safetensors`, the pretrained backbone `train --init` starts
/// from: weights only, every procedural category, yaw canonicalised; on clouds of one of
/// them turned to random yaws it embeds far better than raw coordinates.
#[test]
fn the_shipped_backbone_embeds_turned_clouds() {
    use semcorr::cloud::RotationMode;
    use semcorr::eval::{evaluate_models_posed, Posing, XyzEmbedder};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/backbone-pointnet.safetensors");
    assert!(
        std::fs::metadata(&path).unwrap().len() <= 2_000_000,
        "over 2 MB"
    );
    let (net, ckpt) = semcorr::train::load_network(&path).unwrap();
    let cfg = &ckpt.meta.config;
    assert_eq!(
        cfg.categories().len(),
        semcorr::dataset::synth::category_names().len()
    );
    assert!(cfg.prepare.canonical_yaw);
    assert!(ckpt.tensors.keys().all(|k| k.starts_with("model.")));

    let tmp = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        categories: vec!["airplane".into()],
        models_per_category: 20,
        seed: 41, // models the backbone never saw
        ..Default::default()
    };
    generate_dataset(tmp.path(), &opts).unwrap();
    let ds = Dataset::open(tmp.path()).unwrap();
    let cat = ds.category("airplane").unwrap();
    let models = ds.load_split(cat, Split::Train).unwrap();
    let posing = Posing {
        rotation: RotationMode::Yaw,
        seed: 3,
        yaw_in_data: false,
    };
    let embedder = net.embedder(cfg.prepare, &candle_core::Device::Cpu);
    let learnt = evaluate_models_posed(&cat.class_id, "airplane", &models, &embedder, posing)
        .unwrap()
        .mge;
    let raw = evaluate_models_posed(&cat.class_id, "airplane", &models, &XyzEmbedder, posing)
        .unwrap()
        .mge;
    eprintln!("airplanes at random yaws: backbone mGE {learnt:.4}, raw coordinates {raw:.4}");
    assert!(
        learnt < 0.6 * raw,
        "backbone {learnt:.4} against raw {raw:.4}"
    );
}
