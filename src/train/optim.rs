//! AdamW with global gradient-norm clipping and a state that can be saved and restored,
//! which `--resume` needs (candle-nn's own AdamW keeps its moments private).

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use std::collections::HashMap;

/// AdamW hyper-parameters (Loshchilov & Hutter's decoupled weight decay).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 = off).
    pub grad_clip: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-3,
            grad_clip: 1.0,
        }
    }
}

struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
}

/// The optimizer over named variables (names as in the checkpoint).
pub struct AdamW {
    cfg: AdamWConfig,
    slots: Vec<Slot>,
    step: u64,
}

/// What one step did, for logging.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

impl AdamW {
    /// `vars` are sorted by name so the update order (and thus rounding) is reproducible.
    pub fn new(mut vars: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<AdamW> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let m = var.zeros_like()?;
                let v = var.zeros_like()?;
                Ok(Slot { name, var, m, v })
            })
            .collect::<Result<_>>()?;
        Ok(AdamW {
            cfg,
            slots,
            step: 0,
        })
    }

    pub fn learning_rate(&self) -> f64 {
        self.cfg.lr
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Applies one update from `grads`; variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<StepInfo> {
        let grads: Vec<Option<Tensor>> = self
            .slots
            .iter()
            .map(|s| grads.get(s.var.as_tensor()).cloned())
            .collect();
        let mut sq = 0f64;
        for g in grads.iter().flatten() {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
        let grad_norm = sq.sqrt();
        let scale = if self.cfg.grad_clip > 0.0 && grad_norm > self.cfg.grad_clip {
            self.cfg.grad_clip / (grad_norm + 1e-6)
        } else {
            1.0
        };
        self.step += 1;
        let c = self.cfg;
        let t = self.step as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        for (slot, g) in self.slots.iter_mut().zip(grads) {
            let Some(g) = g else { continue };
            let g = (g * scale)?;
            slot.m = ((&slot.m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            slot.v = ((&slot.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let m_hat = (&slot.m / bias1)?;
            let v_hat = (&slot.v / bias2)?;
            let update = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
            let decayed = (slot.var.as_tensor() * (1.0 - c.lr * c.weight_decay))?;
            slot.var.set(&(decayed - (update * c.lr)?)?)?;
        }
        Ok(StepInfo { grad_norm })
    }

    /// The moments as named tensors (`adam.m.<var>`, `adam.v.<var>`) for a checkpoint.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for s in &self.slots {
            out.insert(format!("adam.m.{}", s.name), s.m.clone());
            out.insert(format!("adam.v.{}", s.name), s.v.clone());
        }
        out
    }

    /// Restores moments saved by `state_tensors` and the step count. Every variable must
    /// have its two moments with matching shapes; the error names the first one missing.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for s in &mut self.slots {
            for (kind, dst) in [("m", &mut s.m), ("v", &mut s.v)] {
                let key = format!("adam.{kind}.{}", s.name);
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| candle_core::Error::Msg(format!("checkpoint lacks {key}")))?;
                if t.shape() != s.var.shape() {
                    candle_core::bail!(
                        "checkpoint {key} has shape {:?}, expected {:?}",
                        t.shape(),
                        s.var.shape()
                    );
                }
                *dst = t.clone();
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn minimises_a_quadratic_and_clips() {
        let x = Var::new(&[3.0f32, -4.0], &Device::Cpu).unwrap();
        let cfg = AdamWConfig {
            lr: 0.1,
            weight_decay: 0.0,
            grad_clip: 1.0,
            ..Default::default()
        };
        let mut opt = AdamW::new(vec![("x".into(), x.clone())], cfg).unwrap();
        let mut first_norm = 0.0;
        for i in 0..300 {
            let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
            let info = opt.step(&loss.backward().unwrap()).unwrap();
            if i == 0 {
                first_norm = info.grad_norm;
            }
        }
        assert!(
            (first_norm - 10.0).abs() < 1e-4,
            "|2x| = 10 before clipping"
        );
        let v: Vec<f32> = x.as_tensor().to_vec1().unwrap();
        assert!(v.iter().all(|c| c.abs() < 0.05), "{v:?}");
    }

    #[test]
    fn state_round_trips() {
        let x = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(vec![("x".into(), x.clone())], AdamWConfig::default()).unwrap();
        let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let saved = opt.state_tensors();
        let y = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let mut other = AdamW::new(vec![("x".into(), y)], AdamWConfig::default()).unwrap();
        other.load_state(&saved, 1).unwrap();
        let m: Vec<f32> = other.state_tensors()["adam.m.x"].to_vec1().unwrap();
        assert!(m.iter().all(|&c| c != 0.0));
        let mut missing = saved.clone();
        missing.remove("adam.v.x");
        let e = other.load_state(&missing, 1).unwrap_err().to_string();
        assert!(e.contains("adam.v.x"), "{e}");
    }
}
