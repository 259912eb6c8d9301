//! The machine's bounds for MaxSim, measured in the running process: what a rerank could reach
//! at best, so a benchmark can say how close it comes (a roofline).
//!
//! - **Compute**: one core's peak of the instruction each kernel is built on, from a loop of
//!   independent chains of it on registers: `vfmadd` for f32 rows (and for f16 rows, and bf16
//!   rows where the CPU lacks `vdpbf16ps`: decoded to f32 in registers), `vdpbf16ps` for bf16
//!   rows in the `avx512dp` set (bf16 pairs into f32 lanes), `vpmaddwd` for int8 rows (i16 query
//!   x int8 row pairs summed into i32), or VNNI's `vpdpwssd` (the same with the add fused) in the
//!   `avx512dp` set; AMX's `tdpbf16ps` for bf16 rows in the `amx` set (a bf16 tile product,
//!   8,192 multiply-adds per instruction). Counted as FLOP/s with a multiply-add = 2, as the rerank's
//!   `2 x dot products x dim` is.
//! - **Memory**: one core reading blocks of a given size at random places of a memory-mapped file
//!   (the rerank's access pattern: each candidate's first `r_c` rows sit together at a random
//!   offset of a large group), summing each; the best of several software prefetch distances
//!   (the rerank prefetches candidates ahead of the one it scores).
//!
//! The bound for a rerank of arithmetic intensity `I` (FLOP per byte read) is
//! `min(compute peak, I x bandwidth)`.

use std::time::{Duration, Instant};

/// One core's compute peaks for the kernel set in use ([`super::simd::chosen`]), in GFLOP/s.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ComputePeaks {
    /// The kernel set the loops ran on (its instructions are the kernels').
    pub kernel: &'static str,
    /// `vfmadd...ps`: the f32, bf16 and f16 kernels' instruction.
    pub fma_gflops: f64,
    /// `vpmaddwd`: the int8 kernel's (two i16 multiply-adds per i32 lane) without VNNI.
    pub madd_gflops: f64,
    /// `vdpbf16ps`: the bf16 kernel's in the `avx512dp` set (None elsewhere).
    pub dpbf16_gflops: Option<f64>,
    /// `vpdpwssd`: the int8 kernel's in the `avx512dp` set (None elsewhere).
    pub dpwssd_gflops: Option<f64>,
    /// AMX `tdpbf16ps` (a 16 x 32 by 32 x 16 bf16 tile product per instruction): the bf16
    /// kernel's in the `amx` set (None elsewhere).
    pub tile_bf16_gflops: Option<f64>,
}

impl ComputePeaks {
    /// The instruction, and its peak, that bounds the rerank's kernel over rows stored as
    /// `dtype` (vector 0, always f32, is the caller's to special-case).
    pub fn for_dtype(&self, dtype: crate::config::Dtype) -> (&'static str, f64) {
        use crate::config::Dtype;
        if let (Dtype::Bf16, Some(p)) = (dtype, self.tile_bf16_gflops) {
            return ("tdpbf16ps", p);
        }
        match (dtype, self.dpbf16_gflops, self.dpwssd_gflops) {
            (Dtype::Int8, _, Some(p)) => ("vpdpwssd", p),
            (Dtype::Int8, _, None) => ("vpmaddwd", self.madd_gflops),
            (Dtype::Bf16, Some(p), _) => ("vdpbf16ps", p),
            _ => ("vfmadd", self.fma_gflops),
        }
    }

    /// Every peak measured, as (instruction, GFLOP/s).
    pub fn all(&self) -> Vec<(&'static str, f64)> {
        let mut v = vec![("vfmadd", self.fma_gflops), ("vpmaddwd", self.madd_gflops)];
        v.extend(self.dpbf16_gflops.map(|p| ("vdpbf16ps", p)));
        v.extend(self.dpwssd_gflops.map(|p| ("vpdpwssd", p)));
        v.extend(self.tile_bf16_gflops.map(|p| ("tdpbf16ps", p)));
        v
    }
}

/// Chains per loop: enough independent work to cover the instructions' latency at two per
/// cycle (latency 4-5 cycles).
const CHAINS: usize = 12;

