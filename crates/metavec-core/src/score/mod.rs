//! MaxSim: `score(q, d) = sum over i < r_q of max over j < r_c of <q_i, d_j>`.
//!
//! A scalar reference written for auto-vectorisation, per-arch kernels in [`simd`] behind
//! `#[target_feature]`, and one kernel table there from which the best entry the CPU supports is
//! chosen once per process ([`simd::chosen`]). A document's prefix arrives as a
//! list of contiguous parts (one per layout group it spans); the running maxima carry across parts,
//! so scoring a prefix never needs the parts copied together.

pub mod compact;
pub mod roofline;
mod rows;
pub mod simd;

pub use rows::{encode_rows, QueryForms, Rows};

/// `maxes[i] = max(maxes[i], max_j <q_i, d_j>)` for the `r_q` query rows of `query` and every row of
/// `doc` (`doc.len() / dim` rows).
pub type UpdateFn = fn(query: &[f32], r_q: usize, dim: usize, doc: &[f32], maxes: &mut [f32]);

/// [`UpdateFn`] of two documents at once: `a` into `ma`, `b` into `mb` (each `r_q` maxima).
/// Bit-identical to two [`UpdateFn`] calls; faster where both are single rows.
pub type UpdatePairFn =
    fn(query: &[f32], r_q: usize, dim: usize, a: &[f32], b: &[f32], ma: &mut [f32], mb: &mut [f32]);

/// Dot product of two equal-length slices.
pub type DotFn = fn(a: &[f32], b: &[f32]) -> f32;

/// The f32 kernels of one entry of the kernel table ([`simd::KernelSet`]).
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    pub update: UpdateFn,
    pub update_pair: UpdatePairFn,
    pub dot: DotFn,
}

/// The scalar references, as a [`Kernel`].
pub const SCALAR: Kernel = Kernel {
    update: maxsim_update_scalar,
    update_pair: maxsim_update_pair_scalar,
    dot: dot_scalar,
};

/// The f32 kernels of this process ([`simd::chosen`]).
pub fn kernel() -> Kernel {
    simd::chosen().f32
}

/// Dot product through the dispatched kernel (used by the HNSW distance).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernel().dot)(a, b)
}

/// Dot product with eight independent accumulators (vectorises without fast-math).
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        let (x, y) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0.0f32;
    for k in chunks * 8..n {
        tail += a[k] * b[k];
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Scalar reference of [`UpdatePairFn`]: two updates.
pub fn maxsim_update_pair_scalar(
    query: &[f32],
    r_q: usize,
    dim: usize,
    a: &[f32],
    b: &[f32],
    ma: &mut [f32],
    mb: &mut [f32],
) {
    maxsim_update_scalar(query, r_q, dim, a, ma);
    maxsim_update_scalar(query, r_q, dim, b, mb);
}

/// Scalar reference of [`UpdateFn`].
pub fn maxsim_update_scalar(query: &[f32], r_q: usize, dim: usize, doc: &[f32], maxes: &mut [f32]) {
    if dim == 0 {
        return;
    }
    for d in doc.chunks_exact(dim) {
        for (i, m) in maxes.iter_mut().enumerate().take(r_q) {
            let s = dot_scalar(&query[i * dim..(i + 1) * dim], d);
            if s > *m {
                *m = s;
            }
        }
    }
}

/// MaxSim of the first `r_q` rows of `query` against the concatenation of `parts`.
pub fn maxsim(query: &[f32], r_q: usize, dim: usize, parts: &[&[f32]]) -> f32 {
    let mut maxes = vec![f32::NEG_INFINITY; r_q];
    let k = kernel();
    for p in parts {
        (k.update)(query, r_q, dim, p, &mut maxes);
    }
    maxes.iter().sum()
}

/// Reference MaxSim, used by tests and the oracle: plain loops, no dispatch.
pub fn maxsim_reference(query: &[f32], r_q: usize, doc: &[f32], r_c: usize, dim: usize) -> f32 {
    (0..r_q)
        .map(|i| {
            (0..r_c)
                .map(|j| dot_scalar(&query[i * dim..(i + 1) * dim], &doc[j * dim..(j + 1) * dim]))
                .fold(f32::NEG_INFINITY, f32::max)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vecs(n: usize, seed: u64) -> Vec<f32> {
        // Small deterministic values; exactness is checked with a tolerance below.
        (0..n)
            .map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 500.0) - 1.0)
            .collect()
    }

    #[test]
    fn dot_matches_naive() {
        for n in [0, 1, 7, 8, 9, 31, 33, 64, 384, 1000] {
            let (a, b) = (vecs(n, 1), vecs(n, 2));
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot_scalar(&a, &b) as f64 - naive).abs() < 1e-3, "n = {n}");
            assert!((dot(&a, &b) as f64 - naive).abs() < 1e-3, "n = {n}");
        }
    }

    proptest! {
        #[test]
        fn dispatched_kernel_matches_scalar(r_q in 1usize..11, n in 1usize..13, dim in 1usize..70, seed in 0u64..1000) {
            let q = vecs(r_q * dim, seed);
            let d = vecs(n * dim, seed + 1);
            let mut a = vec![f32::NEG_INFINITY; r_q];
            maxsim_update_scalar(&q, r_q, dim, &d, &mut a);
            // Every kernel this CPU has, not only the chosen one (see `simd::under_test`).
            for set in simd::under_test() {
                let (k, name) = (set.f32, set.name);
                let mut b = vec![f32::NEG_INFINITY; r_q];
                (k.update)(&q, r_q, dim, &d, &mut b);
                for (x, y) in a.iter().zip(&b) {
                    prop_assert!((x - y).abs() <= 1e-4 * (1.0 + x.abs()), "{}: {} vs {}", name, x, y);
                }
                // Splitting a document into parts never changes a score's bits.
                let mut bits = vec![f32::NEG_INFINITY; r_q];
                for row in d.chunks(dim) {
                    (k.update)(&q, r_q, dim, row, &mut bits);
                }
                prop_assert_eq!(&bits, &b);
                // Two documents at once (single rows, or whole documents) score as two calls.
                for (x, y) in [(&d[..dim], &d[(n - 1) * dim..]), (&d[..], &q[..])] {
                    let (mut sx, mut sy) = (vec![f32::NEG_INFINITY; r_q], vec![f32::NEG_INFINITY; r_q]);
                    (k.update)(&q, r_q, dim, x, &mut sx);
                    (k.update)(&q, r_q, dim, y, &mut sy);
                    let (mut px, mut py) = (vec![f32::NEG_INFINITY; r_q], vec![f32::NEG_INFINITY; r_q]);
                    (k.update_pair)(&q, r_q, dim, x, y, &mut px, &mut py);
                    prop_assert_eq!((&px, &py), (&sx, &sy), "{}", name);
                }
                let (x, y) = (&q[..dim], &d[..dim]);
                prop_assert!((dot_scalar(x, y) - (k.dot)(x, y)).abs() <= 1e-4 * (1.0 + dot_scalar(x, y).abs()));
            }
            let split = (n / 2) * dim;
            let parts = maxsim(&q, r_q, dim, &[&d[..split], &d[split..]]);
            let whole = maxsim_reference(&q, r_q, &d, n, dim);
            prop_assert!((parts - whole).abs() <= 1e-3 * (1.0 + whole.abs()));
        }
    }
}
