//! Per-arch MaxSim kernels. Each is checked against the scalar reference by a proptest in `score`.
#![allow(unsafe_code)]

/// One kernel per encoding and ISA, the same loop: `$load` decodes `$w` values at a pointer, `$dec` one value
/// (for the tail), `$scale(j)` the factor of document row `j`.
macro_rules! compact_update {
    (
        $inner:ident, $elem:ty, $features:literal, $load:ident, $dec:expr,
        width = $w:literal, zero = $zero:ident, fmadd = $fmadd:ident, loadu = $loadu:ident,
        hsum = $hsum:ident
    ) => {
        /// `maxes[i] = max(maxes[i], max_j scale(j) * <q_i, d_j>)` over the rows of `doc`.
        ///
        /// # Safety
        ///
        /// The CPU has the target features: the only precondition (a caller
        /// compiled with them needs no proof).
        #[target_feature(enable = $features)]
        fn $inner(
            query: &[f32],
            r_q: usize,
            dim: usize,
            doc: &[$elem],
            scale: impl Fn(usize) -> f32,
            maxes: &mut [f32],
        ) {
            /// `N` query rows (contiguous in `q`) against document row `d`: each decoded chunk
            /// of `d` feeds `N` FMAs, so deep budgets (16 query rows) decode each chunk twice,
            /// not four times. Unless `next` is null, also prefetches the row that starts there.
            ///
            /// # Safety
            ///
            /// The CPU has the target features: the only precondition (a caller
            /// compiled with them needs no proof).
            #[target_feature(enable = $features)]
            fn block<const N: usize>(
                q: &[f32],
                dim: usize,
                d: &[$elem],
                s: f32,
                maxes: &mut [f32],
                next: *const $elem,
            ) {
                // Re-slicing proves the bounds the vector loads below rely on (two compares per
                // block of N * dim FMAs).
                let (q, d) = (&q[..N * dim], &d[..dim]);
                let dec = $dec;
                let (qp, dp) = (q.as_ptr(), d.as_ptr());
                let mut acc = [$zero(); N];
                let mut c = 0;
                while c + $w <= dim {
                    if !next.is_null() {
                        // A hint only: never faults, reads nothing architecturally.
                        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                            next.wrapping_add(c).cast(),
                        );
                    }
                    // SAFETY: c + $w <= dim: the $w values `$load` reads at dp + c lie in `d`
                    // (dim values), and the $w f32 at qp + k * dim + c in query row k < N of `q`
                    // (N * dim values): both slices were cut to those lengths above.
                    unsafe {
                        let x = $load(dp.add(c));
                        for (k, a) in acc.iter_mut().enumerate() {
                            *a = $fmadd($loadu(qp.add(k * dim + c)), x, *a);
                        }
                    }
                    c += $w;
                }
                let mut out = [0.0f32; N];
                for (o, a) in out.iter_mut().zip(acc) {
                    *o = $hsum(a);
                }
                for cc in c..dim {
                    let x = dec(d[cc]);
                    for (k, o) in out.iter_mut().enumerate() {
                        *o += q[k * dim + cc] * x;
                    }
                }
                for (m, o) in maxes.iter_mut().zip(out) {
                    let v = o * s;
                    if v > *m {
                        *m = v;
                    }
                }
            }

            let n = doc.len() / dim;
            for j in 0..n {
                let d = &doc[j * dim..(j + 1) * dim];
                let s = scale(j);
                // The first block of query rows prefetches the next document row.
                let next = if j + 1 < n {
                    d.as_ptr().wrapping_add(dim)
                } else {
                    std::ptr::null()
                };
                // Blocks of 8 query rows, then 4, then 1.
                let mut i = 0;
                while i < r_q {
                    let pf = if i == 0 { next } else { std::ptr::null() };
                    let w = match r_q - i {
                        8.. => 8,
                        4..=7 => 4,
                        _ => 1,
                    };
                    let (q, m) = (&query[i * dim..(i + w) * dim], &mut maxes[i..i + w]);
                    match w {
                        8 => block::<8>(q, dim, d, s, m, pf),
                        4 => block::<4>(q, dim, d, s, m, pf),
                        _ => block::<1>(q, dim, d, s, m, pf),
                    }
                    i += w;
                }
            }
        }
    };
}

/// How many nodes ahead the integer dots prefetch a node's row.
const ROWS_AHEAD: usize = 16;