/// Measures both peaks for about `time` each (best of several rounds).
pub fn compute_peaks(time: Duration) -> ComputePeaks {
    let kernel = super::simd::chosen().name;
    type Loop = fn(usize) -> f64;
    let (fma, madd, dp): (Loop, Loop, Option<(Loop, Loop)>) = match kernel {
        #[cfg(target_arch = "x86_64")]
        "avx512dp" | "amx" => (
            x86::fma512,
            x86::madd512,
            Some((x86::dpbf16_512, x86::dpwssd512)),
        ),
        #[cfg(target_arch = "x86_64")]
        "avx512" => (x86::fma512, x86::madd512, None),
        #[cfg(target_arch = "x86_64")]
        "avx2" => (x86::fma256, x86::madd256, None),
        _ => (scalar_fma, scalar_madd, None),
    };
    ComputePeaks {
        kernel,
        fma_gflops: best_rate(time, fma),
        madd_gflops: best_rate(time, madd),
        dpbf16_gflops: dp.map(|(b, _)| best_rate(time, b)),
        dpwssd_gflops: dp.map(|(_, w)| best_rate(time, w)),
        tile_bf16_gflops: (kernel == "amx")
            .then(|| super::simd::tile_bf16_peak(time))
            .flatten(),
    }
}

/// Runs `f(iterations)` (which returns the FLOP it did) in rounds of growing size for about
/// `time`, and returns the best round's GFLOP/s.
fn best_rate(time: Duration, f: fn(usize) -> f64) -> f64 {
    let start = Instant::now();
    let (mut n, mut best) = (1usize << 12, 0.0f64);
    while start.elapsed() < time {
        let t = Instant::now();
        let flop = f(n);
        let secs = t.elapsed().as_secs_f64();
        if secs > 0.0 {
            best = best.max(flop / secs / 1e9);
        }
        if secs < 0.01 && n < 1 << 40 {
            n *= 2;
        }
    }
    best
}

fn scalar_fma(n: usize) -> f64 {
    let mut acc = [1.0f32; CHAINS];
    for _ in 0..n {
        for a in acc.iter_mut() {
            *a = a.mul_add(0.999, 1e-3);
        }
    }
    std::hint::black_box(acc);
    (n * CHAINS * 2) as f64
}

