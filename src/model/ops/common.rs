//! What every fused op needs: raw f32 access to candle's CPU storage, a parallel fill that
//! skips zeroing, the activation as the kernels evaluate it, and the test for whether the
//! fused path applies at all.

use candle_core::{CpuStorage, DType, Layout, Result, Tensor};
use rayon::prelude::*;

/// Rows per parallel work item: small enough for both cores to get several, large enough
/// that per-chunk partial sums cost nothing.
pub(super) const ROWS: usize = 256;

pub(super) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{what}: expected f32 storage");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{what}: expected a contiguous tensor"),
    }
}

/// Fills a new vector of `len` values by chunks of `chunk` in parallel, without zeroing it first.
pub(super) fn par_fill(
    len: usize,
    chunk: usize,
    f: impl Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| f(i, c));
    // SAFETY: every element of [0, len) was written by exactly one chunk above.
    unsafe { out.set_len(len) };
    out
}

/// Runs `f` on the f32 data of contiguous CPU tensors (read locks held meanwhile).
pub(super) fn with_f32<R>(ts: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
    let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(ts.len());
    for (storage, layout) in &guards {
        match &**storage {
            candle_core::Storage::Cpu(s) => slices.push(f32_slice(s, layout, "backward input")?),
            _ => candle_core::bail!("fused backward: expected CPU tensors"),
        }
    }
    f(&slices)
}

/// Whether the fused CPU kernels apply to these tensors (CPU, f32).
pub(crate) fn fast_path(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// `act(z)` for an activation given by its negative-side slope
/// ([`crate::model::Activation::negative_slope`]).
#[inline(always)]
pub(super) fn act(z: f32, slope: f32) -> f32 {
    if z > 0.0 {
        z
    } else {
        z * slope
    }
}

/// `d * act'(z)` where `y = act(z)` (`y > 0` exactly when `z > 0`, so the output decides).
#[inline(always)]
pub(super) fn act_grad(d: f32, y: f32, slope: f32) -> f32 {
    if y > 0.0 {
        d
    } else {
        d * slope
    }
}

/// [`act_grad`] for whole slices: the output gradient routed through the activation.
pub(super) fn act_grads(dy: &[f32], y: &[f32], slope: f32) -> Vec<f32> {
    dy.iter()
        .zip(y)
        .map(|(&d, &v)| act_grad(d, v, slope))
        .collect()
}
