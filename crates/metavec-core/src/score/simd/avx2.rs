//! The MaxSim kernel ([`super::kernel`]) on 8-lane AVX2 registers with FMA.

use std::arch::x86_64::*;

super::kernel::x86_kernel! {
    feature: "avx2,fma",
    reg: __m256,
    lanes: 8,
    zero: _mm256_setzero_ps,
    load: _mm256_loadu_ps,
    fma: _mm256_fmadd_ps,
    add: _mm256_add_ps,
    hsum: hsum,
    fold: fold,
}

/// An 8-lane register is already 8 lanes.
#[inline(always)]
fn fold(v: __m256) -> __m256 {
    v
}

/// Sum of the 8 lanes (also the compact AVX2 kernels' reduction).
///
/// # Safety
///
/// The CPU has the target features: the only precondition (a caller
/// compiled with them needs no proof).
#[target_feature(enable = "avx2,fma")]
pub(super) fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}
