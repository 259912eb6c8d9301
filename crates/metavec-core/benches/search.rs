//! End-to-end engine bench on synthetic Matryoshka data: ingest + flush time, then per budget the
//! median latency of the default (HNSW + rerank) search and of the exact scan, measured in the
//! same run on the same queries, with recall@10 against exact and vector bytes read per query.
//!
//! `cargo bench -p metavec-core --bench search` (env: MV_DOCS, MV_DIM, MV_MC, MV_MQ, MV_QUERIES,
//! MV_THREADS=1 to pin rayon to one thread). Prints one JSON line per budget.

use std::time::Instant;

use metavec_core::search::Stage;
use metavec_core::synth::{generate, SynthData, SynthSpec};
use metavec_core::{
    Budget, CollectionConfig, CollectionOptions, Document, Engine, EngineOptions, SearchRequest,
};

mod common;
use common::{env, percentile};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (n, dim, mc, mq, nq) = (
        env("MV_DOCS", 20_000),
        env("MV_DIM", 384),
        env("MV_MC", 64),
        env("MV_MQ", 16),
        env("MV_QUERIES", 50),
    );
    let threads = env("MV_THREADS", 1);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .unwrap();
    let mut cfg = CollectionConfig::new(dim as u32, mc as u32, mq as u32);
    cfg.hnsw.ef_construction = 100;
    let ladder: Vec<(u32, u32)> = cfg.budgets.iter().map(|b| (b.r_q, b.r_c)).collect();
    let t = Instant::now();
    let data = generate(&SynthSpec::new(n, nq, dim, &ladder, 7));
    eprintln!(
        "generated {n} docs x {mc} x {dim} in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(
        dir.path(),
        EngineOptions {
            collection: CollectionOptions {
                memtable_max_bytes: usize::MAX,
                ..Default::default()
            },
        },
    )
    .unwrap();
    let coll = engine.create_collection("bench", cfg.clone()).unwrap();
    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        coll.upsert(
            chunk
                .iter()
                .map(|&i| Document::new(SynthData::id(i), data.doc(i).to_vec()))
                .collect(),
        )
        .unwrap();
    }
    let ingest = t.elapsed();
    let t = Instant::now();
    coll.flush().unwrap();
    let flush = t.elapsed();
    let info = coll.info();
    println!(
        "{{\"docs\":{n},\"dim\":{dim},\"doc_vectors\":{mc},\"threads\":{threads},\"ingest_docs_per_s\":{:.0},\"flush_s\":{:.2},\"segment_bytes\":{},\"index_bytes\":{}}}",
        n as f64 / ingest.as_secs_f64(),
        flush.as_secs_f64(),
        info.segments[0].file_bytes,
        info.segments[0].index_bytes
    );

    for &b in &cfg.budgets {
        let budget = Budget::new(b.r_q, b.r_c);
        let (mut fast, mut exact, mut recall, mut bytes, mut scored) =
            (Vec::new(), Vec::new(), 0.0, 0u64, 0u64);
        for qi in 0..nq {
            let q = data.query(qi)[..b.r_q as usize * dim].to_vec();
            let req = SearchRequest::new(q.clone(), budget, 10);
            let t = Instant::now();
            let a = coll.search(&req).unwrap();
            fast.push(t.elapsed());
            let t = Instant::now();
            let e = coll.search(&req.clone().exact()).unwrap();
            exact.push(t.elapsed());
            recall += e
                .hits
                .iter()
                .filter(|h| a.hits.iter().any(|x| x.id == h.id))
                .count() as f64
                / e.hits.len() as f64;
            bytes += a.stats.vector_bytes_read;
            scored += a.stats.docs_scored;
        }
        let (p50, p99, e50) = (
            percentile(&mut fast, 0.5),
            percentile(&mut fast, 0.99),
            percentile(&mut exact, 0.5),
        );
        println!(
            "{{\"budget\":\"{}x{}\",\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"exact_p50_ms\":{:.3},\"speedup_vs_exact\":{:.1},\"recall_at_10\":{:.3},\"docs_scored\":{},\"vector_bytes_per_query\":{}}}",
            b.r_q,
            b.r_c,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            e50.as_secs_f64() * 1e3,
            e50.as_secs_f64() / p50.as_secs_f64(),
            recall / nq as f64,
            scored / nq as u64,
            bytes / nq as u64
        );
    }

    // Cascade vs one stage at the deepest budget, same queries, recall against exact there.
    let deep = *cfg.budgets.last().unwrap();
    let mid = cfg.budgets[cfg.budgets.len() / 2];
    let variants: Vec<(&str, Option<u32>, Vec<Stage>)> = vec![
        ("plain C=320", None, vec![]),
        ("plain C=1000", Some(1000), vec![]),
        (
            "cascade C=1000: (1,1) keep 1000 -> mid keep 100 -> deep",
            Some(1000),
            vec![
                Stage {
                    budget: Budget::new(1, 1),
                    keep: 1000,
                },
                Stage {
                    budget: mid,
                    keep: 100,
                },
            ],
        ),
    ];
    let truth: Vec<Vec<String>> = (0..nq)
        .map(|qi| {
            let req =
                SearchRequest::new(data.query(qi)[..deep.r_q as usize * dim].to_vec(), deep, 10)
                    .exact();
            coll.search(&req)
                .unwrap()
                .hits
                .into_iter()
                .map(|h| h.id)
                .collect()
        })
        .collect();
    for (name, cands, stages) in variants {
        let (mut lat, mut recall, mut dots, mut pruned) = (Vec::new(), 0.0, 0u64, 0u64);
        for (qi, want) in truth.iter().enumerate() {
            let mut req =
                SearchRequest::new(data.query(qi)[..deep.r_q as usize * dim].to_vec(), deep, 10);
            req.candidates = cands;
            req.stages = stages.clone();
            let t = Instant::now();
            let r = coll.search(&req).unwrap();
            lat.push(t.elapsed());
            recall += want
                .iter()
                .filter(|id| r.hits.iter().any(|h| &h.id == *id))
                .count() as f64
                / 10.0;
            dots += r.stats.dot_products;
            pruned += r.stats.pruned;
        }
        println!(
            "{{\"variant\":\"{name}\",\"budget\":\"{}x{}\",\"p50_ms\":{:.3},\"recall_at_10\":{:.3},\"dot_products_per_query\":{},\"pruned_per_query\":{}}}",
            deep.r_q,
            deep.r_c,
            percentile(&mut lat, 0.5).as_secs_f64() * 1e3,
            recall / nq as f64,
            dots / nq as u64,
            pruned / nq as u64
        );
    }
}
