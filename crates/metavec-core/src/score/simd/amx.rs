//! bf16 rows on Intel's matrix unit (AMX: `tdpbf16ps`), the avx512dp set otherwise.
//!
//! One `tdpbf16ps` multiplies a 16 x 32 bf16 tile by a 32 x 16 one into 16 x 16 f32 sums: 8,192
//! multiply-adds, where `vdpbf16ps` does 32. Measured here on one core (Xeon, model 207): 2.2
//! TFLOP/s, against 120 GFLOP/s for `vdpbf16ps` and 240 for the f32 FMA, so MaxSim on bf16 rows
//! stops being arithmetic at all: what is left is reading the rows.
//!
//! The document rows are the left-hand tiles, read in place: 16 rows by 32 values (64 bytes of
//! each row, the row stride apart), so no row is copied or repacked; a run's last rows (fewer
//! than 16) go through a tile configured with that many rows. The query, rounded to bf16 once per
//! search, is the right-hand side ([`TileQuery`]): 16 query rows as columns. Each product tile
//! holds 16 document rows' dots with 16 query rows; its maxima over the rows fold into `maxes`.
//!
//! There are no AMX intrinsics on stable Rust: the tile instructions are inline assembly, one
//! instruction per `asm!`, tile registers named in the template. Linux hands AMX state to a
//! process only after `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`; [`detected`] asks
//! once and the set is used only when that succeeded. Every call loads its tile configuration and
//! releases the tiles before it returns, so no thread keeps the 8 KiB tile state between calls.

use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::super::compact::{CompactKernel, TileQuery};

/// The avx512dp set with bf16 rows on tiles. Only handed out by the kernel table after
/// [`detected`].
pub const KERNEL: CompactKernel = CompactKernel {
    bf16_tiles: Some(update_bf16_tiles),
    // The rerank prefetches a bf16 run whole: the tiles read it faster than a kernel could
    // spread its own prefetches over the arithmetic.
    bf16_q_lead: 0,
    ..super::avx512dp_compact::KERNEL
};

/// The avx512dp set's features (this set's vector code needs them) and, outside
/// `is_x86_feature_detected!` (AMX detection is unstable there), AMX-TILE and AMX-BF16.
pub const FEATURES: &[&str] = &[
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512bf16",
    "avx512vnni",
    "amx-tile",
    "amx-bf16",
];

/// Whether this process may use the set: the avx512dp features, CPUID's AMX-TILE and AMX-BF16
/// (leaf 7, EDX bits 24 and 22), and the kernel's permission for the tile state (asked once).
pub fn detected() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let vector = std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512bf16")
            && std::is_x86_feature_detected!("avx512vnni");
        // SAFETY: CPUID leaf 7 exists on every CPU with AVX-512 (checked first).
        let leaf7 = vector.then(|| __cpuid_count(7, 0));
        let amx = leaf7.is_some_and(|r| r.edx >> 24 & 1 == 1 && r.edx >> 22 & 1 == 1);
        amx && request_tile_state()
    })
}

