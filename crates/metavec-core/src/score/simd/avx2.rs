//! AVX2 + FMA MaxSim update: 4 query rows x 2 document rows per step, eight accumulators,
//! so each loaded document chunk feeds four FMAs and FMA latency is hidden.

use std::arch::x86_64::*;

/// Dot product; only installed by `best()` after runtime detection of avx2 and fma.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    // SAFETY: `best()` hands this function out only when the CPU reports avx2 and fma.
    unsafe { dot_fma(&a[..n], &b[..n]) }
}

/// Four independent 8-lane accumulators hide the FMA latency.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_fma(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut c = 0;
    while c + 32 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: c + 32 <= n, so c + 8k + 8 <= n for k < 4: in bounds of both slices.
            unsafe {
                let x = _mm256_loadu_ps(pa.add(c + 8 * k));
                let y = _mm256_loadu_ps(pb.add(c + 8 * k));
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
        }
        c += 32;
    }
    while c + 8 <= n {
        // SAFETY: c + 8 <= n.
        unsafe {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(c)),
                _mm256_loadu_ps(pb.add(c)),
                acc[0],
            );
        }
        c += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut s = hsum(sum);
    while c < n {
        s += a[c] * b[c];
        c += 1;
    }
    s
}

/// Safe entry point; only installed by `best()` after runtime detection of avx2 and fma.
pub fn maxsim_update(query: &[f32], r_q: usize, dim: usize, doc: &[f32], maxes: &mut [f32]) {
    assert!(query.len() >= r_q * dim && maxes.len() >= r_q);
    if dim == 0 {
        return;
    }
    // SAFETY: `best()` hands this function out only when the CPU reports avx2 and fma.
    unsafe { update(query, r_q, dim, doc, maxes) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn update(query: &[f32], r_q: usize, dim: usize, doc: &[f32], maxes: &mut [f32]) {
    let n = doc.len() / dim;
    let mut j = 0;
    while j + 2 <= n {
        let d0 = &doc[j * dim..(j + 1) * dim];
        let d1 = &doc[(j + 1) * dim..(j + 2) * dim];
        let mut i = 0;
        while i + 4 <= r_q {
            let q = &query[i * dim..(i + 4) * dim];
            // SAFETY: q holds 4 rows of `dim`, d0/d1 one row each (sliced above); avx2+fma enabled.
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
            // SAFETY: avx2+fma are enabled in this function; the slices are equal-length rows.
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

/// One dot product accumulated exactly as each lane of [`dot_4x2`] is (one 8-wide accumulator,
/// then the scalar tail), so a score never depends on how a document's rows were paired or split
/// into layout groups: a document scores bit-identically from the memtable and from a segment.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_1(q: &[f32], d: &[f32]) -> f32 {
    let dim = q.len().min(d.len());
    let (pq, pd) = (q.as_ptr(), d.as_ptr());
    let mut acc = _mm256_setzero_ps();
    let mut c = 0;
    while c + 8 <= dim {
        // SAFETY: c + 8 <= dim, inside both rows.
        unsafe {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(pq.add(c)), _mm256_loadu_ps(pd.add(c)), acc);
        }
        c += 8;
    }
    let mut s = hsum(acc);
    while c < dim {
        s += q[c] * d[c];
        c += 1;
    }
    s
}

/// Dots of 4 query rows (contiguous in `q`) with 2 document rows: [q0d0, q0d1, q1d0, ..., q3d1].
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_4x2(q: &[f32], d0: &[f32], d1: &[f32], dim: usize) -> [f32; 8] {
    debug_assert!(q.len() >= 4 * dim && d0.len() >= dim && d1.len() >= dim);
    let qp = q.as_ptr();
    let (p0, p1) = (d0.as_ptr(), d1.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 8];
    let mut c = 0;
    while c + 8 <= dim {
        // SAFETY: c + 8 <= dim, so every load reads inside its row (rows are `dim` long, q has 4).
        unsafe {
            let x0 = _mm256_loadu_ps(p0.add(c));
            let x1 = _mm256_loadu_ps(p1.add(c));
            for k in 0..4 {
                let y = _mm256_loadu_ps(qp.add(k * dim + c));
                acc[2 * k] = _mm256_fmadd_ps(y, x0, acc[2 * k]);
                acc[2 * k + 1] = _mm256_fmadd_ps(y, x1, acc[2 * k + 1]);
            }
        }
        c += 8;
    }
    let mut out = [0.0f32; 8];
    for (o, a) in out.iter_mut().zip(acc) {
        *o = hsum(a);
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

#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}
