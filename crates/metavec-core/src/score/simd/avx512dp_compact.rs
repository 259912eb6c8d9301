//! AVX-512 with the dot-product instructions: bf16 rows scored with `vdpbf16ps` against the query
//! rounded to bf16 once per search (each instruction multiplies 32 bf16 pairs and adds each
//! lane's two products to an f32 lane: twice the multiply-adds of an f32 FMA), and int8 rows with
//! VNNI's `vpdpwssd` (the integer kernel's `vpmaddwd` + `vpaddd` in one instruction, the same
//! exact i32 sums). Every other compact kernel is the AVX-512 set's.

use std::arch::x86_64::*;

use super::super::compact::{Columns, CompactKernel};

/// The features of this module's own kernels (the AVX-512 set's need a subset).
#[cfg(test)]
const FEATURES: &str = "avx512f,avx512bw,avx512vl,avx512bf16,avx512vnni";

/// Only handed out by the kernel table after runtime detection of avx512f, avx512bw, avx512vl,
/// avx512bf16 and avx512vnni.
pub const KERNEL: CompactKernel = CompactKernel {
    bf16_q: update_bf16_q,
    int8_q: update_int8_q,
    int8_dots: dots_int8,
    column_dots: Some(column_dots),
    bf16_q_lead: LEAD,
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

/// [`super::super::compact::ColumnDotsFn`] on `vpdpbusd`: `Q` query rows by `B` blocks of 16
/// rows per step, one load per block and one broadcast per query row for every 4 dimensions,
/// `Q * B` accumulators each holding 16 rows' dots (no horizontal sums).
fn column_dots(qu: &[u8], nq: usize, cols: &Columns, out: &mut [i32]) {
    let (g, stride) = (cols.groups, cols.padded_rows());
    assert!(qu.len() >= nq * 4 * g && out.len() >= nq * stride);
    assert_eq!(cols.bytes.len(), stride / 16 * g * 64);
    // SAFETY: `inner_column_dots` needs only the CPU features (it slices with bounds checks),
    // and they were detected before KERNEL, the only way here, was handed out.
    unsafe { inner_column_dots(qu, nq, cols, out) }
}

/// [`column_dots`] with the features on.
///
/// # Safety
///
/// The CPU has the target features: the only precondition (a caller
/// compiled with them needs no proof).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn inner_column_dots(qu: &[u8], nq: usize, cols: &Columns, out: &mut [i32]) {
    /// Query rows `q` (`Q` rows of `4 * g` bytes) by blocks `b..b + B`, into `out` (row `t` at
    /// `out[t * stride..]`, the block's 16 lanes at `16 * b`).
    ///
    /// # Safety
    ///
    /// The CPU has the target features: the only precondition (a caller
    /// compiled with them needs no proof).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn step<const Q: usize, const B: usize>(
        q: &[u8],
        bytes: &[i8],
        b: usize,
        g: usize,
        out: &mut [i32],
        stride: usize,
    ) {
        // Re-slicing proves the bounds the loads below rely on.
        let q = &q[..Q * 4 * g];
        let blk: [&[i8]; B] =
            std::array::from_fn(|k| &bytes[(b + k) * g * 64..(b + k + 1) * g * 64]);
        let mut acc = [[_mm512_setzero_si512(); B]; Q];
        for gi in 0..g {
            // SAFETY: gi < g: the 64 bytes at 64 * gi lie in each block's slice (g * 64 bytes),
            // and the 4 at 4 * (t * g + gi) in query row t < Q of `q` (4 * g bytes a row).
            unsafe {
                let x: [__m512i; B] = std::array::from_fn(|k| {
                    _mm512_loadu_si512(blk[k].as_ptr().add(64 * gi).cast())
                });
                for (t, row) in acc.iter_mut().enumerate() {
                    let four = q
                        .as_ptr()
                        .add(4 * (t * g + gi))
                        .cast::<i32>()
                        .read_unaligned();
                    let y = _mm512_set1_epi32(four);
                    for (a, &xk) in row.iter_mut().zip(&x) {
                        *a = _mm512_dpbusd_epi32(*a, y, xk);
                    }
                }
            }
        }
        for (t, row) in acc.iter().enumerate() {
            for (k, &a) in row.iter().enumerate() {
                let o = &mut out[t * stride + 16 * (b + k)..][..16];
                // SAFETY: `o` has room for the 16 i32 the store writes.
                unsafe { _mm512_storeu_si512(o.as_mut_ptr().cast(), a) };
            }
        }
    }

    let (g, stride) = (cols.groups, cols.padded_rows());
    let blocks = stride / 16;
    let mut i = 0;
    while i < nq {
        let qn = super::block_rows(nq - i);
        let (q, o) = (&qu[i * 4 * g..], &mut out[i * stride..]);
        let mut b = 0;
        while b < blocks {
            let two = blocks - b >= 2;
            match (qn, two) {
                (4, true) => step::<4, 2>(q, &cols.bytes, b, g, o, stride),
                (4, false) => step::<4, 1>(q, &cols.bytes, b, g, o, stride),
                (2, true) => step::<2, 2>(q, &cols.bytes, b, g, o, stride),
                (2, false) => step::<2, 1>(q, &cols.bytes, b, g, o, stride),
                (_, true) => step::<1, 2>(q, &cols.bytes, b, g, o, stride),
                (_, false) => step::<1, 1>(q, &cols.bytes, b, g, o, stride),
            }
            b += if two { 2 } else { 1 };
        }
        i += qn;
    }
}

