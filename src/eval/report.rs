//! Evaluation results: per-category mGE and PCK, their JSON form and a printable table.

use super::mge::PCK_THRESHOLDS;
use crate::cloud::RotationMode;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One category's result. Only `mge`, `pck`, `sets` and `pairs` go into the JSON (the class
/// id is the map key there); `name` and `models` are for the printed table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryReport {
    #[serde(skip)]
    pub class_id: String,
    #[serde(skip)]
    pub name: String,
    /// Mean geodesic error: unweighted mean over correspondence sets of the mean over pairs.
    pub mge: f64,
    /// Fraction of all pair errors `<=` each of `PCK_THRESHOLDS` (0.00, 0.01, ..., 0.10).
    pub pck: Vec<f64>,
    /// Correspondence sets with at least two models (those that were scored).
    pub sets: usize,
    /// Ordered model pairs scored, over all sets.
    pub pairs: usize,
    /// Models evaluated.
    #[serde(skip)]
    pub models: usize,
}

impl CategoryReport {
    /// PCK at threshold `t` (one of `PCK_THRESHOLDS`, matched to the nearest hundredth).
    pub fn pck_at(&self, t: f64) -> Option<f64> {
        let k = (t * 100.0).round();
        if !(0.0..=((PCK_THRESHOLDS.len() - 1) as f64)).contains(&k) {
            return None;
        }
        self.pck.get(k as usize).copied()
    }
}

/// Results over categories, keyed by class id. Serialises to exactly
/// `{"categories": {"<class_id>": {"mge", "pck", "sets", "pairs"}}, "mean_mge", "rotation",
/// "rotation_seed"}` (and `"rotation_yaw_in_data": true` when the views' own yaw stood for
/// the rotation's); reports written before rotations existed read as canonical.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub categories: BTreeMap<String, CategoryReport>,
    /// Unweighted mean of the categories' mGE (the paper's "Average" column).
    pub mean_mge: f64,
    /// How the test clouds were turned (`eval --rotate`).
    #[serde(default)]
    pub rotation: RotationMode,
    /// The seed the rotations were drawn with.
    #[serde(default)]
    pub rotation_seed: u64,
    /// The views stood at a random yaw already: only the rotation's rest was applied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotation_yaw_in_data: bool,
}

impl EvalReport {
    /// Builds a report from category results; `mean_mge` is their unweighted mean.
    pub fn from_categories(reports: Vec<CategoryReport>) -> Result<EvalReport> {
        if reports.is_empty() {
            return Err(Error::invalid("evaluation: no categories to report"));
        }
        let mean_mge = reports.iter().map(|r| r.mge).sum::<f64>() / reports.len() as f64;
        let mut categories = BTreeMap::new();
        for r in reports {
            if categories.contains_key(&r.class_id) {
                return Err(Error::invalid(format!(
                    "evaluation: category {} ({}) reported twice",
                    r.name, r.class_id
                )));
            }
            categories.insert(r.class_id.clone(), r);
        }
        Ok(EvalReport {
            categories,
            mean_mge,
            rotation: RotationMode::None,
            rotation_seed: 0,
            rotation_yaw_in_data: false,
        })
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Only strings, integers and f64 inside: serialisation cannot fail.
        serde_json::to_string_pretty(self).expect("EvalReport serialises")
    }

