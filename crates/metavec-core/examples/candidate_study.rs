//! The candidate-stage study of issue #15: on a synthetic profile, how much of the exact top 10
//! at each budget do candidate lists of different kinds hold (each list reranked exactly at the
//! budget), and at what cost.
//!
//! `cargo build --release --workspace --examples && target/release/examples/candidate_study
//!  [hard|easy] [docs] [queries] [dim]` (defaults hard 50000 100 64; M_c 16, M_q 8,
//! ladder (1,1) (2,4) (4,8) (8,16)).

use std::time::Instant;

use metavec_core::index::tokens::{auto_centroids, Probe, TokenIndex, TokenParams};
use metavec_core::score::dot;
use metavec_core::synth::{generate, SynthSpec};
use rayon::prelude::*;

const LADDER: [(u32, u32); 4] = [(1, 1), (2, 4), (4, 8), (8, 16)];
const K: usize = 10;

fn top(scores: &[f32], n: usize, among: Option<&[u32]>) -> Vec<u32> {
    let mut idx: Vec<u32> = match among {
        Some(a) => a.to_vec(),
        None => (0..scores.len() as u32).collect(),
    };
    let by = |a: &u32, b: &u32| {
        scores[*b as usize]
            .total_cmp(&scores[*a as usize])
            .then(a.cmp(b))
    };
    if idx.len() > n {
        idx.select_nth_unstable_by(n - 1, by);
        idx.truncate(n);
    }
    idx.sort_by(by);
    idx
}

