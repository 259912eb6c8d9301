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
}