    /// Parses `to_json`'s output; class ids come back from the map keys, names stay empty.
    pub fn from_json(text: &str) -> Result<EvalReport> {
        let mut report: EvalReport =
            serde_json::from_str(text).map_err(|e| Error::parse("not an evaluation report", e))?;
        for (class_id, r) in report.categories.iter_mut() {
            r.class_id = class_id.clone();
            if r.pck.len() != PCK_THRESHOLDS.len() {
                return Err(Error::invalid(format!(
                    "evaluation report: category {class_id} has {} PCK values, expected {}",
                    r.pck.len(),
                    PCK_THRESHOLDS.len()
                )));
            }
        }
        Ok(report)
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name_w = self
            .categories
            .values()
            .map(|r| r.name.len())
            .chain(["category".len()])
            .max()
            .unwrap_or(8);
        let id_w = self
            .categories
            .keys()
            .map(|k| k.len())
            .chain(["class_id".len()])
            .max()
            .unwrap_or(8);
        writeln!(
            f,
            "{:<name_w$}  {:<id_w$}  {:>6}  {:>4}  {:>6}  {:>7}  {:>8}  {:>8}",
            "category", "class_id", "models", "sets", "pairs", "mGE", "PCK@0.05", "PCK@0.10"
        )?;
        let pck = |r: &CategoryReport, t| r.pck_at(t).unwrap_or(f64::NAN);
        for (class_id, r) in &self.categories {
            writeln!(
                f,
                "{:<name_w$}  {:<id_w$}  {:>6}  {:>4}  {:>6}  {:>7.4}  {:>8.4}  {:>8.4}",
                r.name,
                class_id,
                r.models,
                r.sets,
                r.pairs,
                r.mge,
                pck(r, 0.05),
                pck(r, 0.10)
            )?;
        }
        let n = self.categories.len().max(1) as f64;
        let mean_pck = |t| self.categories.values().map(|r| pck(r, t)).sum::<f64>() / n;
        write!(
            f,
            "{:<name_w$}  {:<id_w$}  {:>6}  {:>4}  {:>6}  {:>7.4}  {:>8.4}  {:>8.4}",
            "mean",
            "",
            "",
            "",
            "",
            self.mean_mge,
            mean_pck(0.05),
            mean_pck(0.10)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> EvalReport {
        let cat = |class_id: &str, name: &str, mge| CategoryReport {
            class_id: class_id.into(),
            name: name.into(),
            mge,
            pck: (0..11).map(|k| k as f64 / 10.0).collect(),
            sets: 10,
            pairs: 2100,
            models: 15,
        };
        EvalReport::from_categories(vec![
            cat("03797390", "mug", 0.1),
            cat("02954340", "cap", 0.3),
        ])
        .unwrap()
    }

    #[test]
    fn json_has_exactly_the_required_keys() {
        let r = report();
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        let top = v.as_object().unwrap();
        let mut keys: Vec<_> = top.keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["categories", "mean_mge", "rotation", "rotation_seed"]
        );
        assert_eq!(top["rotation"].as_str(), Some("none"));
        assert!((top["mean_mge"].as_f64().unwrap() - 0.2).abs() < 1e-12);
        let cats = top["categories"].as_object().unwrap();
        assert_eq!(cats.keys().collect::<Vec<_>>(), ["02954340", "03797390"]);
        for c in cats.values() {
            let c = c.as_object().unwrap();
            let mut keys: Vec<_> = c.keys().cloned().collect();
            keys.sort();
            assert_eq!(keys, ["mge", "pairs", "pck", "sets"]);
            assert_eq!(c["pck"].as_array().unwrap().len(), 11);
            assert_eq!(c["sets"].as_u64(), Some(10));
            assert_eq!(c["pairs"].as_u64(), Some(2100));
        }
        let back = EvalReport::from_json(&r.to_json()).unwrap();
        assert_eq!(back.categories["03797390"].class_id, "03797390");
        assert_eq!(
            back.categories["03797390"].pck,
            r.categories["03797390"].pck
        );
        assert_eq!(back.mean_mge, r.mean_mge);
        let mut turned = r.clone();
        turned.rotation = RotationMode::Tilt { max_deg: 20.0 };
        turned.rotation_seed = 7;
        let back = EvalReport::from_json(&turned.to_json()).unwrap();
        assert_eq!((back.rotation, back.rotation_seed), (turned.rotation, 7));
        // A report from before rotations existed reads as canonical.
        let old = r#"{"categories": {}, "mean_mge": 0.5}"#;
        assert_eq!(
            EvalReport::from_json(old).unwrap().rotation,
            RotationMode::None
        );
    }

    #[test]
    fn display_has_a_row_per_category_and_the_mean() {
        let text = report().to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].contains("mGE") && lines[0].contains("PCK@0.05"));
        assert!(lines[1].starts_with("cap") && lines[1].contains("02954340"));
        assert!(lines[1].contains("0.3000") && lines[1].contains("0.5000"));
        assert!(lines[1].contains("1.0000") && lines[1].contains("2100"));
        assert!(lines[3].starts_with("mean") && lines[3].contains("0.2000"));
    }

    #[test]
    fn duplicate_or_no_categories_are_errors() {
        assert!(EvalReport::from_categories(vec![]).is_err());
        let r = report();
        let c = r.categories["03797390"].clone();
        assert!(EvalReport::from_categories(vec![c.clone(), c]).is_err());
    }
}
