//! AVX2 + FMA (+ F16C) MaxSim updates over compact document rows: each 8-value chunk of a
//! document row is decoded once in registers (bf16: widen and shift left 16; f16: `vcvtph2ps`;
//! int8: sign-extend and convert) and feeds four query rows' FMAs. int8 rows are scaled once per
//! dot, after the sum.

use std::arch::x86_64::*;

use super::super::compact::{bf16_to_f32, f16_to_f32, CompactKernel};
use super::avx2::hsum;

/// 8 bf16 values at `p` as f32 lanes (widen, shift left 16; exact).
///
/// # Safety
///
/// `p` points to 8 readable `u16` (the kernels' loop bounds prove it at each call).
#[target_feature(enable = "avx2")]
unsafe fn load_bf16(p: *const u16) -> __m256 {
    // SAFETY: the 8 `u16` read start at `p` and are readable (this function's precondition).
    unsafe {
        let h = _mm_loadu_si128(p as *const __m128i);
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
    }
}

/// 8 IEEE half values at `p` as f32 lanes (`vcvtph2ps`; exact).
///
/// # Safety
///
/// `p` points to 8 readable `u16` (the kernels' loop bounds prove it at each call).
#[target_feature(enable = "avx2,f16c")]
unsafe fn load_f16(p: *const u16) -> __m256 {
    // SAFETY: the 8 `u16` read start at `p` and are readable (this function's precondition).
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
}

/// 8 int8 values at `p` as f32 lanes (sign-extend, convert; exact).
///
/// # Safety
///
/// `p` points to 8 readable `i8` (the kernels' loop bounds prove it at each call).
#[target_feature(enable = "avx2")]
unsafe fn load_i8(p: *const i8) -> __m256 {
    // SAFETY: the 8 `i8` read start at `p` and are readable (this function's precondition).
    unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i))) }
}

compact_update!(
    inner_bf16,
    u16,
    "avx2,fma",
    load_bf16,
    bf16_to_f32,
    width = 8,
    zero = _mm256_setzero_ps,
    fmadd = _mm256_fmadd_ps,
    loadu = _mm256_loadu_ps,
    hsum = hsum
);
compact_update!(
    inner_f16,
    u16,
    "avx2,fma,f16c",
    load_f16,
    f16_to_f32,
    width = 8,
    zero = _mm256_setzero_ps,
    fmadd = _mm256_fmadd_ps,
    loadu = _mm256_loadu_ps,
    hsum = hsum
);
compact_update!(
    inner_i8,
    i8,
    "avx2,fma",
    load_i8,
    |q: i8| q as f32,
    width = 8,
    zero = _mm256_setzero_ps,
    fmadd = _mm256_fmadd_ps,
    loadu = _mm256_loadu_ps,
    hsum = hsum
);

/// 16 int8 values at `p` as i16 lanes (sign-extend; exact).
///
/// # Safety
///
/// `p` points to 16 readable `i8` (the kernel's loop bounds prove it at each call).
#[target_feature(enable = "avx2")]
unsafe fn widen_i8(p: *const i8) -> __m256i {
    // SAFETY: the 16 `i8` read start at `p` and are readable (this function's precondition).
    unsafe { _mm256_cvtepi8_epi16(_mm_loadu_si128(p as *const __m128i)) }
}

/// 16 i16 values at `p`.
///
/// # Safety
///
/// `p` points to 16 readable `i16` (the kernel's loop bounds prove it at each call).
#[target_feature(enable = "avx2")]
unsafe fn load_i16(p: *const i16) -> __m256i {
    // SAFETY: the 16 `i16` read start at `p` and are readable (this function's precondition).
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// Sum of the 8 i32 lanes (wrapping; the kernel's sums never wrap).
///
/// # Safety
///
/// The CPU has the target features: the only precondition (a caller
/// compiled with them needs no proof).
#[target_feature(enable = "avx2")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// The sums of 8 registers' i32 lanes at once: [sum(a0), ..., sum(a7)] (wrapping; the kernel's
/// sums never wrap, so any order of the additions gives the same value).
///
/// # Safety
///
/// The CPU has the target features: the only precondition (a caller
/// compiled with them needs no proof).
#[target_feature(enable = "avx2")]
pub(super) fn tree8_i32(a: [__m256i; 8]) -> [i32; 8] {
    let t0 = _mm256_hadd_epi32(a[0], a[1]);
    let t1 = _mm256_hadd_epi32(a[2], a[3]);
    let t2 = _mm256_hadd_epi32(a[4], a[5]);
    let t3 = _mm256_hadd_epi32(a[6], a[7]);
    let u0 = _mm256_hadd_epi32(t0, t1);
    let u1 = _mm256_hadd_epi32(t2, t3);
    let lo = _mm256_permute2x128_si256(u0, u1, 0x20);
    let hi = _mm256_permute2x128_si256(u0, u1, 0x31);
    let mut out = [0i32; 8];
    // SAFETY: `out` has room for the 8 i32 the store writes.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), _mm256_add_epi32(lo, hi)) };
    out
}

/// `a + vpmaddwd(y, x)`: i16 pairs multiplied, each pair's sum added to the i32 lanes of `a`.
///
/// # Safety
///
/// The CPU has the target features: the only precondition (a caller
/// compiled with them needs no proof).
#[target_feature(enable = "avx2")]
pub(super) fn madd_add(a: __m256i, y: __m256i, x: __m256i) -> __m256i {
    _mm256_add_epi32(a, _mm256_madd_epi16(y, x))
}

int8q_update!(
    "avx2",
    width = 16,
    zero = _mm256_setzero_si256,
    widen = widen_i8,
    loadq = load_i16,
    madd_add = madd_add,
    hsum = hsum_i32,
    tree8 = tree8_i32,
    quad = 2
);

compact_entry_points!(detected: "avx2, fma and f16c");
