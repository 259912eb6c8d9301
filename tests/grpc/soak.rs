//! Soak: one server on loopback, for a bounded time, under concurrent streaming upserts, deletes,
//! searches at mixed budgets (single stage and cascades), and periodic Flush / Compact /
//! CreateSnapshot. Every acknowledged operation is recorded; at the end every acknowledged upsert
//! must be there bit-identical (vectors and payload, via Get), every acknowledged delete gone, and
//! exact search at several budgets must equal a brute-force MaxSim scan of the oracle. Prints
//! ops/s by kind, search p50/p99 latency, the recall of the approximate search against the exact
//! one, and the error count (must be 0).
//!
//! Time: `METAVEC_SOAK_SECS` (default 10 here; `tests/soak.sh` runs 600).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metavec_api::pb;
use metavec_core::document::normalize_rows;
use metavec_core::score::maxsim_reference;

use crate::support::*;

const DIM: usize = 16;
const MC: usize = 8;
const WRITERS: u64 = 2;
const SEARCHERS: u64 = 2;
/// Ids per writer; each writer owns its ids, so the order of its acknowledgements is the truth.
const POOL: u64 = 400;
/// Mixed budgets; (4, 4) is off the default ladder and is searched with `allow_untrained_budget`.
const BUDGETS: [(u32, u32); 4] = [(1, 1), (2, 4), (4, 8), (4, 4)];
const COLL: &str = "soak";

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn vectors_for(seed: u64, n: usize) -> Vec<f32> {
    let mut r = Rng(seed.wrapping_mul(2654435761) | 1);
    (0..n * DIM)
        .map(|_| (r.next() % 2001) as f32 / 1000.0 - 1.0 + 1e-3)
        .collect()
}

#[derive(Default)]
struct Counters {
    upserts: AtomicU64,
    upserted_docs: AtomicU64,
    deletes: AtomicU64,
    searches: AtomicU64,
    admin: AtomicU64,
    errors: AtomicU64,
}

fn error(counters: &Counters, what: &str, e: &tonic::Status) {
    counters.errors.fetch_add(1, Ordering::Relaxed);
    eprintln!("soak: {what} failed: {e}");
}