/// The int8 dots for one ISA ([`super::compact::Int8DotsFn`]): the query rows quantised to i16
/// ([`super::compact::QuantQuery`]) against int8 rows picked by number, in exact i32 arithmetic as
/// the integer int8 update ([`int8q_update!`]): each `$w`-value chunk of a node's row is widened
/// once and meets every query row of the block, each query chunk is loaded once and meets every
/// node of the block. Four query rows meet `$quad` nodes at a time (the token index's centroid and
/// vector-0 scores; four where the registers hold sixteen accumulators, else two), a single row
/// eight nodes (the graph walk's case). The sums are exact, so every blocking and every ISA gives
/// the scalar reference's bits. Where the nodes are scattered, the rows [`ROWS_AHEAD`] nodes on
/// are prefetched: they miss every cache level.
macro_rules! int8q_dots {
    (
        $features:literal, width = $w:literal, zero = $zero:ident, widen = $widen:ident,
        loadq = $loadq:ident, madd_add = $madd_add:ident, hsum = $hsum:ident,
        tree8 = $tree8:ident, quad = $quad:literal
    ) => {
        /// `out[i * nodes.len() + k] = <qv row i, codes row nodes[k]> as f32 * (qs[i] *
        /// scales[nodes[k]])` for the `nq` rows of `qv`.
        ///
        /// # Safety
        ///
        /// The CPU has the target features: the only precondition (a caller
        /// compiled with them needs no proof).
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        fn inner_dots_i8(
            qv: &[i16],
            qs: &[f32],
            nq: usize,
            dim: usize,
            codes: &[i8],
            scales: &[f32],
            nodes: &[u32],
            out: &mut [f32],
        ) {
            /// The exact dots of `Q` query rows (contiguous in `q`) with `N` nodes, row `t`'s
            /// into `out[t * stride..]` (scaled).
            ///
            /// # Safety
            ///
            /// The CPU has the target features: the only precondition (a caller
            /// compiled with them needs no proof).
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            fn dots<const Q: usize, const N: usize>(
                q: &[i16],
                qs: &[f32],
                dim: usize,
                codes: &[i8],
                scales: &[f32],
                nodes: &[u32],
                out: &mut [f32],
                stride: usize,
            ) {
                // Re-slicing proves the bounds the vector loads below rely on.
                let qr: [&[i16]; Q] = std::array::from_fn(|t| &q[t * dim..(t + 1) * dim]);
                let rows: [&[i8]; N] = std::array::from_fn(|j| {
                    let n = nodes[j] as usize;
                    &codes[n * dim..(n + 1) * dim]
                });
                let mut acc = [[$zero(); N]; Q];
                let mut c = 0;
                while c + $w <= dim {
                    // SAFETY: c + $w <= dim: the $w i8 `$widen` reads at each node row + c and
                    // the $w i16 at each query row + c lie inside those rows (all cut to `dim`
                    // above).
                    unsafe {
                        let x: [_; N] = std::array::from_fn(|j| $widen(rows[j].as_ptr().add(c)));
                        for (t, row) in acc.iter_mut().enumerate() {
                            let y = $loadq(qr[t].as_ptr().add(c));
                            for (a, &xj) in row.iter_mut().zip(&x) {
                                *a = $madd_add(*a, y, xj);
                            }
                        }
                    }
                    c += $w;
                }
                // Eight sums at a time in one reduction tree, the rest one by one.
                let mut flat = [[$zero(); 8]; 2];
                let mut sums = [0i32; 16];
                let total = Q * N;
                for t in 0..Q {
                    for j in 0..N {
                        let at = t * N + j;
                        if total >= 8 && at < 16 {
                            flat[at / 8][at % 8] = acc[t][j];
                        } else {
                            sums[at] = $hsum(acc[t][j]);
                        }
                    }
                }
                if total >= 8 {
                    for (g, group) in flat.iter().enumerate().take(total / 8) {
                        sums[g * 8..g * 8 + 8].copy_from_slice(&$tree8(*group));
                    }
                }
                for t in 0..Q {
                    for j in 0..N {
                        let mut s = sums[t * N + j];
                        for cc in c..dim {
                            s += qr[t][cc] as i32 * rows[j][cc] as i32;
                        }
                        out[t * stride + j] = s as f32 * (qs[t] * scales[nodes[j] as usize]);
                    }
                }
            }

            let n = nodes.len();
            let mut i = 0;
            while i < nq {
                let rows = if nq - i >= 4 { 4 } else { 1 };
                let (qi, si) = (&qv[i * dim..(i + rows) * dim], &qs[i..i + rows]);
                let oi = &mut out[i * n..(i + rows) * n];
                let mut k = 0;
                while k < n {
                    let far = k + $crate::score::simd::ROWS_AHEAD;
                    // Consecutive nodes (every centroid in order) stream without help.
                    let scattered = nodes
                        .get(far)
                        .is_some_and(|&f| f as usize != nodes[k] as usize + (far - k));
                    if scattered {
                        for &a in &nodes[far..(far + $quad).min(n)] {
                            let a = a as usize * dim;
                            if let Some(row) = codes.get(a..a + dim) {
                                $crate::score::simd::prefetch(row);
                            }
                        }
                    }
                    let (ns, o) = (&nodes[k..], &mut oi[k..]);
                    let w = match (rows, n - k) {
                        (4, r) if r >= $quad => {
                            dots::<4, $quad>(qi, si, dim, codes, scales, ns, o, n);
                            $quad
                        }
                        (4, 2..) => {
                            dots::<4, 2>(qi, si, dim, codes, scales, ns, o, n);
                            2
                        }
                        (4, _) => {
                            dots::<4, 1>(qi, si, dim, codes, scales, ns, o, n);
                            1
                        }
                        (_, 8..) => {
                            dots::<1, 8>(qi, si, dim, codes, scales, ns, o, n);
                            8
                        }
                        _ => {
                            dots::<1, 1>(qi, si, dim, codes, scales, ns, o, n);
                            1
                        }
                    };
                    k += w;
                }
                i += rows;
            }
        }

        #[allow(clippy::too_many_arguments)]
        fn dots_int8(
            qv: &[i16],
            qs: &[f32],
            nq: usize,
            dim: usize,
            codes: &[i8],
            scales: &[f32],
            nodes: &[u32],
            out: &mut [f32],
        ) {
            assert!(qv.len() >= nq * dim && qs.len() >= nq && out.len() >= nq * nodes.len());
            // SAFETY: `inner_dots_i8` needs only the CPU features (it slices every row and
            // scale with bounds checks), and they were detected before the module's KERNEL,
            // the only way here, was handed out.
            unsafe { inner_dots_i8(qv, qs, nq, dim, codes, scales, nodes, out) }
        }
    };
}

