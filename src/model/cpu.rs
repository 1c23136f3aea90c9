//! Plain-slice CPU kernels for the inference fast path: row-major single-threaded gemm
//! (the same `gemm` crate candle uses, called directly so that there is no tensor
//! allocation, no op dispatch and no thread hand-off per layer) and the elementwise
//! epilogues that follow it. [`gemm_raw`], the strided form, also serves the fused
//! training kernels (`ops/`) and DGCNN's k-NN.

use gemm::Parallelism;

/// A folded eval-mode layer `y = act(x wt + b)` as plain row-major data.
#[derive(Debug, Clone)]
pub(crate) struct RawLinear {
    /// `[k, n]` row-major.
    pub wt: Vec<f32>,
    /// `[n]`.
    pub b: Vec<f32>,
    pub k: usize,
    pub n: usize,
    pub relu: bool,
}

impl RawLinear {
    /// `y[..rows*n] = act(x[..rows*k] wt + b)`.
    pub fn forward(&self, y: &mut [f32], x: &[f32], rows: usize) {
        matmul(y, x, &self.wt, rows, self.k, self.n);
        bias_act(&mut y[..rows * self.n], &self.b, self.relu);
    }
}

/// `y[m, n] = x[m, k] w[k, n]`, all row-major and contiguous, on the calling thread.
pub(crate) fn matmul(y: &mut [f32], x: &[f32], w: &[f32], m: usize, k: usize, n: usize) {
    matmul_par(y, x, w, (m, k, n), 1);
}

/// `y[m, n] = x[m, k] w[k, n]` with gemm's own multi-threading (the bench's roofline).
pub(crate) fn matmul_par(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    (m, k, n): (usize, usize, usize),
    threads: usize,
) {
    assert!(y.len() >= m * n && x.len() >= m * k && w.len() >= k * n);
    if m == 0 || n == 0 {
        return;
    }
    let par = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the three buffers are distinct borrows whose lengths were checked above
    // against the row-major extents handed to gemm (unit column stride, row stride = width).
    unsafe {
        gemm_strided(
            (m, n, k),
            y.as_mut_ptr(),
            n,
            false,
            (x.as_ptr(), 1, k),
            (w.as_ptr(), 1, n),
            par,
        )
    }
}

/// `y[r, :] = act(y[r, :] + b)` for every row; one pass while the rows are still in cache.
pub(crate) fn bias_act(y: &mut [f32], b: &[f32], relu: bool) {
    for row in y.chunks_exact_mut(b.len()) {
        if relu {
            for (v, &bb) in row.iter_mut().zip(b) {
                *v = (*v + bb).max(0.0);
            }
        } else {
            for (v, &bb) in row.iter_mut().zip(b) {
                *v += bb;
            }
        }
    }
}

/// `acc[c] = max(acc[c], y[r, c])` over the rows of `y` (`[rows, acc.len()]`).
pub(crate) fn col_max(acc: &mut [f32], y: &[f32]) {
    for row in y.chunks_exact(acc.len()) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a = a.max(v);
        }
    }
}

/// Two ping-pong buffers for running a chain of layers on one tile of points.
pub(crate) struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
}

impl Scratch {
    pub fn new(len: usize) -> Self {
        Self {
            a: vec![0.0; len],
            b: vec![0.0; len],
        }
    }

    /// The first buffer, where a chain's input goes and its result comes out.
    pub fn input(&mut self, len: usize) -> &mut [f32] {
        &mut self.a[..len]
    }

    /// Runs `layers` on the `rows` rows of width `width` held in the first buffer; returns
    /// the length of the result, again in the first buffer.
    pub fn run(&mut self, layers: &[RawLinear], rows: usize, width: usize) -> usize {
        let mut len = rows * width;
        for l in layers {
            l.forward(&mut self.b, &self.a[..rows * l.k], rows);
            std::mem::swap(&mut self.a, &mut self.b);
            len = rows * l.n;
        }
        len
    }

    /// The last result's buffer and the spare one.
    pub fn split(&mut self) -> (&[f32], &mut [f32]) {
        (&self.a, &mut self.b)
    }
}

/// `dst[m, n] (+)= lhs[m, k] rhs[k, n]` with explicit element strides (`*_cs`: along a
/// row, `*_rs`: between rows), single-threaded. `accumulate` adds to `dst` instead of
/// overwriting it (then `dst` must be initialised; otherwise it is only written).
///
/// # Safety
/// Every pointer must be valid for the extents implied by the sizes and strides, and
/// `dst` must not overlap the inputs.
pub(crate) unsafe fn gemm_raw(
    dims: (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
) {
    gemm_strided(dims, dst, dst_rs, accumulate, lhs, rhs, Parallelism::None)
}

/// [`gemm_raw`] with a choice of gemm's threading: the one call into `gemm` that both the
/// plain-slice matmuls and the strided kernels go through.
///
/// # Safety
/// As for [`gemm_raw`].
unsafe fn gemm_strided(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    (lhs, lhs_cs, lhs_rs): (*const f32, usize, usize),
    (rhs, rhs_cs, rhs_rs): (*const f32, usize, usize),
    par: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs,
        lhs_cs as isize,
        lhs_rs as isize,
        rhs,
        rhs_cs as isize,
        rhs_rs as isize,
        if accumulate { 1.0 } else { 0.0 },
        1.0,
        false,
        false,
        false,
        par,
    )
}
