//! AVX-512 with the dot-product instructions: bf16 rows scored with `vdpbf16ps` against the query
//! rounded to bf16 once per search (each instruction multiplies 32 bf16 pairs and adds each
//! lane's two products to an f32 lane: twice the multiply-adds of an f32 FMA), and int8 rows with
//! VNNI's `vpdpwssd` (the integer kernel's `vpmaddwd` + `vpaddd` in one instruction, the same
//! exact i32 sums). Every other compact kernel is the AVX-512 set's.

use std::arch::x86_64::*;

use super::super::compact::CompactKernel;

/// The features of this module's own kernels (the AVX-512 set's need a subset).
#[cfg(test)]
const FEATURES: &str = "avx512f,avx512bw,avx512vl,avx512bf16,avx512vnni";

/// Only handed out by the kernel table after runtime detection of avx512f, avx512bw, avx512vl,
/// avx512bf16 and avx512vnni.
pub const KERNEL: CompactKernel = CompactKernel {
    bf16_q: update_bf16_q,
    int8_q: update_int8_q,
    int8_dots: dots_int8,
    ..super::avx512_compact::KERNEL
};

/// `a + vpmaddwd(y, x)` in one instruction (`vpdpwssd`, no saturation).
///
/// # Safety
///
/// The CPU has the target features: the only precondition (a caller
/// compiled with them needs no proof).
#[target_feature(enable = "avx512f,avx512vnni")]
fn madd_add(a: __m512i, y: __m512i, x: __m512i) -> __m512i {
    _mm512_dpwssd_epi32(a, y, x)
}

use super::avx512_compact::{hsum_i32, load_i16, tree8_i32, widen_i8};

int8q_update!(
    "avx512f,avx512bw,avx512vl,avx512bf16,avx512vnni",
    width = 32,
    zero = _mm512_setzero_si512,
    widen = widen_i8,
    loadq = load_i16,
    madd_add = madd_add,
    hsum = hsum_i32,
    tree8 = tree8_i32,
    quad = 4
);

/// The lanes of a 32-value chunk at offset `c` of a `dim`-value row: all 32, or the row's tail.
fn lanes(dim: usize, c: usize) -> __mmask32 {
    let n = (dim - c).min(32);
    if n == 32 {
        !0
    } else {
        (1u32 << n) - 1
    }
}

/// The 32 bf16 values at `p` under mask `m` (lanes outside `m` read as 0 and are not accessed).
///
/// # Safety
///
/// The lanes of `m` at `p` are readable `u16`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn load_bh(m: __mmask32, p: *const u16) -> __m512bh {
    // SAFETY: the precondition covers the lanes read; masked-off lanes never fault. `__m512i`
    // and `__m512bh` are both 64 bytes of plain lanes: any bits are a valid value of either.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_maskz_loadu_epi16(m, p.cast())) }
}

/// `maxes[i] = max(maxes[i], <qb_i, d_j>)` over the rows of `doc`, blocked `Q` query rows by `D`
/// document rows (4 x 2 where the budget allows), one `vdpbf16ps` per pair per 32 values.
///
/// # Safety
///
/// The CPU has the target features: the only precondition (a caller
/// compiled with them needs no proof).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn inner_bf16_q(qb: &[u16], r_q: usize, dim: usize, doc: &[u16], maxes: &mut [f32]) {
    /// The dots of `Q` query rows (contiguous in `q`) with `D` document rows (contiguous in
    /// `d`), written to `out[k][t]` for k < Q, t < D.
    ///
    /// # Safety
    ///
    /// The CPU has the target features: the only precondition (a caller
    /// compiled with them needs no proof).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    fn block<const Q: usize, const D: usize>(
        q: &[u16],
        d: &[u16],
        dim: usize,
        out: &mut [[f32; 2]; 4],
    ) {
        // Re-slicing proves the bounds the masked loads below rely on.
        let (q, d) = (&q[..Q * dim], &d[..D * dim]);
        let (qp, dp) = (q.as_ptr(), d.as_ptr());
        let mut acc = [[_mm512_setzero_ps(); D]; Q];
        let mut c = 0;
        while c < dim {
            let m = lanes(dim, c);
            // SAFETY: `m` holds min(32, dim - c) lanes: those at dp + t * dim + c lie in
            // document row t < D of `d` (D * dim values) and those at qp + k * dim + c in query
            // row k < Q of `q` (Q * dim values), both cut to those lengths above.
            unsafe {
                let mut x = [std::mem::zeroed::<__m512bh>(); D];
                for (t, xt) in x.iter_mut().enumerate() {
                    *xt = load_bh(m, dp.add(t * dim + c));
                }
                for (k, row) in acc.iter_mut().enumerate() {
                    let y = load_bh(m, qp.add(k * dim + c));
                    for (a, &xt) in row.iter_mut().zip(&x) {
                        *a = _mm512_dpbf16_ps(*a, y, xt);
                    }
                }
            }
            c += 32;
        }
        for (o, row) in out.iter_mut().zip(&acc) {
            for (v, &a) in o.iter_mut().zip(row) {
                *v = _mm512_reduce_add_ps(a);
            }
        }
    }

    let n = doc.len() / dim;
    let mut j = 0;
    while j < n {
        let dn = if n - j >= 2 { 2 } else { 1 };
        let d = &doc[j * dim..(j + dn) * dim];
        let mut i = 0;
        while i < r_q {
            let qn = match r_q - i {
                4.. => 4,
                2..=3 => 2,
                _ => 1,
            };
            let q = &qb[i * dim..(i + qn) * dim];
            let mut dots = [[0f32; 2]; 4];
            match (qn, dn) {
                (4, 2) => block::<4, 2>(q, d, dim, &mut dots),
                (4, _) => block::<4, 1>(q, d, dim, &mut dots),
                (2, 2) => block::<2, 2>(q, d, dim, &mut dots),
                (2, _) => block::<2, 1>(q, d, dim, &mut dots),
                (_, 2) => block::<1, 2>(q, d, dim, &mut dots),
                _ => block::<1, 1>(q, d, dim, &mut dots),
            }
            for (k, row) in dots[..qn].iter().enumerate() {
                for &v in &row[..dn] {
                    if v > maxes[i + k] {
                        maxes[i + k] = v;
                    }
                }
            }
            i += qn;
        }
        j += dn;
    }
}

fn update_bf16_q(qb: &[u16], _qf: &[f32], r_q: usize, dim: usize, doc: &[u16], maxes: &mut [f32]) {
    assert!(qb.len() >= r_q * dim && maxes.len() >= r_q);
    if dim == 0 {
        return;
    }
    // SAFETY: `inner_bf16_q` needs only the CPU features (it slices with bounds checks), and
    // they were detected before KERNEL, the only way here, was handed out.
    unsafe { inner_bf16_q(qb, r_q, dim, doc, maxes) }
}

#[cfg(test)]
mod tests {
    /// The feature list this module compiles its kernels with is the table entry's.
    #[test]
    fn features_match_the_table() {
        let set = super::super::TABLE
            .iter()
            .find(|k| k.name == "avx512dp")
            .unwrap();
        assert_eq!(set.features.join(","), super::FEATURES);
    }
}
