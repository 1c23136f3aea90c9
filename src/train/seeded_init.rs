//! Reproducible weight initialisation. candle's CPU device draws initial weights from a
//! thread-local RNG that cannot be seeded, so training would differ run to run. This
//! parameter store creates each variable from a seeded ChaCha stream instead, with the
//! same distributions candle's `Init` describes, and keeps the variables in a `VarMap`.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{Init, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};
use std::sync::Mutex;

/// `varmap`'s variables, sorted by name (the optimizer's update order, so runs repeat).
pub fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let mut v: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .expect("varmap lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

pub struct SeededVarMap {
    pub varmap: VarMap,
    rng: Mutex<ChaCha8Rng>,
}

impl SeededVarMap {
    pub fn new(seed: u64) -> Self {
        SeededVarMap {
            varmap: VarMap::new(),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    fn draw(&self, shape: &Shape, init: Init) -> Result<Vec<f32>> {
        let n = shape.elem_count();
        let mut rng = self.rng.lock().expect("rng lock");
        let uniform = |lo: f64, up: f64, rng: &mut ChaCha8Rng| -> Result<Vec<f32>> {
            if lo >= up {
                return Ok(vec![lo as f32; n]);
            }
            let u = Uniform::new(lo, up).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            Ok((0..n).map(|_| u.sample(rng) as f32).collect())
        };
        let normal = |mean: f64, std: f64, rng: &mut ChaCha8Rng| -> Result<Vec<f32>> {
            let d = Normal::new(mean, std).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            Ok((0..n).map(|_| d.sample(rng) as f32).collect())
        };
        match init {
            Init::Const(c) => Ok(vec![c as f32; n]),
            Init::Uniform { lo, up } => uniform(lo, up, &mut rng),
            Init::Randn { mean, stdev } => normal(mean, stdev, &mut rng),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        uniform(-bound, bound, &mut rng)
                    }
                    NormalOrUniform::Normal => normal(0.0, std, &mut rng),
                }
            }
        }
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        if let Some(var) = self.varmap.data().lock().expect("varmap lock").get(name) {
            if var.shape() != &s {
                candle_core::bail!("shape mismatch on {name}: {s:?} <> {:?}", var.shape());
            }
            return Ok(var.as_tensor().clone());
        }
        let values = self.draw(&s, h)?;
        let var = Var::from_tensor(&Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?)?;
        let t = var.as_tensor().clone();
        self.varmap
            .data()
            .lock()
            .expect("varmap lock")
            .insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("{name}: a training parameter store creates variables by shape")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .expect("varmap lock")
            .contains_key(name)
    }
}
