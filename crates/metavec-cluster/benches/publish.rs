//! Publish throughput of cluster writes: three nats-server processes (a JetStream cluster on
//! 127.0.0.1-3, shard streams R3) and one front, documents of ~50 KB and ~640 KB, one document per
//! call (one in flight) and 64 per call (the call's publishes in flight together). No replica
//! consumes, so this is the front's path alone: validation, encoding, publish, quorum ack.
//!
//! `cargo bench -p metavec-cluster --bench publish` (needs nats-server: see tests/nats/mod.rs).
//! Prints one JSON line per case.

// The tests' harness; the bench does not kill or restart servers.
#[path = "../tests/nats/mod.rs"]
#[allow(dead_code)]
mod nats;

use std::sync::Arc;
use std::time::Instant;

use metavec_cluster::{Node, NodeOptions};
use metavec_core::{CollectionConfig, Document, Dtype, Engine, EngineOptions};
use rand::{Rng, SeedableRng};

fn docs(n: usize, floats: usize, seed: u64) -> Vec<Document> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let v = (0..floats).map(|_| rng.random::<f32>() - 0.5).collect();
            Document::new(format!("d{seed}-{i:06}"), v)
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(cluster) = nats::start("publish bench") else {
        return;
    };
    cluster.ready().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(dir.path(), EngineOptions::default()).unwrap());
    let mut opts = NodeOptions::new(cluster.url(), "a");
    opts.stream_replicas = 3;
    let node = Node::start(engine, opts).await.unwrap();
    // (label, vectors, dim): 16 x 768 f32 = 48 KiB, 64 x 2,560 f32 = 640 KiB.
    for (label, mc, dim, total) in [
        ("50KB", 16u32, 768u32, 2_000usize),
        ("640KB", 64, 2_560, 320),
    ] {
        let mut cfg = CollectionConfig::new(dim, mc, 16.min(mc));
        cfg.dtype = Dtype::F32;
        let name = format!("bench_{label}");
        node.create_collection(&name, cfg, Some(4), Some(1))
            .await
            .unwrap();
        let all = docs(total, (mc * dim) as usize, 1);
        let bytes = (mc * dim * 4) as f64;
        for (mode, per_call) in [("one in flight", 1usize), ("64 per call", 64)] {
            let started = Instant::now();
            for batch in all.chunks(per_call) {
                node.upsert(&name, batch.to_vec()).await.unwrap();
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{{\"doc\":\"{label}\",\"mode\":\"{mode}\",\"docs\":{total},\"secs\":{secs:.2},\"docs_per_s\":{:.0},\"mb_per_s\":{:.1}}}",
                total as f64 / secs,
                total as f64 * bytes / secs / 1e6
            );
        }
    }
}