/// Asks Linux for the AMX tile state (`ARCH_REQ_XCOMP_PERM` with `XFEATURE_XTILEDATA`), once per
/// process: it holds for every thread. False where the kernel refuses (too old, or AMX off).
#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with this request only changes the process's permitted xstate features.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// The 64-byte operand of `ldtilecfg` (palette 1): bytes per row and rows of each tile register.
#[repr(C, align(64))]
struct Config {
    palette: u8,
    start_row: u8,
    _reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

/// The tile registers: products `C0`, `C1` of two full blocks of 16 document rows and `CT` of the
/// run's last rows; their left-hand tiles `A0`, `A1`, `AT`; the query tile, two registers used in
/// turn so a load never waits for the product still reading the other.
const C0: usize = 0;
const C1: usize = 1;
const CT: usize = 2;
const A0: usize = 3;
const A1: usize = 4;
const AT: usize = 5;
const B0: usize = 6;
const B1: usize = 7;

impl Config {
    /// Every register 64 bytes wide; the tail's two `tail` rows high (1..=16), the rest 16.
    fn new(tail: usize) -> Config {
        let mut c = Config {
            palette: 1,
            start_row: 0,
            _reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for t in 0..8 {
            c.colsb[t] = 64;
            c.rows[t] = if t == CT || t == AT { tail as u8 } else { 16 };
        }
        c
    }
}

/// `tileloadd tmm$t, [p + stride]`: `rows` of 64 bytes, `stride` bytes apart.
macro_rules! load {
    ($t:expr, $p:expr, $stride:expr) => {
        asm!(
            "tileloadd tmm{t}, [{p} + {s} * 1]",
            t = const $t,
            p = in(reg) $p,
            s = in(reg) $stride,
            options(nostack, readonly, preserves_flags)
        )
    };
}

/// `tdpbf16ps tmm$c, tmm$a, tmm$b`.
macro_rules! dot {
    ($c:expr, $a:expr, $b:expr) => {
        asm!(
            "tdpbf16ps tmm{c}, tmm{a}, tmm{b}",
            c = const $c,
            a = const $a,
            b = const $b,
            options(nostack, nomem, preserves_flags)
        )
    };
}

/// `tilestored [p + 64], tmm$t`.
macro_rules! store {
    ($t:expr, $p:expr) => {
        asm!(
            "tilestored [{p} + {s} * 1], tmm{t}",
            t = const $t,
            p = in(reg) $p,
            s = in(reg) 64usize,
            options(nostack, preserves_flags)
        )
    };
}

/// `tilezero tmm$t`.
macro_rules! zero {
    ($t:expr) => {
        asm!("tilezero tmm{t}", t = const $t, options(nostack, nomem, preserves_flags))
    };
}

fn update_bf16_tiles(
    tq: &TileQuery,
    first: usize,
    r_q: usize,
    dim: usize,
    doc: &[u16],
    maxes: &mut [f32],
) {
    assert!(
        TileQuery::fits(dim) && tq.dim == dim,
        "tile query of rows {dim} wide"
    );
    assert!(first + r_q <= tq.rows && maxes.len() >= r_q);
    let n = doc.len() / dim;
    if n == 0 || r_q == 0 {
        return;
    }
    assert_eq!(tq.tiles.len(), tq.rows.div_ceil(16) * (dim / 32) * 256);
    // SAFETY: `inner` needs the CPU features and the tile permission (detected before KERNEL,
    // the only way here, was handed out) and reads only within `doc` and `tq` (checked above:
    // whole rows of `dim` values, whole tiles per block and step).
    unsafe { inner(tq, first, r_q, dim, &doc[..n * dim], maxes) }
}

/// The product tiles' rows folded into `maxes`: `maxes[i] = max(maxes[i], max_r c[r][col_i])`
/// for query rows `first..first + len` of block `b` (column `g - 16b` holds query row `g`).
///
/// # Safety
///
/// The CPU has the target features: the only precondition (a caller
/// compiled with them needs no proof).
#[target_feature(enable = "avx512f")]
fn fold(c: &[[f32; 16]; 16], rows: usize, b: usize, first: usize, maxes: &mut [f32]) {
    // `max(dots, run)` keeps `run` where a dot is NaN, as the scalar `v > m` does.
    let mut run = _mm512_set1_ps(f32::NEG_INFINITY);
    for row in &c[..rows] {
        // SAFETY: a row is 16 f32.
        let dots = unsafe { _mm512_loadu_ps(row.as_ptr()) };
        run = _mm512_max_ps(dots, run);
    }
    let mut best = [0f32; 16];
    // SAFETY: `best` has room for the 16 f32 the store writes.
    unsafe { _mm512_storeu_ps(best.as_mut_ptr(), run) };
    let lo = first.max(16 * b);
    let hi = (first + maxes.len()).min(16 * b + 16);
    for g in lo..hi {
        let v = best[g - 16 * b];
        let m = &mut maxes[g - first];
        if v > *m {
            *m = v;
        }
    }
}

/// # Safety
///
/// The CPU has the target features and the process the tile permission; `doc` is whole rows of
/// `dim` values, `dim` a multiple of 32, and `tq` the tiles of at least `first + r_q` query rows
/// of that width.
#[target_feature(enable = "avx512f")]
unsafe fn inner(
    tq: &TileQuery,
    first: usize,
    r_q: usize,
    dim: usize,
    doc: &[u16],
    maxes: &mut [f32],
) {
    let n = doc.len() / dim;
    let (full, tail) = (n / 16, n % 16);
    let steps = dim / 32;
    let stride = dim * 2;
    let maxes = &mut maxes[..r_q];
    let config = Config::new(tail.max(1));
    let mut c = [[0f32; 16]; 16];
    // SAFETY: the features and the tile permission are the caller's precondition. Loads read
    // the configured rows of 64 bytes at a step's offset within document rows that lie in `doc`
    // (whole blocks of 16 below `16 * full`, the tail's `tail` rows after them), or a whole 1
    // KiB tile of `tq`; stores write 16 x 64 bytes at most into `c`.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly, preserves_flags));
        for b in first / 16..(first + r_q).div_ceil(16) {
            // Two full blocks of document rows per pass, the tail with the last pass: every
            // query tile loaded once per pass.
            let mut block = 0;
            loop {
                let left = full - block;
                let (one, two) = (left >= 1, left >= 2);
                let with_tail = tail > 0 && left <= 2;
                if !one && !with_tail {
                    break;
                }
                let at = |blk: usize| doc.as_ptr().wrapping_add(blk * 16 * dim);
                let (p0, p1, pt) = (at(block), at(block + 1), at(full));
                if one {
                    zero!(C0);
                }
                if two {
                    zero!(C1);
                }
                if with_tail {
                    zero!(CT);
                }
                for s in 0..steps {
                    let qt = tq.tile(b, s).as_ptr();
                    let off = s * 32;
                    macro_rules! step {
                        ($bt:expr) => {{
                            load!($bt, qt, 64usize);
                            if one {
                                load!(A0, p0.wrapping_add(off), stride);
                                dot!(C0, A0, $bt);
                            }
                            if two {
                                load!(A1, p1.wrapping_add(off), stride);
                                dot!(C1, A1, $bt);
                            }
                            if with_tail {
                                load!(AT, pt.wrapping_add(off), stride);
                                dot!(CT, AT, $bt);
                            }
                        }};
                    }
                    if s % 2 == 0 {
                        step!(B0);
                    } else {
                        step!(B1);
                    }
                }
                if one {
                    store!(C0, c.as_mut_ptr());
                    fold(&c, 16, b, first, maxes);
                }
                if two {
                    store!(C1, c.as_mut_ptr());
                    fold(&c, 16, b, first, maxes);
                }
                if with_tail {
                    store!(CT, c.as_mut_ptr());
                    fold(&c, tail, b, first, maxes);
                }
                if left <= 2 {
                    break;
                }
                block += 2;
            }
        }
        asm!("tilerelease", options(nostack, nomem, preserves_flags));
    }
}

/// `tdpbf16ps` on registers: GFLOP/s of one core (2 per multiply-add), for the roofline. `None`
/// where the set is not [`detected`].
pub fn peak_gflops(seconds: f64) -> Option<f64> {
    if !detected() {
        return None;
    }
    let config = Config::new(16);
    let rounds = 1usize << 16;
    let started = std::time::Instant::now();
    let mut done = 0usize;
    // SAFETY: detected above; the tiles are zeroed, never loaded from or stored to memory.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly, preserves_flags));
        zero!(A0);
        zero!(A1);
        zero!(B0);
        while started.elapsed().as_secs_f64() < seconds {
            for _ in 0..rounds {
                dot!(C0, A0, B0);
                dot!(C1, A1, B0);
                dot!(CT, A0, B0);
                dot!(B1, A1, B0);
            }
            done += 4 * rounds;
        }
        asm!("tilerelease", options(nostack, nomem, preserves_flags));
    }
    Some(done as f64 * 16.0 * 16.0 * 32.0 * 2.0 / started.elapsed().as_secs_f64() / 1e9)
}

