//! Quality loss of the compact encodings against f32, by exhaustive MaxSim over synthetic data:
//! for every budget of the default ladder, recall@10 of each dtype's exact top 10 against the
//! exact f32 top 10 at the same budget, and nDCG@10 of the query's target document (one relevant
//! document) for f32 and each dtype. As in storage, vector 0 stays f32 and only vectors 1.. are
//! encoded.
//!
//! `cargo run --release -p metavec-core --example dtype_quality -- [docs] [queries]`
//! (defaults 5000 and 50; D = 384, M_c = 64, the bench's generator, seed 7).

use metavec_core::config::METAEMBED_LADDER;
use metavec_core::score::compact::{compact_kernel, encode_bf16, encode_f16, encode_int8};
use metavec_core::score::kernel;
use metavec_core::synth::{generate, SynthSpec};
use rayon::prelude::*;

const D: usize = 384;
const K: usize = 10;

fn top_k(scores: &[[f32; 4]], t: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b][t].total_cmp(&scores[a][t]).then(a.cmp(&b)));
    idx.truncate(K);
    idx
}

fn ndcg_single(top: &[usize], target: usize) -> f64 {
    top.iter()
        .position(|&d| d == target)
        .map_or(0.0, |r| 1.0 / ((r + 2) as f64).log2())
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let docs = args.first().copied().unwrap_or(5000);
    let queries = args.get(1).copied().unwrap_or(50);
    let spec = SynthSpec::new(docs, queries, D, &METAEMBED_LADDER, 7);
    let data = generate(&spec);
    let m_c = spec.doc_vectors();
    let bf = encode_bf16(&data.docs);
    let hf = encode_f16(&data.docs);
    let (i8v, i8s) = encode_int8(&data.docs, D);
    let (fk, ck) = (kernel(), compact_kernel());
    println!(
        "docs {docs} x {m_c} x {D}, {queries} queries, kernels {}",
        metavec_core::score::simd::chosen().name
    );
    println!("budget    dtype  recall@10_vs_f32  nDCG@10  nDCG@10_f32  nDCG_loss");
    for (r_q, r_c) in METAEMBED_LADDER {
        let (r_q, r_c) = (r_q as usize, r_c as usize);
        // Per query: [f32, bf16, f16, int8] top 10.
        let tops: Vec<[Vec<usize>; 4]> = (0..queries)
            .into_par_iter()
            .map(|qi| {
                let q = &data.query(qi)[..r_q * D];
                let mut s = vec![[0f32; 4]; docs];
                let mut m = vec![0f32; r_q];
                for (d, sd) in s.iter_mut().enumerate() {
                    let (a, b) = (d * m_c * D, d * m_c * D + r_c * D);
                    let reset =
                        |m: &mut Vec<f32>| m.iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
                    reset(&mut m);
                    (fk.update)(q, r_q, D, &data.docs[a..b], &mut m);
                    sd[0] = m.iter().sum();
                    // Vector 0 in f32, the rest encoded.
                    let v0 = &data.docs[a..a + D];
                    let a1 = a + D;
                    reset(&mut m);
                    (fk.update)(q, r_q, D, v0, &mut m);
                    (ck.bf16)(q, r_q, D, &bf[a1..b], &mut m);
                    sd[1] = m.iter().sum();
                    reset(&mut m);
                    (fk.update)(q, r_q, D, v0, &mut m);
                    (ck.f16)(q, r_q, D, &hf[a1..b], &mut m);
                    sd[2] = m.iter().sum();
                    reset(&mut m);
                    (fk.update)(q, r_q, D, v0, &mut m);
                    let rows = d * m_c + 1..d * m_c + r_c;
                    (ck.int8)(q, r_q, D, &i8v[a1..b], &i8s[rows], &mut m);
                    sd[3] = m.iter().sum();
                }
                [0, 1, 2, 3].map(|t| top_k(&s, t))
            })
            .collect();
        let ndcg = |t: usize| {
            tops.iter()
                .enumerate()
                .map(|(qi, x)| ndcg_single(&x[t], data.targets[qi]))
                .sum::<f64>()
                / queries as f64
        };
        let base = ndcg(0);
        for (t, name) in [(1, "bf16"), (2, "f16"), (3, "int8")] {
            let recall = tops
                .iter()
                .map(|x| x[t].iter().filter(|d| x[0].contains(d)).count() as f64 / K as f64)
                .sum::<f64>()
                / queries as f64;
            let n = ndcg(t);
            println!(
                "({r_q:>2},{r_c:>2})  {name:>5}  {recall:>16.4}  {n:>7.4}  {base:>11.4}  {:>9.4}",
                base - n
            );
        }
    }
}
