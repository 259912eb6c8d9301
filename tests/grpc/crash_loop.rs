//! Crash loop: start the server, stream upserts and deletes (with background flushes and
//! compactions, and snapshots) from a client that records every acknowledged operation, `kill -9`
//! the server at a random moment, restart, verify. Every acknowledged upsert is present with
//! bit-identical vectors and payload, every acknowledged delete is gone, the batch in flight is
//! all or nothing, and exact search equals the oracle. Rounds: `METAVEC_CRASH_ROUNDS` (default 5;
//! `tests/crash-loop.sh` runs 100).

use std::collections::BTreeMap;
use std::time::Duration;

use metavec_api::pb;
use metavec_core::document::normalize_rows;
use metavec_core::score::maxsim_reference;

use crate::support::*;

const DIM: usize = 16;
const MC: usize = 8;
const POOL: u64 = 300;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn vectors_for(seed: u64) -> Vec<f32> {
    let mut r = Rng(seed * 2654435761 + 7);
    (0..MC * DIM)
        .map(|_| (r.next() % 2001) as f32 / 1000.0 - 1.0 + 1e-3)
        .collect()
}

/// What an in-flight operation would change if it landed: id -> new state (None = deleted).
type Pending = Vec<(String, Option<Doc>)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_crash_loop_loses_no_acknowledged_operation() {
    let rounds: u64 = std::env::var("METAVEC_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let args = ["--memtable-mb", "1", "--compact-max-segments", "3"];
    let mut oracle: BTreeMap<String, Doc> = BTreeMap::new();
    let mut rng = Rng(0x5eed);
    let mut acked_ops = 0u64;
    for round in 0..rounds {
        let server = Server::start(dir.path(), &args);
        let mut c = server.clients().await;
        if round == 0 {
            c.collections
                .create_collection(pb::CreateCollectionRequest {
                    // f32: the oracle compares read-back vectors bit for bit.
                    dtype: "f32".into(),
                    ..create_req("crash", DIM as u32, MC as u32, 4)
                })
                .await
                .unwrap();
        }
        // Kill at a random moment while the client streams.
        let pid = server.pid();
        let delay = 100 + rng.next() % 700;
        let killer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .unwrap();
        });
        let mut pending: Pending = Vec::new();
        loop {
            let op = rng.next() % 20;
            let result = if op < 14 {
                let docs: Vec<(String, Doc)> = (0..10)
                    .map(|_| {
                        let id = format!("d{}", rng.next() % POOL);
                        let seed = rng.next();
                        (id, (vectors_for(seed), format!(r#"{{"seed":{seed}}}"#)))
                    })
                    .collect::<BTreeMap<_, _>>()
                    .into_iter()
                    .collect();
                pending = docs
                    .iter()
                    .map(|(id, d)| (id.clone(), Some(d.clone())))
                    .collect();
                let req = pb::UpsertRequest {
                    collection: "crash".into(),
                    documents: docs
                        .iter()
                        .map(|(id, (v, p))| pb::Document {
                            id: id.clone(),
                            vectors: Some(vectors(MC as u32, DIM as u32, v.clone())),
                            payload: p.clone(),
                        })
                        .collect(),
                };
                upsert(&mut c, vec![req]).await.map(|_| ())
            } else if op < 18 {
                let ids: Vec<String> = (0..3).map(|_| format!("d{}", rng.next() % POOL)).collect();
                pending = ids.iter().map(|id| (id.clone(), None)).collect();
                c.documents
                    .delete(pb::DeleteRequest {
                        collection: "crash".into(),
                        ids,
                    })
                    .await
                    .map(|_| ())
            } else if op < 19 {
                pending.clear();
                c.admin
                    .compact(pb::CompactRequest {
                        collection: "crash".into(),
                        keep_r_c: 0,
                    })
                    .await
                    .map(|_| ())
            } else {
                pending.clear();
                c.admin
                    .create_snapshot(pb::CreateSnapshotRequest {
                        collection: "crash".into(),
                    })
                    .await
                    .map(|_| ())
            };
            match result {
                Ok(()) => {
                    acked_ops += 1;
                    for (id, new) in pending.drain(..) {
                        match new {
                            Some(d) => {
                                let mut v = d.0.clone();
                                normalize_rows(&mut v, DIM, "o").unwrap();
                                oracle.insert(id, (v, d.1));
                            }
                            None => {
                                oracle.remove(&id);
                            }
                        }
                    }
                }
                Err(_) => break, // the server is gone; `pending` may or may not have landed
            }
        }
        killer.await.unwrap();
        drop(server);

        // Restart and verify.
        let server = Server::start(dir.path(), &args);
        let mut c = server.clients().await;
        let ids: Vec<String> = (0..POOL).map(|i| format!("d{i}")).collect();
        let found = stored(&mut c, "crash", ids.clone()).await;
        // The in-flight operation: all of it landed, or none of it.
        let landed = |(id, new): &(String, Option<Doc>)| match new {
            Some((v, p)) => {
                let mut v = v.clone();
                normalize_rows(&mut v, DIM, "o").unwrap();
                found.get(id) == Some(&(v, p.clone()))
            }
            None => !found.contains_key(id),
        };
        let all = pending.iter().all(landed);
        let none = pending
            .iter()
            .all(|(id, _)| found.get(id) == oracle.get(id));
        assert!(
            all || none,
            "round {round}: the in-flight operation was half applied"
        );
        if all {
            for (id, new) in pending.drain(..) {
                match new {
                    Some(d) => {
                        let mut v = d.0;
                        normalize_rows(&mut v, DIM, "o").unwrap();
                        oracle.insert(id, (v, d.1));
                    }
                    None => {
                        oracle.remove(&id);
                    }
                }
            }
        }
        assert_eq!(found.len(), oracle.len(), "round {round}: document count");
        for (id, d) in &oracle {
            assert_eq!(
                found.get(id),
                Some(d),
                "round {round}: acknowledged {id} lost or changed"
            );
        }
        // Exact search equals the oracle.
        let mut q = vectors_for(round + 999)[..2 * DIM].to_vec();
        let mut req = search_req("crash", vectors(2, DIM as u32, q.clone()), 2, 4, 5);
        req.exact = true;
        let res = c.search.search(req).await.unwrap().into_inner();
        normalize_rows(&mut q, DIM, "q").unwrap();
        let mut truth: Vec<f32> = oracle
            .values()
            .map(|(v, _)| maxsim_reference(&q, 2, v, 4, DIM))
            .collect();
        truth.sort_by(|a, b| b.total_cmp(a));
        assert_eq!(
            res.hits.len(),
            truth.len().min(5),
            "round {round}: exact search hit count"
        );
        for (h, t) in res.hits.iter().zip(&truth) {
            assert!(
                (h.score - t).abs() < 1e-4,
                "round {round}: search differs from the oracle"
            );
        }
        drop(server);
    }
    eprintln!("crash loop: {rounds} rounds, {acked_ops} acknowledged operations verified, 0 lost");
}