async fn writer(
    mut c: Clients,
    w: u64,
    until: Instant,
    counters: Arc<Counters>,
) -> BTreeMap<String, Doc> {
    let mut rng = Rng(0x5eed + w * 7919);
    let mut oracle: BTreeMap<String, Doc> = BTreeMap::new();
    while Instant::now() < until {
        if rng.next() % 5 < 4 {
            // One Upsert stream of 1..=3 batches of distinct ids.
            let mut batches = Vec::new();
            let mut staged: BTreeMap<String, Doc> = BTreeMap::new();
            for _ in 0..1 + rng.next() % 3 {
                let docs: BTreeMap<String, Doc> = (0..8)
                    .map(|_| {
                        let id = format!("w{w}-{}", rng.next() % POOL);
                        let seed = rng.next();
                        (
                            id,
                            (
                                vectors_for(seed, MC),
                                format!(r#"{{"w":{w},"seed":{seed}}}"#),
                            ),
                        )
                    })
                    .collect();
                batches.push(pb::UpsertRequest {
                    collection: COLL.into(),
                    documents: docs
                        .iter()
                        .map(|(id, (v, p))| pb::Document {
                            id: id.clone(),
                            vectors: Some(vectors(MC as u32, DIM as u32, v.clone())),
                            payload: p.clone(),
                        })
                        .collect(),
                });
                staged.extend(docs);
            }
            let n: u64 = batches.iter().map(|b| b.documents.len() as u64).sum();
            match upsert(&mut c, batches).await {
                Ok(_) => {
                    counters.upserts.fetch_add(1, Ordering::Relaxed);
                    counters.upserted_docs.fetch_add(n, Ordering::Relaxed);
                    for (id, (mut v, p)) in staged {
                        normalize_rows(&mut v, DIM, "o").unwrap();
                        oracle.insert(id, (v, p));
                    }
                }
                Err(e) => error(&counters, "upsert", &e),
            }
        } else {
            let ids: Vec<String> = (0..4)
                .map(|_| format!("w{w}-{}", rng.next() % POOL))
                .collect();
            let req = pb::DeleteRequest {
                collection: COLL.into(),
                ids: ids.clone(),
            };
            match c.documents.delete(req).await {
                Ok(_) => {
                    counters.deletes.fetch_add(1, Ordering::Relaxed);
                    for id in ids {
                        oracle.remove(&id);
                    }
                }
                Err(e) => error(&counters, "delete", &e),
            }
        }
    }
    oracle
}

async fn searcher(
    mut c: Clients,
    s: u64,
    until: Instant,
    counters: Arc<Counters>,
    latencies: Arc<Mutex<Vec<Duration>>>,
) {
    let mut rng = Rng(0xfeed + s * 104729);
    while Instant::now() < until {
        let (r_q, r_c) = BUDGETS[(rng.next() % BUDGETS.len() as u64) as usize];
        let q = vectors_for(rng.next(), r_q as usize);
        let mut req = search_req(COLL, vectors(r_q, DIM as u32, q), r_q, r_c, 10);
        req.allow_untrained_budget = true;
        match rng.next() % 4 {
            0 if r_c > 1 => {
                req.stages = vec![pb::Stage {
                    budget: Some(pb::Budget { r_q: 1, r_c: 1 }),
                    keep: 50,
                }]
            }
            1 => req.with_payload = true,
            _ => {}
        }
        let t = Instant::now();
        match c.search.search(req).await {
            Ok(_) => {
                latencies.lock().unwrap().push(t.elapsed());
                counters.searches.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => error(&counters, "search", &e),
        }
    }
}

async fn admin(mut c: Clients, until: Instant, counters: Arc<Counters>) {
    let mut i = 0u64;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(700)).await;
        i += 1;
        let r = match i % 3 {
            0 => c
                .admin
                .flush(pb::FlushRequest {
                    collection: COLL.into(),
                })
                .await
                .map(|_| ()),
            1 => c
                .admin
                .compact(pb::CompactRequest {
                    collection: COLL.into(),
                    keep_r_c: 0,
                })
                .await
                .map(|_| ()),
            _ => c
                .admin
                .create_snapshot(pb::CreateSnapshotRequest {
                    collection: COLL.into(),
                })
                .await
                .map(|_| ()),
        };
        match r {
            Ok(()) => {
                counters.admin.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => error(&counters, "admin", &e),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_holds_every_acknowledged_operation_and_exact_search() {
    let secs: u64 = std::env::var("METAVEC_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--memtable-mb", "1", "--compact-max-segments", "3"],
    );
    let mut c = server.clients().await;
    c.collections
        .create_collection(pb::CreateCollectionRequest {
            // f32: the oracle compares read-back vectors bit for bit.
            dtype: "f32".into(),
            ..create_req(COLL, DIM as u32, MC as u32, 4)
        })
        .await
        .unwrap();

    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let cl = server.clients().await;
        writers.push(tokio::spawn(writer(cl, w, until, counters.clone())));
    }
    let mut others = Vec::new();
    for s in 0..SEARCHERS {
        let (counters, latencies) = (counters.clone(), latencies.clone());
        let cl = server.clients().await;
        others.push(tokio::spawn(searcher(cl, s, until, counters, latencies)));
    }
    others.push(tokio::spawn(admin(
        server.clients().await,
        until,
        counters.clone(),
    )));
    let mut oracle: BTreeMap<String, Doc> = BTreeMap::new();
    for w in writers {
        oracle.extend(w.await.unwrap());
    }
    for o in others {
        o.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();

    // Every acknowledged upsert is there bit-identical; every acknowledged delete is gone.
    let ids: Vec<String> = (0..WRITERS)
        .flat_map(|w| (0..POOL).map(move |i| format!("w{w}-{i}")))
        .collect();
    let found = stored(&mut c, COLL, ids).await;
    assert_eq!(found.len(), oracle.len(), "document count");
    for (id, d) in &oracle {
        assert_eq!(found.get(id), Some(d), "acknowledged {id} lost or changed");
    }

    // Exact search equals a brute-force scan of the oracle; the approximate search's recall.
    let mut recall_hits = 0usize;
    let mut recall_total = 0usize;
    for (qi, (r_q, r_c)) in BUDGETS.into_iter().enumerate() {
        for round in 0..3u64 {
            let mut q = vectors_for(1_000_003 + qi as u64 * 10 + round, r_q as usize);
            let mut req = search_req(COLL, vectors(r_q, DIM as u32, q.clone()), r_q, r_c, 10);
            req.allow_untrained_budget = true;
            let approx = c.search.search(req.clone()).await.unwrap().into_inner();
            req.exact = true;
            let exact = c.search.search(req).await.unwrap().into_inner();
            normalize_rows(&mut q, DIM, "q").unwrap();
            let score = |v: &Vec<f32>| maxsim_reference(&q, r_q as usize, v, r_c as usize, DIM);
            let mut truth: Vec<f32> = oracle.values().map(|(v, _)| score(v)).collect();
            truth.sort_by(|a, b| b.total_cmp(a));
            assert_eq!(exact.hits.len(), truth.len().min(10));
            for (h, t) in exact.hits.iter().zip(&truth) {
                assert!(
                    (h.score - t).abs() < 1e-4,
                    "budget ({r_q},{r_c}): exact search {} vs scan {t}",
                    h.score
                );
                let own = score(&oracle[&h.id].0);
                assert!(
                    (h.score - own).abs() < 1e-4,
                    "hit {} has a wrong score",
                    h.id
                );
            }
            let exact_ids: Vec<&String> = exact.hits.iter().map(|h| &h.id).collect();
            recall_hits += approx
                .hits
                .iter()
                .filter(|h| exact_ids.contains(&&h.id))
                .count();
            recall_total += exact.hits.len();
        }
    }

    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let errors = n(&counters.errors);
    eprintln!(
        "soak: {elapsed:.1} s | upsert streams {:.1}/s ({:.1} docs/s) | deletes {:.1}/s | searches {:.1}/s \
         (p50 {:.2} ms, p99 {:.2} ms) | admin ops {} | {} live docs verified | recall@10 approx vs exact {:.3} | errors {errors}",
        n(&counters.upserts) as f64 / elapsed,
        n(&counters.upserted_docs) as f64 / elapsed,
        n(&counters.deletes) as f64 / elapsed,
        n(&counters.searches) as f64 / elapsed,
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        n(&counters.admin),
        oracle.len(),
        recall_hits as f64 / recall_total.max(1) as f64,
    );
    assert_eq!(errors, 0, "operations failed during the soak");
    assert!(n(&counters.upserts) > 0 && n(&counters.searches) > 0 && n(&counters.admin) > 0);
}
