//! The MaxSim kernel ([`super::kernel`]) on 16-lane AVX-512F registers: each document load feeds
//! four FMAs of twice the AVX2 width.

use std::arch::x86_64::*;

super::kernel::x86_kernel! {
    feature: "avx512f",
    reg: __m512,
    lanes: 16,
    zero: _mm512_setzero_ps,
    load: _mm512_loadu_ps,
    fma: _mm512_fmadd_ps,
    add: _mm512_add_ps,
    hsum: _mm512_reduce_add_ps,
    fold: fold,
}

/// 16 lanes to 8: lane i + lane i + 8.
///
/// # Safety
///
/// The CPU has the target features: the only precondition (a caller
/// compiled with them needs no proof).
#[target_feature(enable = "avx512f")]
fn fold(v: __m512) -> __m256 {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    _mm256_add_ps(_mm512_castps512_ps256(v), hi)
}
