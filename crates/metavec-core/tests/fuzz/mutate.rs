//! The byte-mutation harness shared by the fuzz targets of metavec-core and metavec-api
//! (the api crate includes this file by path).
//!
//! A case is a seed (a real encoding produced by the engine) plus a short list of mutations:
//! bit flips, byte sets, truncations, insertions of random bytes, splices of a seed range
//! elsewhere, and overwrites of an aligned little-endian u32/u64 with an extreme value (lengths
//! and counts are where decoders go wrong). Proptest drives it so a failing case shrinks to a
//! small mutation list.
//!
//! `METAVEC_FUZZ_SECS=N` turns each target into a timed run of N seconds (batches of cases with
//! fresh random seeds until the time is up); without it a target runs `SMOKE_CASES` cases.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Cases per target in the `cargo test` smoke run.
pub const SMOKE_CASES: u32 = 300;

#[derive(Debug, Clone)]
pub enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        value: u8,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Splice {
        from: usize,
        len: usize,
        to: usize,
    },
    /// Overwrites the u32 (or u64) at `at & !3` with an extreme value.
    Extreme {
        at: usize,
        wide: bool,
        value: u64,
    },
}

fn extreme() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u32::MAX as u64),
        Just(u32::MAX as u64 - 1),
        Just(i32::MAX as u64),
        Just(u64::MAX),
        Just(1 << 31),
        Just(1 << 40),
        0u64..4096,
        any::<u64>(),
    ]
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    // Positions are raw numbers reduced modulo the current length when applied.
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<usize>(), 1usize..256, any::<usize>())
            .prop_map(|(from, len, to)| Mutation::Splice { from, len, to }),
        3 => (any::<usize>(), any::<bool>(), extreme())
            .prop_map(|(at, wide, value)| Mutation::Extreme { at, wide, value }),
    ]
}

/// Up to `max` mutations (at least one).
pub fn mutations(max: usize) -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(mutation(), 1..=max)
}

/// Applies `muts` to a copy of `seed`.
pub fn apply(seed: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for m in muts {
        let n = b.len();
        match m {
            Mutation::FlipBit { at, bit } if n > 0 => b[at % n] ^= 1 << bit,
            Mutation::SetByte { at, value } if n > 0 => b[at % n] = *value,
            Mutation::Truncate { at } => b.truncate(at % (n + 1)),
            Mutation::Insert { at, bytes } => {
                let at = at % (n + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Splice { from, len, to } if n > 0 => {
                let from = from % n;
                let chunk: Vec<u8> = b[from..(from + len).min(n)].to_vec();
                let to = to % n;
                let end = (to + chunk.len()).min(n);
                b[to..end].copy_from_slice(&chunk[..end - to]);
            }
            Mutation::Extreme { at, wide, value } => {
                let w = if *wide { 8 } else { 4 };
                if n >= w {
                    let at = (at % (n - w + 1)) & !3;
                    b[at..at + w].copy_from_slice(&value.to_le_bytes()[..w]);
                }
            }
            _ => {}
        }
    }
    b
}

/// Runs `test` on cases of `strategy`: `SMOKE_CASES` of them, or for `METAVEC_FUZZ_SECS`.
/// Prints (to stderr) the target's name, cases run and time taken. Panics with the minimal
/// failing case if `test` fails or panics.
pub fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let budget = std::env::var("METAVEC_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let cases = AtomicU64::new(0);
    let counted = &|v: S::Value| {
        cases.fetch_add(1, Ordering::Relaxed);
        test(v)
    };
    let started = Instant::now();
    let batch = |n: u32| {
        let config = Config {
            cases: n,
            failure_persistence: None,
            max_shrink_iters: 4096,
            ..Config::default()
        };
        if let Err(e) = TestRunner::new(config).run(&strategy, counted) {
            panic!("fuzz target {name} failed: {e}");
        }
    };
    match budget {
        None => batch(SMOKE_CASES),
        Some(budget) => {
            while started.elapsed() < budget {
                batch(1000);
            }
        }
    }
    eprintln!(
        "fuzz target {name}: {} cases in {:.1} s, no failure",
        cases.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}

/// Recomputes the crc of the WAL record at the start of `b` (when its length field fits), so a
/// mutation reaches the structural decoder instead of stopping at the checksum.
pub fn fix_record_crc(b: &mut [u8]) {
    if b.len() < 20 {
        return;
    }
    let len = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize;
    if let Some(end) = len.checked_add(20).filter(|&e| e <= b.len()) {
        let crc = crc32fast::hash(&b[8..end]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Recomputes the header crc of a file preamble (when its header length fits), so a mutation
/// reaches the header's decoder (rkyv validation, segment layout checks).
pub fn fix_preamble_crc(b: &mut [u8]) {
    if b.len() < 32 {
        return;
    }
    let len = u32::from_le_bytes(b[20..24].try_into().unwrap()) as usize;
    if let Some(end) = len.checked_add(32).filter(|&e| e <= b.len()) {
        let mut h = crc32fast::Hasher::new();
        h.update(&b[0..24]);
        h.update(&b[32..end]);
        b[24..28].copy_from_slice(&h.finalize().to_le_bytes());
    }
}