fn recall(truth: &[u32], got: &[u32]) -> f64 {
    truth.iter().filter(|t| got.contains(t)).count() as f64 / truth.len() as f64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let profile = args.first().map_or("hard", String::as_str).to_string();
    let num = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (docs, queries, dim) = (num(1, 50_000), num(2, 100), num(3, 64));
    let spec = if profile == "hard" {
        SynthSpec::hard(docs, queries, dim, &LADDER, 7)
    } else {
        SynthSpec::new(docs, queries, dim, &LADDER, 7)
    };
    let mut spec = spec;
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f32>().ok());
    if let Some(v) = env("STUDY_LEVEL_NOISE") {
        spec.level_noise = v;
    }
    if let Some(v) = env("STUDY_TOPIC_NOISE") {
        spec.topic_noise = v;
    }
    if let Some(v) = env("STUDY_QUERY_NOISE") {
        spec.query_noise = v;
    }
    if let Some(v) = env("STUDY_FACET_WEIGHT") {
        spec.facet_weight = v;
    }
    eprintln!("{spec:?}");
    let t = Instant::now();
    let mut data = generate(&spec);
    // STUDY_SEGMENT=n: keep only the first n documents, as one segment of a larger collection
    // holds (the topic and facet structure stays the whole collection's).
    let docs = match std::env::var("STUDY_SEGMENT")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(n) if n < docs => {
            data.docs.truncate(n * spec.doc_vectors() * dim);
            n
        }
        _ => docs,
    };
    let (mc, mq) = (spec.doc_vectors(), spec.query_vectors());
    eprintln!(
        "generated {profile} {docs} x {mc} x {dim} in {:.1?}",
        t.elapsed()
    );

    // Exact scores of every document at every budget, per query: [query][budget][doc].
    let t = Instant::now();
    let exact: Vec<Vec<Vec<f32>>> = (0..queries)
        .map(|qi| {
            let q = data.query(qi);
            let per_doc: Vec<[f32; 4]> = (0..docs)
                .into_par_iter()
                .map(|d| {
                    let dv = data.doc(d);
                    let mut out = [0f32; 4];
                    for (b, &(rq, rc)) in LADDER.iter().enumerate() {
                        out[b] = (0..rq as usize)
                            .map(|i| {
                                (0..rc as usize)
                                    .map(|j| {
                                        dot(&q[i * dim..(i + 1) * dim], &dv[j * dim..(j + 1) * dim])
                                    })
                                    .fold(f32::NEG_INFINITY, f32::max)
                            })
                            .sum();
                    }
                    out
                })
                .collect();
            (0..LADDER.len())
                .map(|b| per_doc.iter().map(|s| s[b]).collect())
                .collect()
        })
        .collect();
    let truth: Vec<Vec<Vec<u32>>> = exact
        .iter()
        .map(|per_b| per_b.iter().map(|s| top(s, K, None)).collect())
        .collect();
    eprintln!("exact scores in {:.1?}", t.elapsed());
    let _ = mq;

    // One table row: per budget, the recall of the exact top n at budget `first`, reranked.
    let row = |first: usize, n: usize| -> String {
        let r: Vec<String> = (0..LADDER.len())
            .map(|b| {
                let m: f64 = (0..queries)
                    .map(|qi| {
                        let list = top(&exact[qi][first], n, None);
                        recall(&truth[qi][b], &top(&exact[qi][b], K, Some(&list)))
                    })
                    .sum::<f64>()
                    / queries as f64;
                format!("{m:.3}")
            })
            .collect();
        format!("| {n} | {} |", r.join(" | "))
    };
    println!("## vector-0 lists (exact v0 top-n, exact rerank at the budget)");
    println!(
        "| n | {} |",
        LADDER.map(|(a, b)| format!("({a},{b})")).join(" | ")
    );
    for n in [320, 500, 1000, 2000, 5000, 10000] {
        println!("{}", row(0, n));
    }
    println!("\n## exact (2,4) first stage keeping n");
    for n in [500, 1000, 2000] {
        println!("{}", row(1, n));
    }

    let tokens_of = |nv: usize| -> Vec<f32> {
        (0..docs)
            .flat_map(|d| data.doc(d)[..nv * dim].iter().copied())
            .collect()
    };
    let nvs: Vec<usize> = std::env::var("STUDY_NV")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![8]);
    let cs: Vec<usize> = std::env::var("STUDY_C")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![0]);
    let nvs = if std::env::var("STUDY_SPLIT").is_ok() {
        Vec::new()
    } else {
        nvs
    };
    for nv in nvs {
        let toks = tokens_of(nv.min(mc));
        for &c in &cs {
            let mut p = TokenParams::new(nv.min(mc));
            p.centroids = c;
            let t = Instant::now();
            let index = TokenIndex::build(&toks, dim, docs, p);
            let build = t.elapsed();
            println!(
                "\n## token index: {} vectors/doc, {} centroids (auto {}), built in {:.2?}, {} bytes ({:.1} per doc)",
                index.index_vectors(),
                index.centroids(),
                auto_centroids(docs * nv),
                build,
                index.byte_len(),
                index.byte_len() as f64 / docs as f64
            );
            println!("| budget | nq | nprobe | pool | pool recall | approx keep | exact ({{nq}},{{rc'}}) keep 500 recall | probe us |");
            for (b, &(rq, rc)) in LADDER.iter().enumerate().skip(1) {
                let nq = (rq as usize).min(4);
                let rcp = (rc as usize).min(index.index_vectors());
                // Exact scores at the intermediate budget (nq, rc').
                let mid: Vec<Vec<f32>> = (0..queries)
                    .map(|qi| {
                        let q = data.query(qi);
                        (0..docs)
                            .into_par_iter()
                            .map(|d| {
                                let dv = data.doc(d);
                                (0..nq)
                                    .map(|i| {
                                        (0..rcp)
                                            .map(|j| {
                                                dot(
                                                    &q[i * dim..(i + 1) * dim],
                                                    &dv[j * dim..(j + 1) * dim],
                                                )
                                            })
                                            .fold(f32::NEG_INFINITY, f32::max)
                                    })
                                    .sum()
                            })
                            .collect()
                    })
                    .collect();
                let nprobes: Vec<usize> = std::env::var("STUDY_NPROBE")
                    .ok()
                    .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
                    .unwrap_or_else(|| vec![4, 8, 16, 32]);
                for &nprobe in &nprobes {
                    for akeep in [usize::MAX, 2000, 1000] {
                        let (mut pool, mut us, mut prec, mut r) = (0usize, 0f64, 0f64, 0f64);
                        for qi in 0..queries {
                            let t = Instant::now();
                            let (cands, st) = index.search(
                                data.query(qi),
                                Probe {
                                    nq,
                                    rc: rc as usize,
                                    nprobe,
                                    keep: akeep,
                                    until: None,
                                },
                                &|_| true,
                            );
                            us += t.elapsed().as_secs_f64() * 1e6;
                            pool += st.pool;
                            let list: Vec<u32> = cands.iter().map(|c| c.0).collect();
                            prec += recall(&truth[qi][b], &top(&exact[qi][b], K, Some(&list)));
                            let kept = top(&mid[qi], 500, Some(&list));
                            r += recall(&truth[qi][b], &top(&exact[qi][b], K, Some(&kept)));
                        }
                        let n = queries as f64;
                        println!(
                            "| ({rq},{rc}) | {nq} | {nprobe} | {} | {:.3} | {} | {:.3} | {:.0} |",
                            pool / queries,
                            prec / n,
                            if akeep == usize::MAX {
                                "all".to_string()
                            } else {
                                akeep.to_string()
                            },
                            r / n,
                            us / n
                        );
                    }
                }
            }
        }
    }
    // STUDY_SPLIT=a,b,c: the documents as consecutive segments of these sizes, each with its own
    // token index (automatic centroids), probed as the engine probes them (its default probes and
    // keep), the candidates of all segments cut to the engine's global share by approximate
    // score, then an exact (nq, rc') stage keeping 1,000 and the exact rerank at the budget.
    if let Ok(split) = std::env::var("STUDY_SPLIT") {
        let sizes: Vec<usize> = split.split(',').filter_map(|x| x.parse().ok()).collect();
        let nv = 8.min(mc);
        let mut segs = Vec::new();
        let mut start = 0;
        for &n in &sizes {
            let n = n.min(docs - start);
            let toks: Vec<f32> = (start..start + n)
                .flat_map(|d| data.doc(d)[..nv * dim].iter().copied())
                .collect();
            let index = TokenIndex::build(&toks, dim, n, TokenParams::new(nv));
            println!(
                "segment {start}..{}: {} centroids",
                start + n,
                index.centroids()
            );
            segs.push((start, index));
            start += n;
        }
        println!("\n## {} segments, engine defaults", segs.len());
        println!("| budget | nprobe x | candidates | recall before cut | recall after cut | final recall |");
        for (b, &(rq, rc)) in LADDER.iter().enumerate().skip(1) {
            let nq = (rq as usize).min(4);
            let rcp = (rc as usize).min(nv);
            for mult in [1usize, 2, 4] {
                let (mut before, mut after, mut fin, mut ncand) = (0f64, 0f64, 0f64, 0usize);
                for qi in 0..queries {
                    let q = data.query(qi);
                    let mut all: Vec<(f32, u32)> = Vec::new();
                    let mut largest = 0;
                    for (s0, index) in &segs {
                        let base = if nq == 1 { 128 } else { 64 };
                        let np = base.max((index.centroids() as f64).sqrt() as usize) * mult;
                        let v0 = |row: &[f32], ds: &[u32], out: &mut [f32]| {
                            for (o, &d) in out.iter_mut().zip(ds) {
                                *o = dot(row, &data.doc(*s0 + d as usize)[..dim]);
                            }
                        };
                        let (found, _) = index.search_with(
                            q,
                            Probe {
                                nq,
                                rc: rc as usize,
                                nprobe: np,
                                keep: 1000,
                                until: None,
                            },
                            &|_| true,
                            if std::env::var("STUDY_V0").is_ok() {
                                Some(&v0)
                            } else {
                                None
                            },
                        );
                        largest = largest.max(found.len());
                        all.extend(found.iter().map(|&(o, a)| (a, (*s0 + o as usize) as u32)));
                    }
                    let list: Vec<u32> = all.iter().map(|x| x.1).collect();
                    before += recall(&truth[qi][b], &top(&exact[qi][b], K, Some(&list)));
                    let global = 4000.max(largest);
                    all.sort_by(|x, y| y.0.total_cmp(&x.0));
                    all.truncate(global);
                    ncand += all.len();
                    let list: Vec<u32> = all.iter().map(|x| x.1).collect();
                    after += recall(&truth[qi][b], &top(&exact[qi][b], K, Some(&list)));
                    // The implicit exact stage at (nq, rc'), then the budget.
                    let q = data.query(qi);
                    let mid = |d: u32| -> f32 {
                        let dv = data.doc(d as usize);
                        (0..nq)
                            .map(|i| {
                                (0..rcp)
                                    .map(|j| {
                                        dot(&q[i * dim..(i + 1) * dim], &dv[j * dim..(j + 1) * dim])
                                    })
                                    .fold(f32::NEG_INFINITY, f32::max)
                            })
                            .sum()
                    };
                    let kept: Vec<u32> = if (nq, rcp) != (rq as usize, rc as usize) {
                        let mut m: Vec<(f32, u32)> = list.iter().map(|&d| (mid(d), d)).collect();
                        m.sort_by(|x, y| y.0.total_cmp(&x.0));
                        m.truncate(1000);
                        m.into_iter().map(|x| x.1).collect()
                    } else {
                        list
                    };
                    fin += recall(&truth[qi][b], &top(&exact[qi][b], K, Some(&kept)));
                }
                let n = queries as f64;
                println!(
                    "| ({rq},{rc}) | {mult} | {} | {:.3} | {:.3} | {:.3} |",
                    ncand / queries,
                    before / n,
                    after / n,
                    fin / n
                );
            }
        }
        return;
    }
    println!("\nexact scan dots/query at (8,16): {}", docs * 128);
}
