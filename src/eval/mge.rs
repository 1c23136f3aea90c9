//! Mean geodesic error (mGE) and PCK, computed as the reference code computes them.
//!
//! Per category, for each correspondence set (semantic id) keep the models that have it;
//! for each ordered pair (i, j), i != j, take model i's embedding at its annotated point,
//! find the point x of model j with the nearest embedding (Euclidean, brute force, first
//! index on ties as `argmin` does) and score `geodesic_j(x, annotated point of j)`. A set's
//! error is the mean over its pairs, sets with fewer than two models are skipped, and the
//! category's mGE is the unweighted mean over sets (so small sets weigh as much as big ones).

use super::{CategoryReport, EvalReport};
use crate::cloud::rotation::{rotate_cloud, RotationMode};
use crate::cloud::Cloud;
use crate::dataset::{AnnotatedModel, Category, Dataset, Split};
use crate::embedding::{nearest_row, Embedder, Embeddings};
use crate::error::{Error, Result};
use crate::geodesic::{DistanceMatrix, KnnGraph, DEFAULT_K};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// PCK thresholds: 0.00, 0.01, ..., 0.10 in geodesic units (bbox diagonal about 1), as in
/// KeypointNet's benchmark. A pair counts as correct when `error <= t`, so PCK@0 is the
/// fraction of exact hits (the matched point is the annotated point itself).
pub const PCK_THRESHOLDS: [f64; 11] = [
    0.00, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10,
];

/// Geodesic rows from `sources` on one cloud; a parameter so tests can substitute exact
/// distances for the k-NN graph.
type GeodesicFn = dyn Fn(&Cloud, &[usize]) -> Result<DistanceMatrix> + Sync;

/// Geodesics on the reference's graph: k-NN with `DEFAULT_K`, Dijkstra from the sources.
fn knn_geodesics(cloud: &Cloud, sources: &[usize]) -> Result<DistanceMatrix> {
    KnnGraph::build(&cloud.points, DEFAULT_K).from_sources(sources)
}

/// How test clouds are posed before they are embedded (`eval --rotate`). Only the
/// embedder sees the turned clouds: geodesics do not change under a rotation, so they are
/// computed once on the clouds as stored.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Posing {
    pub rotation: RotationMode,
    pub seed: u64,
    /// The views already stand at a uniformly random yaw before their camera (`synth
    /// --view-frame`): only the rest of each rotation is applied
    /// ([`RotationMode::sample_without_yaw`]).
    pub yaw_in_data: bool,
}

impl Posing {
    /// The canonical pose.
    pub const CANONICAL: Posing = Posing {
        rotation: RotationMode::None,
        seed: 0,
        yaw_in_data: false,
    };

    /// One rotation per model of category `class_id`, drawn from a stream seeded by the
    /// seed and the class id, so a model's pose does not depend on which other categories
    /// are evaluated with it. None at all for the canonical pose.
    fn rotations(&self, class_id: &str, n: usize) -> Vec<nalgebra::Matrix3<f32>> {
        use rand::SeedableRng;
        if self.rotation == RotationMode::None {
            return Vec::new();
        }
        // FNV-1a: a stable hash of the class id (std's hasher may change between releases).
        let id_hash = class_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed ^ id_hash);
        (0..n)
            .map(|_| {
                if self.yaw_in_data {
                    self.rotation.sample_without_yaw(&mut rng)
                } else {
                    self.rotation.sample(&mut rng)
                }
            })
            .collect()
    }
}

/// Evaluates one category: `models` are its (test) models with their clouds.
pub fn evaluate_models(
    class_id: &str,
    name: &str,
    models: &[AnnotatedModel],
    embedder: &dyn Embedder,
) -> Result<CategoryReport> {
    evaluate_models_posed(class_id, name, models, embedder, Posing::CANONICAL)
}

/// [`evaluate_models`] with every cloud turned as `posing` says before it is embedded.
pub fn evaluate_models_posed(
    class_id: &str,
    name: &str,
    models: &[AnnotatedModel],
    embedder: &dyn Embedder,
    posing: Posing,
) -> Result<CategoryReport> {
    evaluate_models_with(class_id, name, models, embedder, &knn_geodesics, posing)
}