fn scalar_madd(n: usize) -> f64 {
    let mut acc = [1i32; CHAINS];
    for _ in 0..n {
        for a in acc.iter_mut() {
            let x = *a as i16 as i32;
            *a = a.wrapping_add(x * 3 + x * 5);
        }
    }
    std::hint::black_box(acc);
    (n * CHAINS * 4) as f64
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    //! The loops, one per ISA; only called for the kernel set [`super::super::simd::chosen`]
    //! picked, i.e. after runtime detection of its features.

    use super::CHAINS;
    use std::arch::x86_64::*;
    use std::hint::black_box;

    /// `pub fn $name(n) -> FLOP done`: [`CHAINS`] dependent chains `acc = $step(acc, x)` of one
    /// instruction on registers, `$flop` FLOP each. Inputs are opaque (`black_box`): constant
    /// ones let the compiler fold the chains away.
    macro_rules! peak_loop {
        ($(#[$doc:meta])* $name:ident, $features:literal, $reg:ty, init = $init:expr,
         x = $x:expr, step = $step:expr, flop = $flop:expr) => {
            $(#[$doc])*
            pub fn $name(n: usize) -> f64 {
                /// # Safety
                ///
                /// The CPU has the target features: the only precondition.
                #[target_feature(enable = $features)]
                fn run(n: usize) {
                    let x = black_box($x);
                    let mut acc: [$reg; CHAINS] = black_box(std::array::from_fn($init));
                    for _ in 0..n {
                        for a in acc.iter_mut() {
                            *a = $step(*a, x);
                        }
                    }
                    black_box(acc);
                }
                // SAFETY: handed out only for the kernel set whose detection covers
                // `$features` (see the module doc).
                unsafe { run(n) };
                (n * CHAINS * $flop) as f64
            }
        };
    }

    peak_loop!(
        /// `acc = fma(acc, 0.999, 1e-3)`, 8 f32 lanes.
        fma256, "avx2,fma", __m256, init = |_| _mm256_set1_ps(1.0),
        x = (_mm256_set1_ps(0.999), _mm256_set1_ps(1e-3)),
        step = |a, (x, y)| _mm256_fmadd_ps(a, x, y), flop = 8 * 2
    );
    peak_loop!(
        /// `acc += madd(acc, 3)`: 16 i16 pairs into 8 i32 lanes.
        madd256, "avx2", __m256i, init = |k| _mm256_set1_epi32(k as i32),
        x = _mm256_set1_epi16(3),
        step = |a, x| _mm256_add_epi32(a, _mm256_madd_epi16(a, x)), flop = 16 * 2
    );
    peak_loop!(
        /// `acc = fma(acc, 0.999, 1e-3)`, 16 f32 lanes.
        fma512, "avx512f", __m512, init = |_| _mm512_set1_ps(1.0),
        x = (_mm512_set1_ps(0.999), _mm512_set1_ps(1e-3)),
        step = |a, (x, y)| _mm512_fmadd_ps(a, x, y), flop = 16 * 2
    );
    peak_loop!(
        /// `acc += madd(acc, 3)`: 32 i16 pairs into 16 i32 lanes.
        madd512, "avx512f,avx512bw", __m512i, init = |k| _mm512_set1_epi32(k as i32),
        x = _mm512_set1_epi16(3),
        step = |a, x| _mm512_add_epi32(a, _mm512_madd_epi16(a, x)), flop = 32 * 2
    );
    peak_loop!(
        /// `vdpbf16ps`: 32 bf16 products into 16 f32 lanes.
        dpbf16_512, "avx512f,avx512bf16", __m512, init = |_| _mm512_set1_ps(1.0),
        x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3), _mm512_set1_ps(1e-3)),
        step = |a, x| _mm512_dpbf16_ps(a, x, x), flop = 32 * 2
    );
    peak_loop!(
        /// `vpdpwssd`: 32 i16 products into 16 i32 lanes.
        dpwssd512, "avx512f,avx512vnni", __m512i, init = |k| _mm512_set1_epi32(k as i32),
        x = _mm512_set1_epi16(3),
        step = |a, x| _mm512_dpwssd_epi32(a, x, x), flop = 32 * 2
    );
}

/// A file of `bytes` (rounded down to whole blocks) mapped for [`gather_gbps`].
pub struct GatherFile {
    map: memmap2::Mmap,
    _file: tempfile::NamedTempFile,
}

