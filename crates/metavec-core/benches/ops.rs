//! Operations bench: compaction throughput, search latency during compaction vs without it, and
//! snapshot time and size, on one collection (default 20,000 docs x 64 x 384 f32 in 4 segments,
//! 10% deleted), all in one run. `cargo bench -p metavec-core --bench ops` (env MV_DOCS, MV_DIM,
//! MV_MC). Prints JSON lines.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metavec_core::synth::{generate, SynthData, SynthSpec};
use metavec_core::{
    Budget, CollectionConfig, CollectionOptions, Document, Engine, EngineOptions, SearchRequest,
};

mod common;
use common::{env, percentile};

fn p50(v: &mut [Duration]) -> f64 {
    percentile(v, 0.5).as_secs_f64() * 1e3
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (n, dim, mc) = (env("MV_DOCS", 20_000), env("MV_DIM", 384), env("MV_MC", 64));
    let cfg = CollectionConfig::new(dim as u32, mc as u32, 16);
    let ladder: Vec<(u32, u32)> = cfg.budgets.iter().map(|b| (b.r_q, b.r_c)).collect();
    let data = generate(&SynthSpec::new(n, 20, dim, &ladder, 7));
    let dir = tempfile::tempdir().unwrap();
    let opts = CollectionOptions {
        memtable_max_bytes: usize::MAX,
        compact_fanout: usize::MAX,
        compact_max_segments: usize::MAX,
        compact_dead_ratio: 2.0,
        ..Default::default()
    };
    let engine = Engine::open(dir.path(), EngineOptions { collection: opts }).unwrap();
    let coll = engine.create_collection("ops", cfg.clone()).unwrap();
    for part in 0..4 {
        let range: Vec<usize> = (part * n / 4..(part + 1) * n / 4).collect();
        for chunk in range.chunks(500) {
            coll.upsert(
                chunk
                    .iter()
                    .map(|&i| Document::new(SynthData::id(i), data.doc(i).to_vec()))
                    .collect(),
            )
            .unwrap();
        }
        coll.flush().unwrap();
    }
    let gone: Vec<String> = (0..n).step_by(10).map(SynthData::id).collect();
    coll.delete(&gone).unwrap();

    let budget = Budget::new(4, 8);
    let query = |i: usize| SearchRequest::new(data.query(i % 20)[..4 * dim].to_vec(), budget, 10);
    for i in 0..20 {
        coll.search(&query(i)).unwrap(); // warm the page cache and block checks
    }
    let mut quiet = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        coll.search(&query(i)).unwrap();
        quiet.push(t.elapsed());
    }

    let done = Arc::new(AtomicBool::new(false));
    let compactor = {
        let (c, done) = (coll.clone(), done.clone());
        std::thread::spawn(move || {
            let r = c.compact().unwrap();
            done.store(true, Ordering::Release);
            r
        })
    };
    let mut during = Vec::new();
    let mut i = 0;
    while !done.load(Ordering::Acquire) {
        let t = Instant::now();
        coll.search(&query(i)).unwrap();
        during.push(t.elapsed());
        i += 1;
    }
    let report = compactor.join().unwrap();
    println!(
        "{{\"docs\":{n},\"dim\":{dim},\"doc_vectors\":{mc},\"compaction_s\":{:.2},\"compaction_docs_in_per_s\":{:.0},\"docs_in\":{},\"docs_out\":{},\"bytes_before\":{},\"bytes_after\":{}}}",
        report.elapsed.as_secs_f64(),
        report.docs_in as f64 / report.elapsed.as_secs_f64(),
        report.docs_in,
        report.docs_out,
        report.bytes_before,
        report.bytes_after
    );
    println!(
        "{{\"budget\":\"4x8\",\"search_p50_ms_quiet\":{:.2},\"search_p50_ms_during_compaction\":{:.2},\"ratio\":{:.2},\"searches_during\":{}}}",
        p50(&mut quiet),
        p50(&mut during),
        p50(&mut during) / p50(&mut quiet),
        during.len()
    );
    let t = Instant::now();
    let snap = engine.create_snapshot("ops").unwrap();
    let snap_time = t.elapsed();
    let t = Instant::now();
    engine.restore_snapshot(&snap.name, "restored").unwrap();
    println!(
        "{{\"snapshot_s\":{:.3},\"snapshot_bytes\":{},\"snapshot_files\":{},\"restore_with_verify_s\":{:.2}}}",
        snap_time.as_secs_f64(),
        snap.bytes(),
        snap.files.len(),
        t.elapsed().as_secs_f64()
    );
}