#[cfg(test)]
mod tests {
    use super::super::super::compact::{update_bf16_q_scalar, Bf16Query, TileQuery};

    /// A dot's bits do not depend on where its rows sit: a run scored whole (full blocks and a
    /// tail, query rows from an offset) equals its rows scored one at a time against one query
    /// row at a time (a one-row tail each); and within summation order of the scalar reference.
    #[test]
    fn every_position_gives_the_same_bits() {
        if !super::detected() {
            eprintln!("amx tests: SKIPPED (no AMX-BF16 here)");
            return;
        }
        let f = super::KERNEL.bf16_tiles.unwrap();
        for (rq, rows, dim, first) in [
            (16, 64, 384, 0),
            (16, 48, 384, 0),
            (12, 8, 384, 4),
            (20, 37, 64, 3),
            (1, 1, 32, 0),
            (20, 17, 96, 14),
        ] {
            let val = |i: usize, s: usize| (((i * s) % 251) as f32 - 125.0) / 97.0;
            let q: Vec<f32> = (0..rq * dim).map(|i| val(i, 31)).collect();
            let doc: Vec<f32> = (0..rows * dim).map(|i| val(i, 7919)).collect();
            let (qb, db) = (Bf16Query::new(&q), Bf16Query::new(&doc));
            let tq = TileQuery::new(&qb.bits, dim);
            let n = rq - first;
            let mut whole = vec![f32::NEG_INFINITY; n];
            f(&tq, first, n, dim, &db.bits, &mut whole);
            let mut reference = vec![f32::NEG_INFINITY; n];
            let (qr, qf) = qb.rows(dim, first, rq);
            update_bf16_q_scalar(qr, qf, n, dim, &db.bits, &mut reference);
            for (i, w) in whole.iter().enumerate() {
                let mut one = [f32::NEG_INFINITY];
                for j in 0..rows {
                    f(
                        &tq,
                        first + i,
                        1,
                        dim,
                        &db.bits[j * dim..(j + 1) * dim],
                        &mut one,
                    );
                }
                assert_eq!(w.to_bits(), one[0].to_bits(), "rq {rq} rows {rows} row {i}");
                let r = reference[i];
                assert!((w - r).abs() < 1e-3 * (1.0 + r.abs()), "{w} vs {r}");
            }
        }
    }
}