/// Rows [`inner_bf16_q`] prefetches ahead of the block it scores: two blocks of four.
const LEAD: usize = 8;

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

/// The lane sums of sixteen registers at once, in one register: lane `l` is the sum of
/// `v[4 * (l % 4) + l / 4]`'s lanes (a 4 x 4 transpose of the slots). Every sum follows the same
/// tree whatever its slot (`t_m = (v[m] + v[m+8]) + (v[m+4] + v[m+12])`, then `(t_0 + t_2) +
/// (t_1 + t_3)`), and no lane of one register meets another's: a dot reduces to the same bits in
/// any block, zero registers padding the small ones. 30 shuffles and 15 adds for sixteen sums,
/// where one `_mm512_reduce_add_ps` each takes eight instructions.
///
/// # Safety
///
/// The CPU has the target features: the only precondition (a caller
/// compiled with them needs no proof).
#[target_feature(enable = "avx512f")]
fn reduce16(v: [__m512; 16]) -> __m512 {
    // Halves: lanes 0..8 + 8..16 of each register, two registers per result.
    let w: [__m512; 8] = std::array::from_fn(|p| {
        let (a, b) = (v[2 * p], v[2 * p + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
        )
    });
    // Quarters: each 128-bit block now one register's four partial sums.
    let x: [__m512; 4] = std::array::from_fn(|r| {
        let (a, b) = (w[2 * r], w[2 * r + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
        )
    });
    // Within 128-bit blocks: pairs, then single sums.
    let y: [__m512; 2] = std::array::from_fn(|t| {
        let (a, b) = (x[2 * t], x[2 * t + 1]);
        _mm512_add_ps(
            _mm512_shuffle_ps::<0b01_00_01_00>(a, b),
            _mm512_shuffle_ps::<0b11_10_11_10>(a, b),
        )
    });
    _mm512_add_ps(
        _mm512_shuffle_ps::<0b10_00_10_00>(y[0], y[1]),
        _mm512_shuffle_ps::<0b11_01_11_01>(y[0], y[1]),
    )
}

/// `maxes[i] = max(maxes[i], <qb_i, d_j>)` over the rows of `doc`, blocked `Q` query rows by `D`
/// document rows (4 x 4 where the budget allows: sixteen accumulators, each document chunk loaded
/// once for four query rows and each query chunk once for four document rows), one `vdpbf16ps`
/// per pair per 32 values, the sixteen dots reduced together ([`reduce16`]).
///
/// # Safety
///
/// The CPU has the target features: the only precondition (a caller
/// compiled with them needs no proof).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn inner_bf16_q(qb: &[u16], r_q: usize, dim: usize, doc: &[u16], maxes: &mut [f32]) {
    /// The dots of `Q` query rows (contiguous in `q`) with `D` document rows (contiguous in
    /// `d`): dot (k, t) in lane `4 * k + t` of the result.
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
        next: *const u16,
        (part, parts): (usize, usize),
    ) -> __m512 {
        // Re-slicing proves the bounds the masked loads below rely on.
        let (q, d) = (&q[..Q * dim], &d[..D * dim]);
        let (qp, dp) = (q.as_ptr(), d.as_ptr());
        let mut acc = [[_mm512_setzero_ps(); D]; Q];
        let mut c = 0;
        while c < dim {
            let m = lanes(dim, c);
            if !next.is_null() && (c / 32) % parts == part {
                // This block's share of the chunks of the D rows two blocks on: streaming a
                // deep prefix from memory overlaps with the arithmetic (into L2, as the f32
                // kernel's). A prefetch never faults.
                for t in 0..D {
                    _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(t * dim + c).cast());
                }
            }
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
        // Dot (k, t) in slot 4t + k lands in lane 4k + t.
        let mut slots = [_mm512_setzero_ps(); 16];
        for (k, row) in acc.iter().enumerate() {
            for (t, &a) in row.iter().enumerate() {
                slots[4 * t + k] = a;
            }
        }
        reduce16(slots)
    }

    // Full 4 x 4 blocks keep their dots' running maxima in registers, one per four query rows
    // (lane 4k + t: query row k's best over document rows t, t + 4, ...), folded into `maxes`
    // at the end; other blocks go to `maxes` directly. `max(dots, run)` keeps `run` where a dot
    // is NaN, as the scalar `v > m` does.
    const RUNS: usize = 16;
    let mut run = [_mm512_set1_ps(f32::NEG_INFINITY); RUNS];
    let n = doc.len() / dim;
    let mut j = 0;
    while j < n {
        let dn = super::block_rows(n - j);
        let d = &doc[j * dim..(j + dn) * dim];
        // The rows two blocks (LEAD rows) on, while they lie in this part, prefetched a share
        // of their chunks by each block of query rows: spread over all the arithmetic on these
        // rows, the loads overlap it instead of queueing in one burst (the rerank prefetches
        // only a bf16 run's first LEAD rows).
        let ahead = if j + LEAD + dn <= n {
            doc.as_ptr().wrapping_add((j + LEAD) * dim)
        } else {
            std::ptr::null()
        };
        let mut i = 0;
        while i < r_q {
            let qn = super::block_rows(r_q - i);
            let q = &qb[i * dim..(i + qn) * dim];
            let share = (i / 4, r_q.div_ceil(4));
            let dots = match (qn, dn) {
                (4, 4) => block::<4, 4>(q, d, dim, ahead, share),
                (4, 2) => block::<4, 2>(q, d, dim, ahead, share),
                (4, _) => block::<4, 1>(q, d, dim, ahead, share),
                (2, 4) => block::<2, 4>(q, d, dim, ahead, share),
                (2, 2) => block::<2, 2>(q, d, dim, ahead, share),
                (2, _) => block::<2, 1>(q, d, dim, ahead, share),
                (_, 4) => block::<1, 4>(q, d, dim, ahead, share),
                (_, 2) => block::<1, 2>(q, d, dim, ahead, share),
                _ => block::<1, 1>(q, d, dim, ahead, share),
            };
            if (qn, dn) == (4, 4) && i / 4 < RUNS {
                run[i / 4] = _mm512_max_ps(dots, run[i / 4]);
            } else {
                let mut out = [0f32; 16];
                // SAFETY: `out` has room for the 16 f32 the store writes.
                unsafe { _mm512_storeu_ps(out.as_mut_ptr(), dots) };
                for (k, m) in maxes[i..i + qn].iter_mut().enumerate() {
                    for &v in &out[4 * k..4 * k + dn] {
                        if v > *m {
                            *m = v;
                        }
                    }
                }
            }
            i += qn;
        }
        j += dn;
    }
    for (b, r) in run.iter().enumerate().take(r_q / 4) {
        let mut out = [0f32; 16];
        // SAFETY: `out` has room for the 16 f32 the store writes.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), *r) };
        for (k, m) in maxes.iter_mut().skip(4 * b).take(4).enumerate() {
            for &v in &out[4 * k..4 * k + 4] {
                if v > *m {
                    *m = v;
                }
            }
        }
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
    use super::super::super::compact::Bf16Query;

    /// A dot reduces to the same bits in every block shape: a document scored whole (4 x 4
    /// blocks) equals the max of its rows scored one at a time against one query row at a time
    /// (1 x 1 blocks), bit for bit; and the lanes land where `reduce16` says.
    #[test]
    fn every_block_shape_gives_the_same_bits() {
        let Some(set) = super::super::available().find(|k| k.name == "avx512dp") else {
            return;
        };
        let bf16_q = set.compact.bf16_q;
        for (r_q, rows, dim) in [(16, 64, 384), (7, 11, 100), (5, 9, 33), (4, 4, 64)] {
            let val = |i: usize, s: usize| (((i * s) % 251) as f32 - 125.0) / 97.0;
            let q: Vec<f32> = (0..r_q * dim).map(|i| val(i, 31)).collect();
            let doc: Vec<f32> = (0..rows * dim).map(|i| val(i, 7919)).collect();
            let (qb, db) = (Bf16Query::new(&q), Bf16Query::new(&doc));
            let mut whole = vec![f32::NEG_INFINITY; r_q];
            bf16_q(&qb.bits, &qb.rounded, r_q, dim, &db.bits, &mut whole);
            for (i, w) in whole.iter().enumerate() {
                let (qr, qf) = qb.rows(dim, i, i + 1);
                let mut one = [f32::NEG_INFINITY];
                for j in 0..rows {
                    bf16_q(qr, qf, 1, dim, &db.bits[j * dim..(j + 1) * dim], &mut one);
                }
                assert_eq!(
                    w.to_bits(),
                    one[0].to_bits(),
                    "r_q {r_q} rows {rows} row {i}"
                );
                let exact = (0..rows)
                    .map(|j| {
                        (0..dim)
                            .map(|c| {
                                qb.rounded[i * dim + c] as f64 * db.rounded[j * dim + c] as f64
                            })
                            .sum::<f64>()
                    })
                    .fold(f64::NEG_INFINITY, f64::max);
                assert!(
                    (*w as f64 - exact).abs() < 1e-3 * (1.0 + exact.abs()),
                    "{w} vs {exact}"
                );
            }
        }
    }

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
