//! Tools around the stages, not stages themselves: the benchmarks behind `semcorr bench`
//! and the sample sensor clouds of the demo, the tests and the benchmarks. Nothing in the
//! data path (`cloud` .. `pipeline`) depends on this module.

pub mod bench_deploy;
pub mod bench_geodesic;
pub mod bench_model;
pub mod bench_node;
pub mod samples;
pub mod scene_eval;
pub mod scenes;

pub use bench_geodesic::torus_cloud;

use std::time::Instant;

/// Median wall time of `repeats` calls of `f` in milliseconds, and the last call's output.
/// With `warm_up`, one untimed call first (allocations, thread pool, kernel dispatch).
pub fn median_ms<T, E>(
    repeats: usize,
    warm_up: bool,
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<(f64, T), E> {
    if warm_up {
        f()?;
    }
    let mut times = Vec::with_capacity(repeats.max(1));
    let mut out = None;
    for _ in 0..repeats.max(1) {
        let t0 = Instant::now();
        out = Some(std::hint::black_box(f()?));
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let out = out.expect("at least one run");
    Ok((crate::stats::median(&mut times), out))
}

/// [`median_ms`] after a warm-up call, for calls whose output is not needed.
pub fn warm_median_ms<E>(repeats: usize, f: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    median_ms(repeats, true, f).map(|(ms, ())| ms)
}