/// The integer int8 kernel for one ISA ([`super::compact::UpdateI8QFn`]), blocked `Q` query rows
/// by `D` document rows (4 x 2 where the budget allows): each `$w`-value chunk of a document row
/// is widened to i16 once (`$widen`) and meets `Q` query rows, each query chunk is loaded once and
/// meets `D` document rows, with one `$madd_add` per pair (i16 pairs multiplied, summed and added
/// into i32 lanes: `vpmaddwd` + `vpaddd`, or VNNI's `vpdpwssd` alone). The i32 sums are exact (the query's quantisation bounds
/// them), so the result is bit-identical to the scalar reference whatever the lane count or the
/// blocking. It expands [`int8q_dots!`] with the same instructions as well.
macro_rules! int8q_update {
    (
        $features:literal, width = $w:literal, zero = $zero:ident, widen = $widen:ident,
        loadq = $loadq:ident, madd_add = $madd_add:ident, hsum = $hsum:ident,
        tree8 = $tree8:ident, quad = $quad:literal
    ) => {
        // The int8 dots on the same instructions.
        int8q_dots!(
            $features,
            width = $w,
            zero = $zero,
            widen = $widen,
            loadq = $loadq,
            madd_add = $madd_add,
            hsum = $hsum,
            tree8 = $tree8,
            quad = $quad
        );

        /// `maxes[i] = max(maxes[i], <qv_i, d_j> * (qs[i] * scales[j]))` over the rows of `doc`.
        ///
        /// # Safety
        ///
        /// The CPU has the target features: the only precondition (a caller
        /// compiled with them needs no proof).
        #[target_feature(enable = $features)]
        fn inner_i8q(
            qv: &[i16],
            qs: &[f32],
            r_q: usize,
            dim: usize,
            doc: &[i8],
            scales: &[f32],
            maxes: &mut [f32],
        ) {
            /// The exact dots of `Q` query rows (contiguous in `q`) with `D` document rows
            /// (contiguous in `d`), written to `out[k][t]` for k < Q, t < D.
            ///
            /// # Safety
            ///
            /// The CPU has the target features: the only precondition (a caller
            /// compiled with them needs no proof).
            #[target_feature(enable = $features)]
            fn block<const Q: usize, const D: usize>(
                q: &[i16],
                d: &[i8],
                dim: usize,
                out: &mut [[i32; 2]; 4],
            ) {
                // Re-slicing proves the bounds the vector loads below rely on.
                let (q, d) = (&q[..Q * dim], &d[..D * dim]);
                let (qp, dp) = (q.as_ptr(), d.as_ptr());
                let mut acc = [[$zero(); D]; Q];
                let mut c = 0;
                while c + $w <= dim {
                    // SAFETY: c + $w <= dim: the $w i8 `$widen` reads at dp + t * dim + c lie in
                    // document row t < D of `d` (D * dim values), and the $w i16 at
                    // qp + k * dim + c in query row k < Q of `q` (Q * dim values): both slices
                    // were cut to those lengths above.
                    unsafe {
                        let mut x = [$zero(); D];
                        for (t, xt) in x.iter_mut().enumerate() {
                            *xt = $widen(dp.add(t * dim + c));
                        }
                        for (k, row) in acc.iter_mut().enumerate() {
                            let y = $loadq(qp.add(k * dim + c));
                            for (a, &xt) in row.iter_mut().zip(&x) {
                                *a = $madd_add(*a, y, xt);
                            }
                        }
                    }
                    c += $w;
                }
                // A full block's eight sums in one reduction tree; smaller blocks one by one.
                let mut sums = [0i32; 8];
                if Q * D == 8 {
                    let mut flat = [$zero(); 8];
                    for (k, row) in acc.iter().enumerate() {
                        for (t, &a) in row.iter().enumerate() {
                            flat[k * D + t] = a;
                        }
                    }
                    sums = $tree8(flat);
                } else {
                    for (k, row) in acc.iter().enumerate() {
                        for (t, &a) in row.iter().enumerate() {
                            sums[k * D + t] = $hsum(a);
                        }
                    }
                }
                for k in 0..Q {
                    for t in 0..D {
                        let mut s = sums[k * D + t];
                        for cc in c..dim {
                            s += q[k * dim + cc] as i32 * d[t * dim + cc] as i32;
                        }
                        out[k][t] = s;
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
                    let qn = $crate::score::simd::block_rows(r_q - i);
                    let q = &qv[i * dim..(i + qn) * dim];
                    let mut dots = [[0i32; 2]; 4];
                    match (qn, dn) {
                        (4, 2) => block::<4, 2>(q, d, dim, &mut dots),
                        (4, _) => block::<4, 1>(q, d, dim, &mut dots),
                        (2, 2) => block::<2, 2>(q, d, dim, &mut dots),
                        (2, _) => block::<2, 1>(q, d, dim, &mut dots),
                        (_, 2) => block::<1, 2>(q, d, dim, &mut dots),
                        _ => block::<1, 1>(q, d, dim, &mut dots),
                    }
                    for (k, row) in dots[..qn].iter().enumerate() {
                        for (t, &dot) in row[..dn].iter().enumerate() {
                            let v = dot as f32 * (qs[i + k] * scales[j + t]);
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

        fn update_int8_q(
            qv: &[i16],
            qs: &[f32],
            r_q: usize,
            dim: usize,
            doc: &[i8],
            scales: &[f32],
            maxes: &mut [f32],
        ) {
            assert!(qv.len() >= r_q * dim && qs.len() >= r_q && maxes.len() >= r_q);
            if dim == 0 {
                return;
            }
            assert!(scales.len() >= doc.len() / dim, "one scale per int8 row");
            // SAFETY: `inner_i8q` needs only the CPU features (it slices with bounds checks),
            // and they were detected before the module's KERNEL, the only way here, was handed
            // out.
            unsafe { inner_i8q(qv, qs, r_q, dim, doc, scales, maxes) }
        }
    };
}

/// The safe entry points of one ISA's compact kernels (`inner_bf16`, `inner_f16`, `inner_i8` from
/// [`compact_update!`], `dots_int8` from [`int8q_dots!`]) and their [`CompactKernel`]. The
/// module is private and the kernel table hands `KERNEL` out only after the runtime check of
/// `$detected`: the SAFETY proofs below rest on that.
macro_rules! compact_entry_points {
    (detected: $detected:literal $(,)?) => {
        #[doc = concat!("Only handed out by the kernel table after runtime detection of ", $detected, ".")]
        pub const KERNEL: CompactKernel = CompactKernel {
            bf16: update_bf16,
            bf16_q: update_bf16_q,
            f16: update_f16,
            int8: update_int8,
            int8_q: update_int8_q,
            int8_dots: dots_int8,
            bf16_tiles: None,
            column_dots: None,
            bf16_q_lead: 0,
        };

        fn check(query: &[f32], r_q: usize, dim: usize, maxes: &[f32]) {
            assert!(query.len() >= r_q * dim && maxes.len() >= r_q);
        }

        fn update_bf16(query: &[f32], r_q: usize, dim: usize, doc: &[u16], maxes: &mut [f32]) {
            check(query, r_q, dim, maxes);
            if dim == 0 {
                return;
            }
            // SAFETY: `inner_bf16` needs only the CPU features (it slices with bounds checks),
            // and they were detected before KERNEL was handed out.
            unsafe { inner_bf16(query, r_q, dim, doc, |_| 1.0, maxes) }
        }

        /// The query rounded to bf16 meets the rows through the f32-query kernel (`qf`, the
        /// rounded rows as f32: exact): the products are those of `vdpbf16ps`, in another order.
        fn update_bf16_q(
            _qb: &[u16],
            qf: &[f32],
            r_q: usize,
            dim: usize,
            doc: &[u16],
            maxes: &mut [f32],
        ) {
            update_bf16(qf, r_q, dim, doc, maxes)
        }

        fn update_f16(query: &[f32], r_q: usize, dim: usize, doc: &[u16], maxes: &mut [f32]) {
            check(query, r_q, dim, maxes);
            if dim == 0 {
                return;
            }
            // SAFETY: as in `update_bf16`.
            unsafe { inner_f16(query, r_q, dim, doc, |_| 1.0, maxes) }
        }

        fn update_int8(
            query: &[f32],
            r_q: usize,
            dim: usize,
            doc: &[i8],
            scales: &[f32],
            maxes: &mut [f32],
        ) {
            check(query, r_q, dim, maxes);
            if dim == 0 {
                return;
            }
            assert!(scales.len() >= doc.len() / dim, "one scale per int8 row");
            // SAFETY: as in `update_bf16`.
            unsafe { inner_i8(query, r_q, dim, doc, |j| scales[j], maxes) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_compact;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_compact;
#[cfg(target_arch = "x86_64")]
mod avx512dp_compact;
#[cfg(target_arch = "x86_64")]
mod kernel;

use std::sync::OnceLock;

use super::compact::{self, CompactKernel};
use super::Kernel;

/// One entry of the kernel table: the f32 and compact MaxSim kernels compiled for one ISA, and
/// the CPU features they need. Obtained only from [`chosen`] and [`available`], which hand out
/// the entries the running CPU supports: the SIMD kernels' SAFETY proofs rest on that.
#[derive(Debug, Clone, Copy)]
pub struct KernelSet {
    /// What `METAVEC_KERNEL` caps the choice with, and what logs and benches show.
    pub name: &'static str,
    /// Every CPU feature the set's kernels need, as `is_x86_feature_detected!` names them.
    pub features: &'static [&'static str],
    pub f32: Kernel,
    pub compact: CompactKernel,
    /// Runtime detection of every one of `features`.
    detected: fn() -> bool,
}

/// A table entry for the kernels of modules `$f32` (from `kernel::x86_kernel!`) and `$compact`
/// (from `compact_entry_points!`), detected by one list of features (`tt`, not `literal`:
/// `is_x86_feature_detected!` matches the feature's token itself).
#[cfg(target_arch = "x86_64")]
macro_rules! kernel_set {
    (name: $name:literal, features: [$($f:tt),+], f32: $f32:ident, compact: $compact:ident) => {
        KernelSet {
            name: $name,
            features: &[$($f),+],
            f32: Kernel {
                update: $f32::maxsim_update,
                update_pair: $f32::maxsim_update_pair,
                dot: $f32::dot,
            },
            compact: $compact::KERNEL,
            detected: || true $(&& std::is_x86_feature_detected!($f))+,
        }
    };
}

/// The scalar references: the table's last entry, supported everywhere.
const SCALAR: KernelSet = KernelSet {
    name: "scalar",
    features: &[],
    f32: super::SCALAR,
    compact: compact::SCALAR,
    detected: || true,
};

/// The kernel table, best first. "Best" is the first entry the CPU supports; the f32 and the
/// compact kernels are chosen together (a CPU with AVX-512F but not BW and VL, i.e. only Knights
/// Landing, runs the AVX2 set). `avx512dp` is the AVX-512 set with the dot-product instructions
/// for bf16 (`vdpbf16ps`) and int8 (VNNI) rows: Sapphire Rapids and later, Zen 4 and later.
/// `amx` is that set with bf16 rows on AMX tiles (`tdpbf16ps`): Sapphire Rapids and later; its
/// detection also asks Linux for the tile state ([`amx::detected`]).
#[cfg(target_arch = "x86_64")]
static TABLE: &[KernelSet] = &[
    KernelSet {
        name: "amx",
        features: amx::FEATURES,
        f32: Kernel {
            update: avx512::maxsim_update,
            update_pair: avx512::maxsim_update_pair,
            dot: avx512::dot,
        },
        compact: amx::KERNEL,
        detected: amx::detected,
    },
    kernel_set!(
        name: "avx512dp",
        features: ["avx512f", "avx512bw", "avx512vl", "avx512bf16", "avx512vnni"],
        f32: avx512,
        compact: avx512dp_compact
    ),
    kernel_set!(
        name: "avx512",
        features: ["avx512f", "avx512bw", "avx512vl"],
        f32: avx512,
        compact: avx512_compact
    ),
    kernel_set!(
        name: "avx2",
        features: ["avx2", "fma", "f16c"],
        f32: avx2,
        compact: avx2_compact
    ),
    SCALAR,
];

/// The kernel table: only the scalar references on this architecture.
#[cfg(not(target_arch = "x86_64"))]
static TABLE: &[KernelSet] = &[SCALAR];

/// The first entry of `table` that `detected` accepts, starting at the entry named `cap` (at the
/// top when no entry has that name); the scalar references when none is accepted.
fn choose<'t>(
    table: &'t [KernelSet],
    cap: &str,
    detected: impl Fn(&KernelSet) -> bool,
) -> &'t KernelSet {
    let from = table.iter().position(|k| k.name == cap).unwrap_or(0);
    table[from..]
        .iter()
        .find(|k| detected(k))
        .unwrap_or(&SCALAR)
}

/// The kernels of this process: the best entry of the table the CPU supports, chosen once.
/// `METAVEC_KERNEL=avx2` (or `scalar`) caps the choice, for benchmarks and for comparing results
/// across machines.
pub fn chosen() -> &'static KernelSet {
    static CHOSEN: OnceLock<&'static KernelSet> = OnceLock::new();
    CHOSEN.get_or_init(|| {
        let cap = std::env::var("METAVEC_KERNEL").unwrap_or_default();
        if !cap.is_empty() && !TABLE.iter().any(|k| k.name == cap) {
            let known: Vec<&str> = TABLE.iter().map(|k| k.name).collect();
            tracing::warn!(METAVEC_KERNEL = %cap, ?known, "unknown kernel name ignored");
        }
        let k = choose(TABLE, &cap, |k| (k.detected)());
        tracing::debug!(kernel = k.name, "MaxSim kernels selected");
        k
    })
}

/// One core's `tdpbf16ps` rate on tile registers for about `time` (GFLOP/s), where the `amx` set
/// is available: the roofline's compute bound for bf16 rows on tiles.
pub fn tile_bf16_peak(time: std::time::Duration) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        amx::peak_gflops(time.as_secs_f64())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = time;
        None
    }
}

/// Every entry of the table the running CPU supports, best first (the scalar references last),
/// so tests and benches can compare each one whatever [`chosen`] picks.
pub fn available() -> impl Iterator<Item = &'static KernelSet> {
    TABLE.iter().filter(|k| (k.detected)())
}

/// The entries the unit tests check against the scalar references: every one this CPU supports.
/// An entry it lacks is reported on stderr, or fails the calling test when `METAVEC_EXPECT_ISA`
/// (comma-separated CPU features, set by CI where the machine has them) names one of its
/// features: there a missing kernel means the machine is not what CI claims, and tests that
/// skipped its kernels would pass having checked nothing.
#[cfg(test)]
pub(crate) fn under_test() -> &'static [&'static KernelSet] {
    use std::io::Write;
    static SETS: OnceLock<Vec<&'static KernelSet>> = OnceLock::new();
    SETS.get_or_init(|| {
        let expect = std::env::var("METAVEC_EXPECT_ISA").unwrap_or_default();
        let plan = test_plan(TABLE, &expect, |k| (k.detected)()).unwrap_or_else(|e| panic!("{e}"));
        for k in &plan.skipped {
            // Straight to stderr, past the harness's capture of `eprintln!`: a skip shows in
            // the output of a passing run too.
            let _ = writeln!(
                std::io::stderr(),
                "kernel tests: SKIPPED the {} kernels (this CPU lacks one of {})",
                k.name,
                k.features.join(", ")
            );
        }
        plan.run
    })
}

/// Which entries of `table` tests run and which they skip, given the features `expect` claims.
#[cfg(test)]
struct TestPlan<'t> {
    run: Vec<&'t KernelSet>,
    skipped: Vec<&'t KernelSet>,
}

/// Splits `table` into the entries `detected` accepts and the rest; an error when `expect` names
/// a feature that only rejected entries need (the CPU lacks it, so their kernels go untested), or
/// a feature no entry needs (a typo must not pass quietly).
#[cfg(test)]
fn test_plan<'t>(
    table: &'t [KernelSet],
    expect: &str,
    detected: impl Fn(&KernelSet) -> bool,
) -> Result<TestPlan<'t>, String> {
    let expected: Vec<&str> = expect
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    if let Some(f) = expected
        .iter()
        .find(|f| !table.iter().any(|k| k.features.contains(f)))
    {
        let known: Vec<&str> = table
            .iter()
            .flat_map(|k| k.features.iter().copied())
            .collect();
        return Err(format!(
            "METAVEC_EXPECT_ISA names {f:?}, which no kernel of this build needs (known: {})",
            known.join(", ")
        ));
    }
    let mut plan = TestPlan {
        run: Vec::new(),
        skipped: Vec::new(),
    };
    for k in table {
        if detected(k) {
            plan.run.push(k);
        } else if let Some(f) = expected.iter().find(|f| {
            // A feature an accepted entry also needs is present: this entry lacks another one.
            k.features.contains(f) && !table.iter().any(|a| detected(a) && a.features.contains(f))
        }) {
            return Err(format!(
                "METAVEC_EXPECT_ISA names {f}, but this CPU lacks one of {}: the {} kernels \
                 cannot be tested",
                k.features.join(", "),
                k.name
            ));
        } else {
            plan.skipped.push(k);
        }
    }
    Ok(plan)
}

