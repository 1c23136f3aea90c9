//! KeypointNet-format datasets: real annotation files, round trips and bad input.

use semcorr::dataset::{
    read_annotations, write_annotations, write_model_cloud, write_splits, Dataset, Keypoint,
    ModelAnnotation, ModelKey, Split, Splits, Symmetries,
};
use semcorr::Cloud;
use std::path::{Path, PathBuf};

/// The real KeypointNet annotation files kept beside the project (absent in some checkouts).
fn fixtures() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/keypointnet");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: {} not found", dir.display());
        None
    }
}

#[test]
fn real_keypointnet_annotations_parse() {
    let Some(dir) = fixtures() else { return };
    for (file, class_id, models, ids) in [
        ("mug.json", "03797390", 186, 11),
        ("cap.json", "02954340", 38, 6),
        ("helmet.json", "03513137", 90, 9),
    ] {
        let list = read_annotations(dir.join(file)).unwrap();
        assert_eq!(list.len(), models, "{file}");
        assert!(list.iter().all(|m| m.class_id == class_id));
        let mut sem: Vec<u32> = list
            .iter()
            .flat_map(|m| m.keypoints.iter().map(|k| k.semantic_id))
            .collect();
        sem.sort_unstable();
        sem.dedup();
        assert_eq!(sem.len(), ids, "{file}");
        // Every point index addresses a 2048-point cloud and mesh info survives parsing.
        assert!(list
            .iter()
            .flat_map(|m| &m.keypoints)
            .all(|k| k.point_index < 2048 && k.mesh.is_some()));
    }
}

#[test]
fn real_annotations_round_trip() {
    let Some(dir) = fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let original = read_annotations(dir.join("helmet.json")).unwrap();
    let copy = tmp.path().join("helmet.json");
    write_annotations(&copy, &original).unwrap();
    assert_eq!(read_annotations(&copy).unwrap(), original);
}

/// A two-model category "box" with clouds on disk and a split of each kind.
fn tiny_dataset(root: &Path) -> Vec<ModelAnnotation> {
    let clouds: Vec<Cloud> = (0..3)
        .map(|m| {
            let mut c = Cloud::new(
                (0..50)
                    .map(|i| [i as f32 * 0.01, m as f32 * 0.1, 0.25])
                    .collect(),
            );
            c.colors = Some(vec![[10, 20, 30]; 50]);
            c
        })
        .collect();
    let models: Vec<ModelAnnotation> = clouds
        .iter()
        .enumerate()
        .map(|(m, cloud)| ModelAnnotation {
            class_id: "90000099".into(),
            model_id: format!("model{m}"),
            keypoints: [3usize, 40]
                .iter()
                .enumerate()
                .map(|(s, &i)| Keypoint {
                    xyz: cloud.points[i],
                    rgb: [255, 0, 0],
                    semantic_id: s as u32,
                    point_index: i,
                    mesh: None,
                })
                .collect(),
            symmetries: Symmetries::default(),
        })
        .collect();
    for (m, c) in models.iter().zip(&clouds) {
        write_model_cloud(root, &m.class_id, &m.model_id, c).unwrap();
    }
    write_annotations(root.join("annotations/box.json"), &models).unwrap();
    let keys: Vec<ModelKey> = models.iter().map(|m| m.key()).collect();
    write_splits(
        root,
        &Splits {
            train: vec![keys[0].clone()],
            val: vec![keys[1].clone()],
            test: vec![keys[2].clone()],
        },
    )
    .unwrap();
    models
}

#[test]
fn dataset_round_trip_with_clouds_and_splits() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tiny_dataset(tmp.path());
    let ds = Dataset::open(tmp.path()).unwrap();
    let cat = ds.category("box").unwrap();
    assert_eq!(cat.class_id, "90000099");
    assert_eq!(ds.category("90000099").unwrap().name, "box");
    assert_eq!(cat.models, models);
    assert_eq!(cat.semantic_ids(), vec![0, 1]);
    let test = ds.load_split(cat, Split::Test).unwrap();
    assert_eq!(test.len(), 1);
    assert_eq!(test[0].annotation.model_id, "model2");
    assert_eq!(test[0].cloud.len(), 50);
    assert_eq!(test[0].cloud.colors.as_ref().unwrap()[7], [10, 20, 30]);
    assert_eq!(ds.split_models(cat, Split::Train)[0].model_id, "model0");
}

#[test]
fn unknown_category_names_the_known_ones() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_dataset(tmp.path());
    let ds = Dataset::open(tmp.path()).unwrap();
    let err = ds.category("kettle").unwrap_err().to_string();
    assert!(err.contains("unknown category 'kettle'"), "{err}");
    assert!(err.contains("box (90000099)"), "{err}");
}

#[test]
fn point_index_out_of_range_names_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let mut models = tiny_dataset(tmp.path());
    models[1].keypoints[1].point_index = 50;
    write_annotations(tmp.path().join("annotations/box.json"), &models).unwrap();
    let ds = Dataset::open(tmp.path()).unwrap();
    let err = ds.load_model(&models[1]).unwrap_err().to_string();
    assert!(err.contains("90000099-model1"), "{err}");
    assert!(
        err.contains("point_index 50 out of range (cloud has 50 points)"),
        "{err}"
    );
}

#[test]
fn keypoint_off_its_cloud_point_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let mut models = tiny_dataset(tmp.path());
    models[0].keypoints[0].xyz[2] += 0.05;
    let ds = Dataset::open(tmp.path()).unwrap();
    let err = ds.load_model(&models[0]).unwrap_err().to_string();
    assert!(
        err.contains("model0") && err.contains("from cloud point 3"),
        "{err}"
    );
}

#[test]
fn duplicate_semantic_ids_are_rejected_on_read() {
    let tmp = tempfile::tempdir().unwrap();
    let mut models = tiny_dataset(tmp.path());
    models[2].keypoints[1].semantic_id = 0;
    let path = tmp.path().join("annotations/box.json");
    write_annotations(&path, &models).unwrap();
    let err = Dataset::open(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("box.json"), "{err}");
    assert!(
        err.contains("model 90000099-model2: keypoint 1: duplicate semantic_id 0"),
        "{err}"
    );
}

#[test]
fn malformed_files_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_dataset(tmp.path());
    std::fs::write(tmp.path().join("splits/val.txt"), "no_dash_here\n").unwrap();
    let err = Dataset::open(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("val.txt") && err.contains("line 1"), "{err}");

    std::fs::write(tmp.path().join("annotations/box.json"), "[{\"class_id\": 3").unwrap();
    let err = Dataset::open(tmp.path()).unwrap_err().to_string();
    assert!(
        err.contains("box.json") && err.contains("not a KeypointNet annotation list"),
        "{err}"
    );

    let err = Dataset::open(tmp.path().join("missing"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing/annotations"), "{err}");
}

#[test]
fn truncated_cloud_names_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tiny_dataset(tmp.path());
    let ds = Dataset::open(tmp.path()).unwrap();
    let path = ds.cloud_path("90000099", "model1");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    let err = ds.load_model(&models[1]).unwrap_err().to_string();
    assert!(err.contains("model1.pcd"), "{err}");
}

#[test]
fn split_names_parse() {
    assert_eq!("val".parse::<Split>().unwrap(), Split::Val);
    assert!("validation"
        .parse::<Split>()
        .unwrap_err()
        .to_string()
        .contains("validation"));
}
