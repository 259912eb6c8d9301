//! Publish throughput of cluster writes: three nats-server processes (a JetStream cluster on
//! 127.0.0.1-3, shard streams R3) and one node as the front, documents of ~50 KB and ~640 KB, one
//! document per call (one in flight) and 64 per call (the call's publishes in flight together).
//!
//! Each case runs under NATS's default sync (fsync every 2 minutes) and under
//! `sync_interval: always` (fsync before every acknowledgement), and each both with no replica
//! consuming (the front's path alone: validation, encoding, publish, quorum ack) and with this
//! node's replica of every shard consuming alongside (applying through the engine, WAL fsync
//! included); then `caught_up_s` is when the replicas have applied the last write.
//!
//! `cargo bench -p metavec-cluster --bench publish` (needs nats-server: see tests/nats/mod.rs).
//! Prints one JSON line per case.

// The tests' harness; the bench does not kill or restart servers.
#[path = "../tests/nats/mod.rs"]
#[allow(dead_code)]
mod nats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use metavec_cluster::{Node, NodeOptions, ReadToken};
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

/// Waits until this node's replicas of `name` have applied `token`.
async fn caught_up(node: &Node, name: &str, token: &ReadToken) {
    let entry = node.entry(name).await.unwrap();
    for s in 0..entry.shards {
        while node.local_replica(&entry, s, token.seq(s)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    for sync_always in [false, true] {
        let sync = if sync_always { "always" } else { "default" };
        let Some(cluster) = nats::start_with("publish bench", sync_always) else {
            return;
        };
        cluster.ready().await;
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::open(dir.path(), EngineOptions::default()).unwrap());
        let mut opts = NodeOptions::new(cluster.url(), "a");
        opts.stream_replicas = 3;
        let node = Node::start(engine, opts).await.unwrap();
        // The consuming cases first: Node::sync starts a replica of every collection assigned
        // to this node, so it must not run once a collection of the other cases exists.
        for consuming in [true, false] {
            // (label, vectors, dim, documents): 16 x 768 f32 = 48 KiB, 64 x 2,560 f32 = 640 KiB.
            for (label, mc, dim, total) in [
                ("50KB", 16u32, 768u32, 2_000usize),
                ("640KB", 64, 2_560, 320),
            ] {
                let all = docs(total, (mc * dim) as usize, 1);
                let bytes = (mc * dim * 4) as f64;
                for (mode, per_call) in [("one in flight", 1usize), ("64 per call", 64)] {
                    let mut cfg = CollectionConfig::new(dim, mc, 16.min(mc));
                    cfg.dtype = Dtype::F32;
                    let name = format!("bench_{label}_{per_call}_{consuming}");
                    node.create_collection(&name, cfg, Some(4), Some(1))
                        .await
                        .unwrap();
                    if consuming {
                        node.sync().await.unwrap();
                    }
                    let started = Instant::now();
                    let mut token = ReadToken::default();
                    for batch in all.chunks(per_call) {
                        token.merge(&node.upsert(&name, batch.to_vec()).await.unwrap());
                    }
                    let secs = started.elapsed().as_secs_f64();
                    let applied = if consuming {
                        caught_up(&node, &name, &token).await;
                        format!("{:.2}", started.elapsed().as_secs_f64())
                    } else {
                        "null".into()
                    };
                    println!(
                        "{{\"doc\":\"{label}\",\"mode\":\"{mode}\",\"sync\":\"{sync}\",\"replica_consuming\":{consuming},\"docs\":{total},\"secs\":{secs:.2},\"docs_per_s\":{:.0},\"mb_per_s\":{:.1},\"caught_up_s\":{applied}}}",
                        total as f64 / secs,
                        total as f64 * bytes / secs / 1e6
                    );
                }
            }
        }
        drop(node);
        drop(cluster);
    }
}