impl GatherFile {
    /// Writes a file of `bytes` in `dir` (removed on drop), maps it and reads it once, so it is
    /// in the page cache as a collection's hot groups are.
    pub fn new(dir: &std::path::Path, bytes: usize) -> std::io::Result<GatherFile> {
        use std::io::Write;
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        let chunk: Vec<u8> = (0..1 << 20).map(|i| (i * 31 % 251) as u8).collect();
        let mut left = bytes.max(1 << 20);
        while left > 0 {
            let n = left.min(chunk.len());
            file.write_all(&chunk[..n])?;
            left -= n;
        }
        file.flush()?;
        // SAFETY: a private temporary file nobody else writes while it is mapped.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(file.as_file())? };
        std::hint::black_box(sum_bytes(&map));
        Ok(GatherFile { map, _file: file })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Sum of the bytes as u64 words (every byte read; vectorises).
fn sum_bytes(b: &[u8]) -> u64 {
    let mut acc = [0u64; 4];
    let mut chunks = b.chunks_exact(32);
    for c in &mut chunks {
        for (k, a) in acc.iter_mut().enumerate() {
            let w = u64::from_le_bytes(c[k * 8..k * 8 + 8].try_into().unwrap_or([0; 8]));
            *a = a.wrapping_add(w);
        }
    }
    let tail: u64 = chunks.remainder().iter().map(|&x| x as u64).sum();
    acc.iter().fold(tail, |s, &a| s.wrapping_add(a))
}

/// One core reading `block`-byte blocks at random block-aligned places of `file` for about
/// `time`, summing each: GB/s (1e9 bytes), the best over software prefetch distances of 0, 1, 2
/// and 4 blocks ahead. The bound is what a core can reach, and which distance reaches it depends
/// on the block size: on the AMD EPYC of the 2026-12 runs 4 KiB blocks read fastest with no
/// software prefetch (the hardware's own suffices) and 26 KiB ones four blocks ahead.
pub fn gather_gbps(file: &GatherFile, block: usize, time: Duration, seed: u64) -> f64 {
    const AHEAD: [usize; 4] = [0, 1, 2, 4];
    AHEAD
        .iter()
        .map(|&ahead| gather_at(file, block, time / AHEAD.len() as u32, seed, ahead))
        .fold(0.0, f64::max)
}

/// [`gather_gbps`] at one prefetch distance: block `i + ahead` is prefetched before block `i` is
/// summed (nothing is, with 0).
fn gather_at(file: &GatherFile, block: usize, time: Duration, seed: u64, ahead: usize) -> f64 {
    use rand::{Rng, SeedableRng};
    let block = block.clamp(64, file.len());
    let blocks = file.len() / block;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let at = |b: usize| &file.map[b * block..(b + 1) * block];
    // The blocks already chosen and, past the first, prefetched: a ring of `ahead + 1`.
    let mut ring: std::collections::VecDeque<usize> =
        (0..=ahead).map(|_| rng.random_range(0..blocks)).collect();
    for &b in ring.iter().skip(1) {
        super::simd::prefetch(at(b));
    }
    let (start, mut bytes, mut sink) = (Instant::now(), 0u64, 0u64);
    while start.elapsed() < time {
        for _ in 0..64 {
            let next = rng.random_range(0..blocks);
            ring.push_back(next);
            if ahead > 0 {
                super::simd::prefetch(at(next));
            }
            let cur = ring.pop_front().unwrap_or(next);
            sink = sink.wrapping_add(sum_bytes(at(cur)));
            bytes += block as u64;
        }
    }
    std::hint::black_box(sink);
    bytes as f64 / start.elapsed().as_secs_f64() / 1e9
}

/// Where a rerank stands against the bounds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Attained {
    /// FLOP per byte read.
    pub intensity: f64,
    pub gflops: f64,
    pub gbps: f64,
    /// `min(compute peak, intensity x bandwidth)`.
    pub bound_gflops: f64,
    /// "compute" or "memory": which side of the roofline bounds it.
    pub bound_by: &'static str,
    /// `gflops / bound_gflops`, in percent.
    pub percent: f64,
}

/// A rerank that did `flop` and read `bytes` in `secs`, against `peak` GFLOP/s and `gbps`.
pub fn attained(flop: f64, bytes: f64, secs: f64, peak: f64, gbps: f64) -> Attained {
    let intensity = if bytes > 0.0 { flop / bytes } else { 0.0 };
    let (gflops, rate) = if secs > 0.0 {
        (flop / secs / 1e9, bytes / secs / 1e9)
    } else {
        (0.0, 0.0)
    };
    let memory = intensity * gbps;
    let (bound_gflops, bound_by) = if memory < peak {
        (memory, "memory")
    } else {
        (peak, "compute")
    };
    Attained {
        intensity,
        gflops,
        gbps: rate,
        bound_gflops,
        bound_by,
        percent: if bound_gflops > 0.0 {
            100.0 * gflops / bound_gflops
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_and_bandwidth_are_measured_and_the_bound_takes_the_lower_side() {
        let p = compute_peaks(Duration::from_millis(50));
        assert!(p.fma_gflops > 0.1 && p.madd_gflops > 0.1, "{p:?}");
        let dir = tempfile::tempdir().unwrap();
        let f = GatherFile::new(dir.path(), 8 << 20).unwrap();
        assert_eq!(f.len(), 8 << 20);
        let g = gather_gbps(&f, 4096, Duration::from_millis(20), 1);
        assert!(g > 0.01, "{g}");
        // 1 FLOP per byte at 10 GB/s is 10 GFLOP/s of memory bound, under a 100 peak.
        let a = attained(1e9, 1e9, 0.5, 100.0, 10.0);
        assert_eq!(a.bound_by, "memory");
        assert!((a.bound_gflops - 10.0).abs() < 1e-9 && (a.percent - 20.0).abs() < 1e-9);
        let a = attained(1e11, 1e9, 2.0, 40.0, 10.0);
        assert_eq!(a.bound_by, "compute");
        assert!((a.gflops - 50.0).abs() < 1e-9 && (a.percent - 125.0).abs() < 1e-9);
    }
}
