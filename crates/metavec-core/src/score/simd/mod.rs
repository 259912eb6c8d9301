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
            #[target_feature(enable = $features)]
            fn block<const N: usize>(
                q: &[f32],
                dim: usize,
                d: &[$elem],
                s: f32,
                maxes: &mut [f32],
                next: *const $elem,
            ) {
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
                    // SAFETY: c + $w <= dim: the `$w` values at dp + c lie in row `d`, and the $w
                    // at qp + k * dim + c in query row k < N of `q` (N rows, checked by callers).
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

/// The graph walk's kernel for one ISA: `out[k] = scales[nodes[k]] * <q, codes row nodes[k]>`,
/// eight nodes at a time (eight independent FMA chains sharing each query chunk). Each dot sums
/// its chunks in order in one accumulator, as the int8 update's single-row path does, so the
/// scores are bit-identical to it.
macro_rules! int8_dots {
    (
        $features:literal, $load:ident, width = $w:literal, zero = $zero:ident,
        fmadd = $fmadd:ident, loadu = $loadu:ident, hsum = $hsum:ident
    ) => {
        #[target_feature(enable = $features)]
        fn inner_dots_i8(
            q: &[f32],
            dim: usize,
            codes: &[i8],
            scales: &[f32],
            nodes: &[u32],
            out: &mut [f32],
        ) {
            /// The dots of `N` nodes, one accumulator chain each.
            #[target_feature(enable = $features)]
            fn dots<const N: usize>(
                q: &[f32],
                dim: usize,
                codes: &[i8],
                scales: &[f32],
                nodes: &[u32],
                out: &mut [f32],
            ) {
                let qp = q.as_ptr();
                let rows: [&[i8]; N] = std::array::from_fn(|t| {
                    let n = nodes[t] as usize;
                    &codes[n * dim..(n + 1) * dim]
                });
                let mut acc = [$zero(); N];
                let mut c = 0;
                while c + $w <= dim {
                    // SAFETY: c + $w <= dim: the chunk lies inside `q` and inside every row.
                    unsafe {
                        let y = $loadu(qp.add(c));
                        for (a, r) in acc.iter_mut().zip(&rows) {
                            *a = $fmadd(y, $load(r.as_ptr().add(c)), *a);
                        }
                    }
                    c += $w;
                }
                for t in 0..N {
                    let mut v = $hsum(acc[t]);
                    for cc in c..dim {
                        v += q[cc] * rows[t][cc] as f32;
                    }
                    out[t] = v * scales[nodes[t] as usize];
                }
            }

            let q = &q[..dim];
            let mut k = 0;
            while k < nodes.len() {
                let w = if nodes.len() - k >= 8 { 8 } else { 1 };
                let (ns, o) = (&nodes[k..k + w], &mut out[k..k + w]);
                match w {
                    8 => dots::<8>(q, dim, codes, scales, ns, o),
                    _ => dots::<1>(q, dim, codes, scales, ns, o),
                }
                k += w;
            }
        }
    };
}

/// The safe entry points of one ISA's compact kernels (`inner_bf16`, `inner_f16`, `inner_i8` from
/// [`compact_update!`]) and their [`CompactKernel`], which `best_compact()` hands out only after
/// the runtime check of `$detected`.
macro_rules! compact_entry_points {
    (name: $name:literal, detected: $detected:literal $(,)?) => {
        #[doc = concat!("Only handed out by `best_compact()` after runtime detection of ", $detected, ".")]
        pub const KERNEL: CompactKernel = CompactKernel {
            name: $name,
            bf16: update_bf16,
            f16: update_f16,
            int8: update_int8,
            int8_dots: dots_int8,
        };

        fn dots_int8(
            q: &[f32],
            dim: usize,
            codes: &[i8],
            scales: &[f32],
            nodes: &[u32],
            out: &mut [f32],
        ) {
            assert!(q.len() >= dim && out.len() >= nodes.len());
            // SAFETY: KERNEL is installed only after the features were detected at runtime
            // (every row and scale is indexed with bounds checks).
            unsafe { inner_dots_i8(q, dim, codes, scales, nodes, out) }
        }

        fn check(query: &[f32], r_q: usize, dim: usize, maxes: &[f32]) {
            assert!(query.len() >= r_q * dim && maxes.len() >= r_q);
        }

        fn update_bf16(query: &[f32], r_q: usize, dim: usize, doc: &[u16], maxes: &mut [f32]) {
            check(query, r_q, dim, maxes);
            if dim == 0 {
                return;
            }
            // SAFETY: KERNEL is installed only after the features were detected at runtime.
            unsafe { inner_bf16(query, r_q, dim, doc, |_| 1.0, maxes) }
        }

        fn update_f16(query: &[f32], r_q: usize, dim: usize, doc: &[u16], maxes: &mut [f32]) {
            check(query, r_q, dim, maxes);
            if dim == 0 {
                return;
            }
            // SAFETY: KERNEL is installed only after the features were detected at runtime.
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
            // SAFETY: KERNEL is installed only after the features were detected at runtime.
            unsafe { inner_i8(query, r_q, dim, doc, |j| scales[j], maxes) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_compact;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_compact;
#[cfg(target_arch = "x86_64")]
mod kernel;

use super::compact::CompactKernel;
use super::Kernel;

/// The best kernel the running CPU supports, if any beats the scalar one. `METAVEC_KERNEL=avx2`
/// (or `scalar`) caps the choice, for benchmarks and for comparing results across machines.
pub fn best() -> Option<Kernel> {
    let cap = std::env::var("METAVEC_KERNEL").unwrap_or_default();
    if cap == "scalar" {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if cap != "avx2" && std::is_x86_feature_detected!("avx512f") {
            return Some(Kernel {
                name: "avx512f",
                update: avx512::maxsim_update,
                update_pair: avx512::maxsim_update_pair,
                dot: avx512::dot,
            });
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Some(Kernel {
                name: "avx2-fma",
                update: avx2::maxsim_update,
                update_pair: avx2::maxsim_update_pair,
                dot: avx2::dot,
            });
        }
    }
    None
}

/// Every kernel the running CPU supports (best first), so tests can check each one against the
/// scalar reference whatever `best()` picks.
pub fn available() -> Vec<Kernel> {
    #[allow(unused_mut)]
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            out.push(Kernel {
                name: "avx512f",
                update: avx512::maxsim_update,
                update_pair: avx512::maxsim_update_pair,
                dot: avx512::dot,
            });
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            out.push(Kernel {
                name: "avx2-fma",
                update: avx2::maxsim_update,
                update_pair: avx2::maxsim_update_pair,
                dot: avx2::dot,
            });
        }
    }
    out
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
            // SAFETY: prefetch never faults and reads no memory architecturally; the address is
            // inside `data` (sse is part of the x86_64 baseline).
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(p.add(off))
            };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// The avx2+fma kernels (also used by tests and benches on CPUs with AVX-512).
pub fn avx2_compact() -> Option<CompactKernel> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
        {
            return Some(avx2_compact::KERNEL);
        }
    }
    None
}

/// The best compact-encoding kernels the running CPU supports, if any beat the scalar ones
/// (`METAVEC_KERNEL` caps the choice as for [`best`]).
pub fn best_compact() -> Option<CompactKernel> {
    let cap = std::env::var("METAVEC_KERNEL").unwrap_or_default();
    if cap == "scalar" {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if cap != "avx2"
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
        {
            return Some(avx512_compact::KERNEL);
        }
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
        {
            return Some(avx2_compact::KERNEL);
        }
    }
    None
}