/// Evaluates `categories` on their models of `split`, posed as `posing` says; `mean_mge`
/// is the unweighted mean over categories. Categories run one after another (each is
/// parallel inside).
pub fn evaluate(
    dataset: &Dataset,
    categories: &[&Category],
    split: Split,
    embedder: &dyn Embedder,
    posing: Posing,
) -> Result<EvalReport> {
    if categories.is_empty() {
        return Err(Error::invalid("evaluation: no categories given"));
    }
    let mut reports = Vec::with_capacity(categories.len());
    for category in categories {
        let models = dataset.load_split(category, split)?;
        if models.is_empty() {
            return Err(Error::invalid(format!(
                "category {} ({}): no annotated models in the {} split",
                category.name,
                category.class_id,
                split.name()
            )));
        }
        let report = evaluate_models_posed(
            &category.class_id,
            &category.name,
            &models,
            embedder,
            posing,
        )?;
        tracing::info!(
            category = %category.name,
            mge = report.mge,
            sets = report.sets,
            pairs = report.pairs,
            "evaluated"
        );
        reports.push(report);
    }
    let mut report = EvalReport::from_categories(reports)?;
    report.rotation = posing.rotation;
    report.rotation_seed = posing.seed;
    report.rotation_yaw_in_data = posing.yaw_in_data;
    Ok(report)
}

/// What evaluation needs of one model: its embeddings and the geodesic rows from its
/// annotated points, each computed once and shared by every pair the model is in.
struct Prepared {
    /// `<class_id>-<model_id>`, for errors.
    key: String,
    embeddings: Embeddings,
    /// semantic id -> (annotated point index, row in `geodesics`).
    keypoints: BTreeMap<u32, (usize, usize)>,
    geodesics: DistanceMatrix,
}

fn evaluate_models_with(
    class_id: &str,
    name: &str,
    models: &[AnnotatedModel],
    embedder: &dyn Embedder,
    geodesic: &GeodesicFn,
    posing: Posing,
) -> Result<CategoryReport> {
    let category = format!("category {name} ({class_id})");
    if models.is_empty() {
        return Err(Error::invalid(format!("{category}: no models to evaluate")));
    }
    for m in models {
        check_annotation(m)?;
    }

    // Correspondence sets: semantic id -> indices of the models that have it.
    let mut sets: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, m) in models.iter().enumerate() {
        for kp in &m.annotation.keypoints {
            sets.entry(kp.semantic_id).or_default().push(i);
        }
    }
    sets.retain(|_, members| members.len() >= 2);
    if sets.is_empty() {
        return Err(Error::invalid(format!(
            "{category}: no correspondence set is annotated on two or more of its {} models",
            models.len()
        )));
    }

    let prepared = prepare(
        models,
        embedder,
        geodesic,
        &posing.rotations(class_id, models.len()),
    )?;

    // Every (set, ordered pair) is independent: score them all in parallel, then reduce per
    // set in a fixed order so the result does not depend on scheduling.
    let tasks: Vec<(u32, usize, usize)> = sets
        .iter()
        .flat_map(|(&sid, members)| {
            members.iter().flat_map(move |&i| {
                members
                    .iter()
                    .filter(move |&&j| j != i)
                    .map(move |&j| (sid, i, j))
            })
        })
        .collect();
    let errors: Vec<f64> = tasks
        .par_iter()
        .map(|&(sid, i, j)| pair_error(&prepared[i], &prepared[j], sid))
        .collect::<Result<_>>()
        .map_err(|e| Error::invalid(format!("{category}: {e}")))?;

    let mut set_means = Vec::with_capacity(sets.len());
    let mut start = 0;
    for members in sets.values() {
        let n = members.len() * (members.len() - 1);
        set_means.push(errors[start..start + n].iter().sum::<f64>() / n as f64);
        start += n;
    }
    let mge = set_means.iter().sum::<f64>() / set_means.len() as f64;
    let pck = PCK_THRESHOLDS
        .iter()
        .map(|&t| errors.iter().filter(|&&e| e <= t).count() as f64 / errors.len() as f64)
        .collect();
    Ok(CategoryReport {
        class_id: class_id.to_string(),
        name: name.to_string(),
        mge,
        pck,
        sets: sets.len(),
        pairs: errors.len(),
        models: models.len(),
    })
}

