//! The MaxSim kernel against faer GEMM on the same shapes: Q [r_q x D] against C candidates'
//! r_c-prefixes [C * r_c x D]. GEMM computes all r_q x (C * r_c) dots (then the max is extra);
//! the fused kernel keeps only the running maxima. Throughput is reported in dot-product FLOPs
//! (2 * r_q * r_c * C * D per iteration), so criterion's element rate compares them directly.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

use faer::{linalg::matmul::matmul, Accum, Mat, MatRef, Par};
use metavec_core::score::compact::{encode_bf16, encode_f16, encode_int8, Bf16Query, QuantQuery};
use metavec_core::score::simd::available;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const D: usize = 384;

/// Candidates per iteration: 200 (their rows outgrow the caches at (16,64)), or
/// `MAXSIM_CANDIDATES` (e.g. 10, whose rows stay in L2: the kernel's arithmetic alone).
fn candidates() -> usize {
    std::env::var("MAXSIM_CANDIDATES").map_or(200, |s| s.parse().expect("MAXSIM_CANDIDATES"))
}

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn bench(c: &mut Criterion) {
    #[allow(non_snake_case)]
    let C = candidates();
    let mut g = c.benchmark_group("maxsim");
    g.sample_size(30);
    for (r_q, r_c) in [(1usize, 1usize), (4, 8), (16, 64)] {
        let q = data(r_q * D, 1);
        let docs = data(C * r_c * D, 2);
        let shape = format!("{r_q}x{r_c}");
        g.throughput(Throughput::Elements((2 * r_q * r_c * C * D) as u64));
        // Every kernel set this CPU has (the chosen one first, the scalar reference last).
        for set in available() {
            let k = set.f32;
            g.bench_function(
                BenchmarkId::new(format!("fused-{}", set.name), &shape),
                |b| {
                    let mut maxes = vec![0f32; r_q];
                    b.iter(|| {
                        let mut total = 0.0f32;
                        for doc in docs.chunks_exact(r_c * D) {
                            maxes.iter_mut().for_each(|m| *m = f32::NEG_INFINITY);
                            (k.update)(&q, r_q, D, doc, &mut maxes);
                            total += maxes.iter().sum::<f32>();
                        }
                        black_box(total)
                    })
                },
            );
        }
        // Two candidates per call (what the engine does for a stage of one document row):
        // independent dot products overlap where one alone waits on FMA latency.
        for set in available().filter(|k| k.name != "scalar") {
            let k = set.f32;
            g.bench_function(
                BenchmarkId::new(format!("fused-pair-{}", set.name), &shape),
                |b| {
                    let (mut ma, mut mb) = (vec![0f32; r_q], vec![0f32; r_q]);
                    b.iter(|| {
                        let mut total = 0.0f32;
                        for two in docs.chunks_exact(2 * r_c * D) {
                            let (x, y) = two.split_at(r_c * D);
                            ma.iter_mut().for_each(|m| *m = f32::NEG_INFINITY);
                            mb.iter_mut().for_each(|m| *m = f32::NEG_INFINITY);
                            (k.update_pair)(&q, r_q, D, x, y, &mut ma, &mut mb);
                            total += ma.iter().sum::<f32>() + mb.iter().sum::<f32>();
                        }
                        black_box(total)
                    })
                },
            );
        }
        // The compact encodings (bf16, f16, int8 + per-vector scale) through every SIMD set.
        let bf = encode_bf16(&docs);
        let hf = encode_f16(&docs);
        let (i8v, i8s) = encode_int8(&docs, D);
        for set in available().filter(|k| k.name != "scalar") {
            let ck = set.compact;
            for (dtype, bits) in [("bf16", &bf), ("f16", &hf)] {
                let update = if dtype == "bf16" { ck.bf16 } else { ck.f16 };
                g.bench_function(
                    BenchmarkId::new(format!("fused-{dtype}-{}", set.name), &shape),
                    |b| {
                        let mut maxes = vec![0f32; r_q];
                        b.iter(|| {
                            let mut total = 0.0f32;
                            for doc in bits.chunks_exact(r_c * D) {
                                maxes.iter_mut().for_each(|m| *m = f32::NEG_INFINITY);
                                update(&q, r_q, D, doc, &mut maxes);
                                total += maxes.iter().sum::<f32>();
                            }
                            black_box(total)
                        })
                    },
                );
            }
            g.bench_function(
                BenchmarkId::new(format!("fused-int8-{}", set.name), &shape),
                |b| {
                    let mut maxes = vec![0f32; r_q];
                    b.iter(|| {
                        let mut total = 0.0f32;
                        for (doc, scales) in i8v.chunks_exact(r_c * D).zip(i8s.chunks_exact(r_c)) {
                            maxes.iter_mut().for_each(|m| *m = f32::NEG_INFINITY);
                            (ck.int8)(&q, r_q, D, doc, scales, &mut maxes);
                            total += maxes.iter().sum::<f32>();
                        }
                        black_box(total)
                    })
                },
            );
            // bf16 rows against the query rounded to bf16 once (the rerank's bf16 path:
            // `vdpbf16ps` in the avx512dp set, the f32-query kernel elsewhere).
            let qb = Bf16Query::new(&q);
            g.bench_function(
                BenchmarkId::new(format!("fused-bf16q-{}", set.name), &shape),
                |b| {
                    let mut maxes = vec![0f32; r_q];
                    b.iter(|| {
                        let mut total = 0.0f32;
                        for doc in bf.chunks_exact(r_c * D) {
                            maxes.iter_mut().for_each(|m| *m = f32::NEG_INFINITY);
                            (ck.bf16_q)(&qb.bits, &qb.rounded, r_q, D, doc, &mut maxes);
                            total += maxes.iter().sum::<f32>();
                        }
                        black_box(total)
                    })
                },
            );
            // int8 rows against the query quantised once (the rerank's int8 path): i16 x i8
            // pairs in exact i32 sums (`vpmaddwd`, or VNNI's `vpdpwssd` in the avx512dp set).
            let qq = QuantQuery::new(&q, D);
            g.bench_function(
                BenchmarkId::new(format!("fused-int8q-{}", set.name), &shape),
                |b| {
                    let mut maxes = vec![0f32; r_q];
                    b.iter(|| {
                        let mut total = 0.0f32;
                        for (doc, scales) in i8v.chunks_exact(r_c * D).zip(i8s.chunks_exact(r_c)) {
                            maxes.iter_mut().for_each(|m| *m = f32::NEG_INFINITY);
                            (ck.int8_q)(&qq.values, &qq.scales, r_q, D, doc, scales, &mut maxes);
                            total += maxes.iter().sum::<f32>();
                        }
                        black_box(total)
                    })
                },
            );
        }
        let qm = MatRef::from_row_major_slice(&q, r_q, D);
        let dm = MatRef::from_row_major_slice(&docs, C * r_c, D);
        let mut out = Mat::<f32>::zeros(r_q, C * r_c);
        g.bench_function(BenchmarkId::new("faer-gemm", &shape), |b| {
            b.iter(|| {
                matmul(
                    out.as_mut(),
                    Accum::Replace,
                    qm,
                    dm.transpose(),
                    1.0f32,
                    Par::Seq,
                );
                black_box(out.as_ref().get(0, 0));
            })
        });
        g.bench_function(BenchmarkId::new("faer-gemm+max", &shape), |b| {
            b.iter(|| {
                matmul(
                    out.as_mut(),
                    Accum::Replace,
                    qm,
                    dm.transpose(),
                    1.0f32,
                    Par::Seq,
                );
                let mut total = 0.0f32;
                for cand in 0..C {
                    for i in 0..r_q {
                        let mut m = f32::NEG_INFINITY;
                        for j in 0..r_c {
                            m = m.max(out[(i, cand * r_c + j)]);
                        }
                        total += m;
                    }
                }
                black_box(total)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
