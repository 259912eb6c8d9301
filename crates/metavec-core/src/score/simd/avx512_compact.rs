//! AVX-512 (F + BW) MaxSim updates over compact document rows: the AVX2 loop at 16 lanes. Each
//! 16-value chunk of a document row is decoded once in registers (bf16: widen and shift left 16;
//! f16: `vcvtph2ps`; int8: sign-extend and convert) and feeds four query rows' FMAs. int8 rows are
//! scaled once per dot, after the sum. (avx512_bf16's `vdpbf16ps` would need the query rounded to
//! bf16 as well; not used.)

use std::arch::x86_64::*;

use super::super::compact::{bf16_to_f32, f16_to_f32, CompactKernel};

/// 16 bf16 values at `p` as f32 lanes (widen, shift left 16; exact).
///
/// # Safety
///
/// `p` points to 16 readable `u16` (the kernels' loop bounds prove it at each call).
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn load_bf16(p: *const u16) -> __m512 {
    // SAFETY: the 16 `u16` read start at `p` and are readable (this function's precondition).
    unsafe {
        let h = _mm256_loadu_si256(p as *const __m256i);
        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
    }
}

/// 16 IEEE half values at `p` as f32 lanes (`vcvtph2ps`; exact).
///
/// # Safety
///
/// `p` points to 16 readable `u16` (the kernels' loop bounds prove it at each call).
#[target_feature(enable = "avx512f")]
unsafe fn load_f16(p: *const u16) -> __m512 {
    // SAFETY: the 16 `u16` read start at `p` and are readable (this function's precondition).
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
}

/// 16 int8 values at `p` as f32 lanes (sign-extend, convert; exact).
///
/// # Safety
///
/// `p` points to 16 readable `i8` (the kernels' loop bounds prove it at each call).
#[target_feature(enable = "avx512f")]
unsafe fn load_i8(p: *const i8) -> __m512 {
    // SAFETY: the 16 `i8` read start at `p` and are readable (this function's precondition).
    unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i))) }
}

/// Sum of the 16 lanes.
///
/// # Safety
///
/// The CPU has the target features: the only precondition (a caller
/// compiled with them needs no proof).
#[target_feature(enable = "avx512f")]
fn hsum(v: __m512) -> f32 {
    _mm512_reduce_add_ps(v)
}

compact_update!(
    inner_bf16,
    u16,
    "avx512f,avx512bw",
    load_bf16,
    bf16_to_f32,
    width = 16,
    zero = _mm512_setzero_ps,
    fmadd = _mm512_fmadd_ps,
    loadu = _mm512_loadu_ps,
    hsum = hsum
);
compact_update!(
    inner_f16,
    u16,
    "avx512f,avx512bw",
    load_f16,
    f16_to_f32,
    width = 16,
    zero = _mm512_setzero_ps,
    fmadd = _mm512_fmadd_ps,
    loadu = _mm512_loadu_ps,
    hsum = hsum
);
compact_update!(
    inner_i8,
    i8,
    "avx512f,avx512bw",
    load_i8,
    |q: i8| q as f32,
    width = 16,
    zero = _mm512_setzero_ps,
    fmadd = _mm512_fmadd_ps,
    loadu = _mm512_loadu_ps,
    hsum = hsum
);

/// 32 int8 values at `p` as i16 lanes (sign-extend; exact).
///
/// # Safety
///
/// `p` points to 32 readable `i8` (the kernel's loop bounds prove it at each call).
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn widen_i8(p: *const i8) -> __m512i {
    // SAFETY: the 32 `i8` read start at `p` and are readable (this function's precondition).
    unsafe { _mm512_cvtepi8_epi16(_mm256_loadu_si256(p as *const __m256i)) }
}

/// 32 i16 values at `p`.
///
/// # Safety
///
/// `p` points to 32 readable `i16` (the kernel's loop bounds prove it at each call).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn load_i16(p: *const i16) -> __m512i {
    // SAFETY: the 32 `i16` read start at `p` and are readable (this function's precondition).
    unsafe { _mm512_loadu_si512(p as *const __m512i) }
}

/// Sum of the 16 i32 lanes (wrapping; the kernel's sums never wrap).
///
/// # Safety
///
/// The CPU has the target features: the only precondition (a caller
/// compiled with them needs no proof).
#[target_feature(enable = "avx512f")]
pub(super) fn hsum_i32(v: __m512i) -> i32 {
    _mm512_reduce_add_epi32(v)
}

/// [`super::avx2_compact::tree8_i32`] of 16-lane registers (each folded to 8 lanes first).
///
/// # Safety
///
/// The CPU has the target features: the only precondition (a caller
/// compiled with them needs no proof).
#[target_feature(enable = "avx512f")]
pub(super) fn tree8_i32(a: [__m512i; 8]) -> [i32; 8] {
    let mut f = [_mm256_setzero_si256(); 8];
    for (h, &r) in f.iter_mut().zip(&a) {
        *h = _mm256_add_epi32(_mm512_castsi512_si256(r), _mm512_extracti64x4_epi64::<1>(r));
    }
    super::avx2_compact::tree8_i32(f)
}

/// `a + vpmaddwd(y, x)`: i16 pairs multiplied, each pair's sum added to the i32 lanes of `a`.
///
/// # Safety
///
/// The CPU has the target features: the only precondition (a caller
/// compiled with them needs no proof).
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn madd_add(a: __m512i, y: __m512i, x: __m512i) -> __m512i {
    _mm512_add_epi32(a, _mm512_madd_epi16(y, x))
}

int8q_update!(
    "avx512f,avx512bw",
    width = 32,
    zero = _mm512_setzero_si512,
    widen = widen_i8,
    loadq = load_i16,
    madd_add = madd_add,
    hsum = hsum_i32,
    tree8 = tree8_i32,
    quad = 4
);

compact_entry_points!(detected: "avx512f, avx512bw and avx512vl");