/// Annotated point indices must exist in the cloud and semantic ids must be unique per
/// model, or "the model's point for this set" is meaningless.
fn check_annotation(m: &AnnotatedModel) -> Result<()> {
    let key = m.annotation.key();
    let mut seen = std::collections::HashSet::new();
    for kp in &m.annotation.keypoints {
        if kp.point_index >= m.cloud.len() {
            return Err(Error::invalid(format!(
                "model {key}: keypoint of semantic id {} has point_index {} but the cloud has {} points",
                kp.semantic_id,
                kp.point_index,
                m.cloud.len()
            )));
        }
        if !seen.insert(kp.semantic_id) {
            return Err(Error::invalid(format!(
                "model {key}: semantic id {} is annotated twice",
                kp.semantic_id
            )));
        }
    }
    Ok(())
}

/// Embeds every model turned by its rotation (one batch; no rotations: as stored) and
/// computes its geodesic rows on the cloud as stored (in parallel), checking that
/// embeddings fit their clouds and share one dimension. Rotating keeps point order, so
/// embeddings index the stored points.
fn prepare(
    models: &[AnnotatedModel],
    embedder: &dyn Embedder,
    geodesic: &GeodesicFn,
    rotations: &[nalgebra::Matrix3<f32>],
) -> Result<Vec<Prepared>> {
    let turned: Vec<Cloud> = models
        .iter()
        .zip(rotations)
        .map(|(m, r)| {
            let mut cloud = m.cloud.clone();
            rotate_cloud(&mut cloud, r);
            cloud
        })
        .collect();
    let clouds: Vec<&Cloud> = if turned.is_empty() {
        models.iter().map(|m| &m.cloud).collect()
    } else {
        turned.iter().collect()
    };
    let embeddings = embedder
        .embed_batch(&clouds)
        .map_err(|e| Error::invalid(format!("embedder {}: {e}", embedder.name())))?;
    if embeddings.len() != models.len() {
        return Err(Error::invalid(format!(
            "embedder {}: {} embeddings for {} clouds",
            embedder.name(),
            embeddings.len(),
            models.len()
        )));
    }
    let dim = embeddings[0].dim;
    for (m, e) in models.iter().zip(&embeddings) {
        let what = format!("embedder {}, model {}", embedder.name(), m.annotation.key());
        e.validate(m.cloud.len(), &what)?;
        if e.dim != dim {
            return Err(Error::invalid(format!(
                "{what}: {}-d embeddings, but model {} got {dim}-d",
                e.dim,
                models[0].annotation.key()
            )));
        }
    }
    models
        .par_iter()
        .zip(embeddings)
        .map(|(m, embeddings)| {
            let sources: Vec<usize> = m
                .annotation
                .keypoints
                .iter()
                .map(|k| k.point_index)
                .collect();
            let keypoints = m
                .annotation
                .keypoints
                .iter()
                .enumerate()
                .map(|(row, k)| (k.semantic_id, (k.point_index, row)))
                .collect();
            let geodesics = geodesic(&m.cloud, &sources)?;
            if geodesics.rows != sources.len() || geodesics.cols != m.cloud.len() {
                return Err(Error::invalid(format!(
                    "model {}: geodesic matrix is {} x {}, expected {} x {}",
                    m.annotation.key(),
                    geodesics.rows,
                    geodesics.cols,
                    sources.len(),
                    m.cloud.len()
                )));
            }
            Ok(Prepared {
                key: m.annotation.key().to_string(),
                embeddings,
                keypoints,
                geodesics,
            })
        })
        .collect()
}

