//! AVX-512F MaxSim update: the AVX2 kernel's structure (4 query rows x 2 document rows per
//! step) on 16-lane registers, so each document load feeds four FMAs of twice the width.

use std::arch::x86_64::*;

/// Dot product; only installed by `best()` after runtime detection of avx512f.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    // SAFETY: `best()` hands this function out only when the CPU reports avx512f.
    unsafe { dot_4acc(&a[..n], &b[..n]) }
}

/// Four independent 16-lane accumulators hide the FMA latency.
#[target_feature(enable = "avx512f")]
unsafe fn dot_4acc(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut c = 0;
    while c + 64 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: c + 64 <= n, so c + 16k + 16 <= n for k < 4: in bounds of both slices.
            unsafe {
                let x = _mm512_loadu_ps(pa.add(c + 16 * k));
                let y = _mm512_loadu_ps(pb.add(c + 16 * k));
                *acc = _mm512_fmadd_ps(x, y, *acc);
            }
        }
        c += 64;
    }
    while c + 16 <= n {
        // SAFETY: c + 16 <= n.
        unsafe {
            acc[0] = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(c)),
                _mm512_loadu_ps(pb.add(c)),
                acc[0],
            );
        }
        c += 16;
    }
    let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let mut s = _mm512_reduce_add_ps(sum);
    while c < n {
        s += a[c] * b[c];
        c += 1;
    }
    s
}

/// Safe entry point; only installed by `best()` after runtime detection of avx512f.
pub fn maxsim_update(query: &[f32], r_q: usize, dim: usize, doc: &[f32], maxes: &mut [f32]) {
    assert!(query.len() >= r_q * dim && maxes.len() >= r_q);
    if dim == 0 {
        return;
    }
    // SAFETY: `best()` hands this function out only when the CPU reports avx512f.
    unsafe { update(query, r_q, dim, doc, maxes) }
}

#[target_feature(enable = "avx512f")]
unsafe fn update(query: &[f32], r_q: usize, dim: usize, doc: &[f32], maxes: &mut [f32]) {
    let n = doc.len() / dim;
    let mut j = 0;
    while j + 2 <= n {
        let d0 = &doc[j * dim..(j + 1) * dim];
        let d1 = &doc[(j + 1) * dim..(j + 2) * dim];
        let mut i = 0;
        while i + 4 <= r_q {
            let q = &query[i * dim..(i + 4) * dim];
            // SAFETY: q holds 4 rows of `dim`, d0/d1 one row each (sliced above); avx512f enabled.
            let r = unsafe { dot_4x2(q, d0, d1, dim) };
            for k in 0..4 {
                let m = r[2 * k].max(r[2 * k + 1]);
                if m > maxes[i + k] {
                    maxes[i + k] = m;
                }
            }
            i += 4;
        }
        while i < r_q {
            let q = &query[i * dim..(i + 1) * dim];
            // SAFETY: avx512f is enabled in this function; the slices are equal-length rows.
            let m = unsafe { dot_1(q, d0).max(dot_1(q, d1)) };
            if m > maxes[i] {
                maxes[i] = m;
            }
            i += 1;
        }
        j += 2;
    }
    if j < n {
        let d = &doc[j * dim..(j + 1) * dim];
        for (i, m) in maxes.iter_mut().enumerate().take(r_q) {
            // SAFETY: as above.
            let s = unsafe { dot_1(&query[i * dim..(i + 1) * dim], d) };
            if s > *m {
                *m = s;
            }
        }
    }
}

/// One dot product accumulated exactly as each lane of [`dot_4x2`] is (one 16-wide accumulator,
/// then the scalar tail), so a score never depends on how a document's rows were paired or split
/// into layout groups.
#[target_feature(enable = "avx512f")]
unsafe fn dot_1(q: &[f32], d: &[f32]) -> f32 {
    let dim = q.len().min(d.len());
    let (pq, pd) = (q.as_ptr(), d.as_ptr());
    let mut acc = _mm512_setzero_ps();
    let mut c = 0;
    while c + 16 <= dim {
        // SAFETY: c + 16 <= dim, inside both rows.
        unsafe {
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(pq.add(c)), _mm512_loadu_ps(pd.add(c)), acc);
        }
        c += 16;
    }
    let mut s = _mm512_reduce_add_ps(acc);
    while c < dim {
        s += q[c] * d[c];
        c += 1;
    }
    s
}

/// Dots of 4 query rows (contiguous in `q`) with 2 document rows: [q0d0, q0d1, q1d0, ..., q3d1].
#[target_feature(enable = "avx512f")]
unsafe fn dot_4x2(q: &[f32], d0: &[f32], d1: &[f32], dim: usize) -> [f32; 8] {
    debug_assert!(q.len() >= 4 * dim && d0.len() >= dim && d1.len() >= dim);
    let qp = q.as_ptr();
    let (p0, p1) = (d0.as_ptr(), d1.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 8];
    let mut c = 0;
    while c + 16 <= dim {
        // SAFETY: c + 16 <= dim, so every load reads inside its row (rows are `dim` long, q has 4).
        unsafe {
            let x0 = _mm512_loadu_ps(p0.add(c));
            let x1 = _mm512_loadu_ps(p1.add(c));
            for k in 0..4 {
                let y = _mm512_loadu_ps(qp.add(k * dim + c));
                acc[2 * k] = _mm512_fmadd_ps(y, x0, acc[2 * k]);
                acc[2 * k + 1] = _mm512_fmadd_ps(y, x1, acc[2 * k + 1]);
            }
        }
        c += 16;
    }
    let mut out = [0.0f32; 8];
    for (o, a) in out.iter_mut().zip(acc) {
        *o = _mm512_reduce_add_ps(a);
    }
    while c < dim {
        for k in 0..4 {
            let y = q[k * dim + c];
            out[2 * k] += y * d0[c];
            out[2 * k + 1] += y * d1[c];
        }
        c += 1;
    }
    out
}