/// Rows in the next block of a blocked kernel with `left` rows to go: 4, then 2, then 1.
pub(crate) fn block_rows(left: usize) -> usize {
    match left {
        4.. => 4,
        2..=3 => 2,
        _ => 1,
    }
}

/// Asks the CPU to start loading every cache line of `data` into L2 (`prefetcht1`). A hint
/// only: no effect on results. The rerank calls it for the next candidate while it scores the
/// current one, so the random reads of a candidate's rows overlap with arithmetic instead of
/// stalling it. L2, not L1: a candidate is 12-96 KiB of rows, and requests aimed at L1 are
/// limited by its few fill buffers; at (4,8) on 20,000 x 64 x 384 the hint to L2 cut the f32
/// rerank from ~0.70 to ~0.50 ms (same process kind, three alternating runs each).
pub fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = data.as_ptr().cast::<i8>();
        let bytes = std::mem::size_of_val(data);
        let mut off = 0;
        while off < bytes {
            // SAFETY: the intrinsic needs only sse, which every x86_64 CPU has; a prefetch never
            // faults and reads nothing architecturally (the address is inside `data` anyway).
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                    p.wrapping_add(off),
                )
            };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sets: &[&KernelSet]) -> Vec<&'static str> {
        sets.iter().map(|k| k.name).collect()
    }

    #[test]
    fn the_chosen_set_is_the_best_the_cpu_supports() {
        let run = under_test();
        assert_eq!(run.last().map(|k| k.name), Some("scalar"));
        assert_eq!(names(run), available().map(|k| k.name).collect::<Vec<_>>());
        if std::env::var_os("METAVEC_KERNEL").is_none() {
            assert_eq!(chosen().name, run[0].name);
        }
    }

    #[test]
    fn choose_takes_the_first_detected_entry_under_the_cap() {
        let all = |_: &KernelSet| true;
        let none = |k: &KernelSet| k.name == "scalar";
        assert_eq!(choose(TABLE, "", all).name, TABLE[0].name);
        assert_eq!(choose(TABLE, "no-such-kernel", all).name, TABLE[0].name);
        assert_eq!(choose(TABLE, "", none).name, "scalar");
        assert_eq!(choose(TABLE, "scalar", all).name, "scalar");
        assert_eq!(choose(TABLE, "", |_| false).name, "scalar");
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(choose(TABLE, "avx2", all).name, "avx2");
            assert_eq!(choose(TABLE, "avx512", all).name, "avx512");
            assert_eq!(choose(TABLE, "", all).name, "amx");
            assert_eq!(choose(TABLE, "avx512dp", all).name, "avx512dp");
            assert_eq!(choose(TABLE, "", |k| k.name != "amx").name, "avx512dp");
            assert_eq!(
                choose(TABLE, "", |k| !matches!(k.name, "amx" | "avx512dp")).name,
                "avx512"
            );
            assert_eq!(
                choose(TABLE, "", |k| !k.name.starts_with("avx512")
                    && k.name != "amx")
                .name,
                "avx2"
            );
            assert_eq!(choose(TABLE, "avx512", |k| k.name != "avx512").name, "avx2");
        }
    }

    #[test]
    fn a_kernel_the_cpu_lacks_is_skipped_unless_expected() {
        let all = |_: &KernelSet| true;
        let plan = test_plan(TABLE, "", all).unwrap();
        assert_eq!(names(&plan.run), names(&TABLE.iter().collect::<Vec<_>>()));
        assert!(plan.skipped.is_empty());
        // A feature no kernel needs is a typo, never a pass.
        let err = test_plan(TABLE, "avx513f", all).err().unwrap();
        assert!(err.contains("\"avx513f\""), "{err}");
        #[cfg(target_arch = "x86_64")]
        {
            let no512 = |k: &KernelSet| !k.name.starts_with("avx512") && k.name != "amx";
            let plan = test_plan(TABLE, "", no512).unwrap();
            assert_eq!(names(&plan.run), ["avx2", "scalar"]);
            assert_eq!(names(&plan.skipped), ["amx", "avx512dp", "avx512"]);
            let plan = test_plan(TABLE, " avx2 ,fma,", no512).unwrap();
            assert_eq!(names(&plan.skipped), ["amx", "avx512dp", "avx512"]);
            // The dot-product instructions without AMX (Zen 4 and 5): expecting avx512bf16 tests
            // the avx512dp set, expecting amx-bf16 fails.
            let no_amx = |k: &KernelSet| k.name != "amx";
            let plan = test_plan(TABLE, "avx512bf16", no_amx).unwrap();
            assert_eq!(names(&plan.run), ["avx512dp", "avx512", "avx2", "scalar"]);
            let err = test_plan(TABLE, "amx-bf16", no_amx).err().unwrap();
            assert!(err.contains("amx kernels"), "{err}");
            // AVX-512 without the dot-product instructions (Skylake-X, Ice Lake servers run VNNI
            // but not bf16): expecting avx512f tests the plain set, expecting avx512bf16 fails.
            let no_dp = |k: &KernelSet| !matches!(k.name, "amx" | "avx512dp");
            let plan = test_plan(TABLE, "avx512f", no_dp).unwrap();
            assert_eq!(names(&plan.run), ["avx512", "avx2", "scalar"]);
            let err = test_plan(TABLE, "avx512bf16", no_dp).err().unwrap();
            assert!(err.contains("amx kernels"), "{err}");
            // CI claims AVX-512 on a machine without it: the kernel tests fail.
            let err = test_plan(TABLE, "avx512f,avx2", no512).err().unwrap();
            assert!(
                err.contains("avx512f") && err.contains("amx kernels"),
                "{err}"
            );
            let err = test_plan(TABLE, "f16c", |k| k.name == "scalar")
                .err()
                .unwrap();
            assert!(err.contains("avx2 kernels"), "{err}");
        }
    }
}