/// Geodesic error of transferring set `sid` from model `src` to model `dst`.
fn pair_error(src: &Prepared, dst: &Prepared, sid: u32) -> Result<f64> {
    let (p_src, _) = src.keypoints[&sid];
    let (_, row) = dst.keypoints[&sid];
    let x = nearest_row(&dst.embeddings, src.embeddings.row(p_src));
    let d = dst.geodesics.get(row, x);
    if !d.is_finite() {
        return Err(Error::invalid(format!(
            "model {}, set {sid}: geodesic distance {d} from the annotated point to point {x} \
             (disconnected cloud?)",
            dst.key
        )));
    }
    Ok(d as f64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dataset::{Keypoint, ModelAnnotation};

    /// A model with keypoints given as (semantic id, point index).
    pub(crate) fn model(id: &str, points: Vec<[f32; 3]>, kps: &[(u32, usize)]) -> AnnotatedModel {
        AnnotatedModel {
            annotation: ModelAnnotation {
                class_id: "01234567".into(),
                model_id: id.into(),
                keypoints: kps
                    .iter()
                    .map(|&(semantic_id, point_index)| Keypoint {
                        xyz: points[point_index],
                        rgb: [0; 3],
                        semantic_id,
                        point_index,
                        mesh: None,
                    })
                    .collect(),
                symmetries: Default::default(),
            },
            cloud: Cloud::new(points),
        }
    }

    /// Exact geodesics on a straight line: |x_a - x_b| (the k-NN graph's answer too).
    fn line_geodesics(cloud: &Cloud, sources: &[usize]) -> Result<DistanceMatrix> {
        let p = &cloud.points;
        Ok(DistanceMatrix {
            rows: sources.len(),
            cols: p.len(),
            data: sources
                .iter()
                .flat_map(|&s| p.iter().map(move |q| (q[0] - p[s][0]).abs()))
                .collect(),
        })
    }

    /// Euclidean "geodesics": enough where only zero versus non-zero matters.
    fn euclidean(cloud: &Cloud, sources: &[usize]) -> Result<DistanceMatrix> {
        let p = &cloud.points;
        Ok(DistanceMatrix {
            rows: sources.len(),
            cols: p.len(),
            data: sources
                .iter()
                .flat_map(|&s| p.iter().map(move |q| crate::cloud::dist2(q, &p[s]).sqrt()))
                .collect(),
        })
    }

    /// Embeds each cloud by looking it up in a table (tests know the models in advance).
    pub(crate) struct Table(Vec<(Cloud, Embeddings)>);

    impl Embedder for Table {
        fn name(&self) -> String {
            "table".into()
        }
        fn embed(&self, cloud: &Cloud) -> Result<Embeddings> {
            self.0
                .iter()
                .find(|(c, _)| c == cloud)
                .map(|(_, e)| e.clone())
                .ok_or_else(|| Error::invalid("unknown cloud"))
        }
    }

    /// One-hot embedding per correspondence set at the annotated points, zero elsewhere: the
    /// ideal embedding the paper says scores mGE 0.
    fn one_hot(models: &[AnnotatedModel], num_sets: usize) -> Table {
        Table(
            models
                .iter()
                .map(|m| {
                    let dim = num_sets;
                    let mut data = vec![0f32; m.cloud.len() * dim];
                    for kp in &m.annotation.keypoints {
                        data[kp.point_index * dim + kp.semantic_id as usize] = 1.0;
                    }
                    (
                        m.cloud.clone(),
                        Embeddings::new(m.cloud.len(), dim, data).unwrap(),
                    )
                })
                .collect(),
        )
    }

    /// A small random cloud with a distinct first coordinate per model.
    fn blob(seed: u64, n: usize) -> Vec<[f32; 3]> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                [
                    rng.random::<f32>(),
                    rng.random::<f32>(),
                    rng.random::<f32>(),
                ]
            })
            .collect()
    }

    fn blob_models() -> Vec<AnnotatedModel> {
        vec![
            model("a", blob(1, 300), &[(0, 5), (1, 17), (2, 40), (3, 99)]),
            model("b", blob(2, 300), &[(0, 250), (1, 3), (3, 7)]),
            model("c", blob(3, 300), &[(0, 12), (2, 150), (4, 8)]),
            model("d", blob(4, 300), &[(1, 77), (2, 1), (3, 299)]),
        ]
    }

    #[test]
    fn one_hot_embeddings_give_zero_mge_and_full_pck() {
        let models = blob_models();
        let table = one_hot(&models, 5);
        let r = evaluate_models_with(
            "01234567",
            "blob",
            &models,
            &table,
            &euclidean,
            Posing::CANONICAL,
        )
        .unwrap();
        assert_eq!(r.mge, 0.0);
        assert_eq!(r.pck, vec![1.0; 11]);
        // Sets 0..3 have 3 models each (6 ordered pairs); set 4 is on "c" only.
        assert_eq!((r.sets, r.pairs, r.models), (4, 24, 4));
    }

    /// Three models of 11 points on a line, x = 0.0, 0.1, ..., 1.0 (model m at y = m, so
    /// geodesic = |dx|). 1-d embeddings e = x + offset[m], offsets A 0, B 0.22, C -0.31, so
    /// from (x, i) the match on j is the grid point nearest x + off_i - off_j (clamped).
    ///
    /// Set 1 on A@0.3, B@0.5, C@0.2:
    ///   A->B: 0.08 -> 0.1, |0.1-0.5| = 0.4    A->C: 0.61 -> 0.6, |0.6-0.2| = 0.4
    ///   B->A: 0.72 -> 0.7, |0.7-0.3| = 0.4    B->C: 1.03 -> 1.0, |1.0-0.2| = 0.8
    ///   C->A: -0.11 -> 0.0, |0.0-0.3| = 0.3   C->B: -0.33 -> 0.0, |0.0-0.5| = 0.5
    ///   mean 2.8 / 6 = 7/15.
    /// Set 2 on A@0.8, B@0.6: A->B 0.58 -> 0.6 (error 0), B->A 0.82 -> 0.8 (error 0); mean 0.
    /// Set 3 on C only: skipped.
    /// mGE = (7/15 + 0) / 2 = 7/30 = 0.2333...; 2 of the 8 pair errors are 0 and the rest
    /// are >= 0.3, so PCK = 0.25 at every threshold up to 0.10.
    pub(crate) fn line_example() -> (Vec<AnnotatedModel>, Table) {
        let line = |m: usize| -> Vec<[f32; 3]> {
            (0..11).map(|i| [i as f32 / 10.0, m as f32, 0.0]).collect()
        };
        let models = vec![
            model("A", line(0), &[(1, 3), (2, 8)]),
            model("B", line(1), &[(1, 5), (2, 6)]),
            model("C", line(2), &[(1, 2), (3, 9)]),
        ];
        let offsets = [0.0f32, 0.22, -0.31];
        let table = Table(
            models
                .iter()
                .enumerate()
                .map(|(m, am)| {
                    let data = am.cloud.points.iter().map(|p| p[0] + offsets[m]).collect();
                    (am.cloud.clone(), Embeddings::new(11, 1, data).unwrap())
                })
                .collect(),
        );
        (models, table)
    }

    fn assert_line_example(r: &CategoryReport) {
        assert!((r.mge - 7.0 / 30.0).abs() < 1e-6, "mge {}", r.mge);
        for p in &r.pck {
            assert!((p - 0.25).abs() < 1e-12, "{:?}", r.pck);
        }
        assert_eq!((r.sets, r.pairs, r.models), (2, 8, 3));
    }

    #[test]
    fn hand_worked_example_exact_geodesics() {
        let (models, table) = line_example();
        let r = evaluate_models_with(
            "01234567",
            "line",
            &models,
            &table,
            &line_geodesics,
            Posing::CANONICAL,
        )
        .unwrap();
        assert_line_example(&r);
    }

    #[test]
    fn hand_worked_example_knn_geodesics() {
        // Evenly spaced collinear points: the k-NN graph's shortest paths are exactly |dx|.
        let (models, table) = line_example();
        let r = evaluate_models("01234567", "line", &models, &table).unwrap();
        assert_line_example(&r);
    }

    #[test]
    fn sets_on_a_single_model_are_skipped_and_none_left_is_an_error() {
        let (models, table) = line_example();
        // Only C: its two sets have one model each.
        let msg = evaluate_models_with(
            "01234567",
            "line",
            &models[2..],
            &table,
            &line_geodesics,
            Posing::CANONICAL,
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("line (01234567)") && msg.contains("two or more"),
            "{msg}"
        );
        let msg = evaluate_models("01234567", "line", &[], &table)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line (01234567)"), "{msg}");
    }

    /// Returns the wrapped table's embeddings with one row dropped or one value poisoned.
    struct Broken(Table, bool);

    impl Embedder for Broken {
        fn name(&self) -> String {
            "broken".into()
        }
        fn embed(&self, cloud: &Cloud) -> Result<Embeddings> {
            let mut e = self.0.embed(cloud)?;
            if cloud.points[0][1] == 1.0 {
                if self.1 {
                    e.data[3 * e.dim] = f32::INFINITY;
                } else {
                    e.num_points -= 1;
                    e.data.truncate(e.num_points * e.dim);
                }
            }
            Ok(e)
        }
    }

    #[test]
    fn bad_embeddings_are_rejected_naming_the_model() {
        for poison in [false, true] {
            let (models, table) = line_example();
            let msg = evaluate_models_with(
                "01234567",
                "line",
                &models,
                &Broken(table, poison),
                &line_geodesics,
                Posing::CANONICAL,
            )
            .unwrap_err()
            .to_string();
            assert!(msg.contains("01234567-B"), "{msg}");
            let what = if poison { "non-finite" } else { "10 rows" };
            assert!(msg.contains(what), "{msg}");
        }
    }

    #[test]
    fn out_of_range_keypoint_is_rejected() {
        let (mut models, table) = line_example();
        models[0].annotation.keypoints[0].point_index = 11;
        let msg = evaluate_models_with(
            "01234567",
            "line",
            &models,
            &table,
            &line_geodesics,
            Posing::CANONICAL,
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("01234567-A") && msg.contains("point_index 11"),
            "{msg}"
        );
    }

    #[test]
    fn evaluate_reads_a_dataset_split() {
        use crate::dataset::{write_annotations, write_model_cloud, write_splits, Splits};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (models, table) = line_example();
        let mut splits = Splits::default();
        for (file, class_id) in [("line", "01234567"), ("other", "07654321")] {
            let ms: Vec<_> = models
                .iter()
                .map(|m| {
                    let mut a = m.annotation.clone();
                    a.class_id = class_id.into();
                    write_model_cloud(root, class_id, &a.model_id, &m.cloud).unwrap();
                    splits.test.push(a.key());
                    a
                })
                .collect();
            write_annotations(root.join("annotations").join(format!("{file}.json")), &ms).unwrap();
        }
        write_splits(root, &splits).unwrap();
        let ds = Dataset::open(root).unwrap();
        let cats: Vec<&Category> = ds.categories.iter().collect();
        let report = evaluate(&ds, &cats, Split::Test, &table, Posing::CANONICAL).unwrap();
        assert_eq!(report.categories.len(), 2);
        for (class_id, r) in &report.categories {
            assert_eq!(&r.class_id, class_id);
            assert_line_example(r);
        }
        assert!((report.mean_mge - 7.0 / 30.0).abs() < 1e-6);
        let msg = evaluate(&ds, &cats, Split::Train, &table, Posing::CANONICAL)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("line (01234567)") && msg.contains("train"),
            "{msg}"
        );
    }

    /// Embeds each point by a function of its coordinates as given.
    struct PointwiseEmbedder(fn([f32; 3]) -> Vec<f32>);

    impl Embedder for PointwiseEmbedder {
        fn name(&self) -> String {
            "pointwise".into()
        }
        fn embed(&self, cloud: &Cloud) -> Result<Embeddings> {
            let data: Vec<f32> = cloud.points.iter().flat_map(|&p| (self.0)(p)).collect();
            let dim = data.len() / cloud.len().max(1);
            Embeddings::new(cloud.len(), dim, data)
        }
    }

    #[test]
    fn posing_turns_what_the_embedder_sees_but_not_the_geodesics() {
        let models = blob_models();
        let norm = PointwiseEmbedder(|p| vec![(p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt()]);
        let xyz = PointwiseEmbedder(|p| p.to_vec());
        let run = |e: &dyn Embedder, rotation, seed| {
            let posing = Posing {
                rotation,
                seed,
                yaw_in_data: false,
            };
            evaluate_models_with("01234567", "blob", &models, e, &euclidean, posing).unwrap()
        };
        // Distance to the origin does not change under a rotation about it: same mGE.
        let canonical = run(&norm, RotationMode::None, 0).mge;
        let turned = run(&norm, RotationMode::So3, 1).mge;
        assert!((canonical - turned).abs() < 1e-6, "{canonical} vs {turned}");
        // Raw coordinates do: every model turned its own way scores worse.
        let canonical = run(&xyz, RotationMode::None, 0).mge;
        let turned = run(&xyz, RotationMode::So3, 1);
        assert!(turned.mge > canonical, "{} vs {canonical}", turned.mge);
        // Seeded: the same rotations again, different ones for another seed.
        assert_eq!(turned, run(&xyz, RotationMode::So3, 1));
        assert_ne!(turned.mge, run(&xyz, RotationMode::So3, 2).mge);
    }

    /// A test split of a 100-model category: 15 models x 2048 points, 10 sets.
    #[test]
    fn evaluating_a_test_split_takes_seconds() {
        let models: Vec<AnnotatedModel> = (0..15)
            .map(|m| {
                let kps: Vec<(u32, usize)> = (0..10).map(|s| (s, 37 * s as usize + m)).collect();
                model(&format!("m{m}"), blob(100 + m as u64, 2048), &kps)
            })
            .collect();
        let embedder = super::super::RandomEmbedder::new(0);
        let t = std::time::Instant::now();
        let r = evaluate_models("01234567", "blob", &models, &embedder).unwrap();
        let dt = t.elapsed();
        eprintln!("15 models x 10 sets, 128-d: {dt:?}");
        assert_eq!((r.sets, r.pairs), (10, 2100));
        if !cfg!(debug_assertions) {
            assert!(dt.as_secs_f32() < 10.0, "{dt:?}");
        }
    }
}
