//! Scale-out: 3 shard servers behind `metavec serve --router` give the same top-k as one server
//! holding all the data; documents really are spread; a stopped shard fails searches with
//! UNAVAILABLE naming it, or, with allow_partial, returns the other shards' best marked partial.
//! SearchBatch, Compact, the shard API key and the shard timeout through the router; snapshots
//! are per shard and refused by it.

use metavec_api::pb;
use metavec_core::synth::{generate, SynthData, SynthSpec};

use crate::support::*;

const DIM: u32 = 32;
const MC: u32 = 8;
const MQ: u32 = 4;
const N: usize = 3_000;

fn owner(id: &str, n: usize) -> usize {
    crc32fast::hash(id.as_bytes()) as usize % n
}

async fn load(c: &mut Clients, data: &SynthData) {
    c.collections
        .create_collection(create_req("r", DIM, MC, MQ))
        .await
        .unwrap();
    let ids: Vec<usize> = (0..N).collect();
    let batches = ids
        .chunks(250)
        .map(|b| pb::UpsertRequest {
            collection: "r".into(),
            documents: b.iter().map(|&i| synth_doc(data, i)).collect(),
        })
        .collect();
    assert_eq!(upsert(c, batches).await.unwrap().upserted, N as u64);
    c.admin
        .flush(pb::FlushRequest {
            collection: "r".into(),
        })
        .await
        .unwrap();
}

async fn top(
    c: &mut Clients,
    data: &SynthData,
    qi: usize,
    b: (u32, u32),
    k: u32,
    exact: bool,
) -> Vec<(String, f32)> {
    let mut req = search_req("r", vectors(MQ, DIM, data.query(qi).to_vec()), b.0, b.1, k);
    req.exact = exact;
    let res = c.search.search(req).await.unwrap().into_inner();
    assert!(!res.partial);
    res.hits.into_iter().map(|h| (h.id, h.score)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_matches_one_server_and_reports_a_down_shard() {
    let data = generate(&SynthSpec::new(
        N,
        10,
        DIM as usize,
        &[(1, 1), (2, 4), (4, 8)],
        21,
    ));
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut shards: Vec<Server> = (0..3).map(|i| Server::start(dirs[i].path(), &[])).collect();
    let addrs: Vec<String> = shards.iter().map(|s| s.addr.clone()).collect();
    let single = Server::start(dirs[3].path(), &[]);
    let router = Server::start(
        dirs[4].path(),
        &[
            "--router",
            "--shards",
            &addrs.join(","),
            "--shard-timeout-ms",
            "3000",
        ],
    );
    let mut r = router.clients().await;
    let mut one = single.clients().await;
    load(&mut r, &data).await;
    load(&mut one, &data).await;

    // The documents are spread over the shards exactly by crc32(id) mod 3.
    for (s, shard) in shards.iter().enumerate() {
        let mut c = shard.clients().await;
        let stats = c
            .admin
            .stats(pb::StatsRequest {
                collection: "r".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let want = (0..N).filter(|&i| owner(&SynthData::id(i), 3) == s).count() as u64;
        assert_eq!(stats.collections[0].live_docs, want, "shard {s}");
        assert!(want > N as u64 / 5);
    }
    let info = r
        .collections
        .get_collection(pb::GetCollectionRequest { name: "r".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.live_docs, N as u64);

    // Exact search: identical ids and scores at every budget. Default (HNSW) search: each shard
    // walks its own graph for its own `candidates`, so the router's recall against the exact
    // top-k is at least the single server's (3 x 320 candidates over the same documents).
    let (mut hit_router, mut hit_one, mut total) = (0, 0, 0);
    // Latencies are printed for the record (3 shards share this machine's cores), never asserted.
    let (mut lat_router, mut lat_one) = (Vec::new(), Vec::new());
    for qi in 0..10 {
        for b in [(1, 1), (2, 4), (4, 8)] {
            let exact = top(&mut one, &data, qi, b, 10, true).await;
            assert_eq!(top(&mut r, &data, qi, b, 10, true).await, exact);
            let truth: Vec<&String> = exact.iter().map(|h| &h.0).collect();
            let hits = |v: Vec<(String, f32)>| v.iter().filter(|h| truth.contains(&&h.0)).count();
            let t = std::time::Instant::now();
            hit_router += hits(top(&mut r, &data, qi, b, 10, false).await);
            lat_router.push(t.elapsed());
            let t = std::time::Instant::now();
            hit_one += hits(top(&mut one, &data, qi, b, 10, false).await);
            lat_one.push(t.elapsed());
            total += truth.len();
        }
    }
    let (rr, ro) = (
        hit_router as f64 / total as f64,
        hit_one as f64 / total as f64,
    );
    lat_router.sort();
    lat_one.sort();
    eprintln!(
        "recall@10 vs exact: router {rr:.3}, single server {ro:.3}; p50 search latency: router {:?}, single server {:?}",
        lat_router[lat_router.len() / 2],
        lat_one[lat_one.len() / 2]
    );
    assert!(rr >= ro && rr >= 0.95, "router {rr}, single {ro}");

    // Reads and deletes by id go to the owner.
    let ids = vec![SynthData::id(5), "nope".to_string(), SynthData::id(6)];
    let got = r
        .documents
        .get(pb::GetRequest {
            collection: "r".into(),
            ids: ids.clone(),
            ids_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.documents
            .iter()
            .map(|d| d.id.clone())
            .collect::<Vec<_>>(),
        [SynthData::id(5), SynthData::id(6)]
    );
    assert_eq!(got.missing_ids, ["nope"]);
    assert_eq!(
        got.documents[0].vectors.as_ref().unwrap().values.len(),
        (MC * DIM) as usize
    );
    let del = r
        .documents
        .delete(pb::DeleteRequest {
            collection: "r".into(),
            ids,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(del.deleted, 2);
    one.documents
        .delete(pb::DeleteRequest {
            collection: "r".into(),
            ids: vec![SynthData::id(5), SynthData::id(6)],
        })
        .await
        .unwrap();

    // Stop shard 2: searches fail UNAVAILABLE naming it ...
    shards[2].kill9();
    let q = || search_req("r", vectors(MQ, DIM, data.query(0).to_vec()), 2, 4, 10);
    let e = r.search.search(q()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(e.message().contains(&addrs[2]), "{}", e.message());
    // ... or, with allow_partial, return the best of the live shards, marked partial.
    let mut req = q();
    req.allow_partial = true;
    req.exact = true;
    let part = r.search.search(req).await.unwrap().into_inner();
    assert!(part.partial);
    assert_eq!(part.shards_failed.len(), 1);
    assert!(part.shards_failed[0].contains(&addrs[2]));
    let mut full = q();
    full.exact = true;
    full.k = 100;
    let want: Vec<String> = one
        .search
        .search(full)
        .await
        .unwrap()
        .into_inner()
        .hits
        .into_iter()
        .map(|h| h.id)
        .filter(|id| owner(id, 3) != 2)
        .take(10)
        .collect();
    let got: Vec<String> = part.hits.into_iter().map(|h| h.id).collect();
    assert_eq!(got, want);
    // Writes that touch the stopped shard fail, naming it.
    let e = r
        .documents
        .delete(pb::DeleteRequest {
            collection: "r".into(),
            ids: (0..30).map(SynthData::id).collect(),
        })
        .await
        .unwrap_err();
    assert!(e.message().contains(&addrs[2]), "{}", e.message());
}

fn batch_req(data: &SynthData, k: u32) -> pb::SearchBatchRequest {
    pb::SearchBatchRequest {
        collection: "r".into(),
        queries: (0..4)
            .map(|qi| vectors(MQ, DIM, data.query(qi).to_vec()))
            .collect(),
        budget: Some(pb::Budget { r_q: 2, r_c: 4 }),
        k,
        exact: true,
        ..Default::default()
    }
}

fn hits(r: &pb::SearchResponse) -> Vec<(String, f32)> {
    r.hits.iter().map(|h| (h.id.clone(), h.score)).collect()
}

/// Shards that need an API key, behind a router that sends it: SearchBatch and Compact through
/// the router equal one server's; snapshots are refused as per shard (UNIMPLEMENTED); a router
/// without the key, or with a wrong one, is refused by the shards (UNAUTHENTICATED naming the
/// shard); a shard that never answers fails the search after `--shard-timeout-ms` (UNAVAILABLE
/// naming it), or, with allow_partial, leaves the other shard's best marked partial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_batches_compacts_sends_the_shard_key_and_times_out_a_silent_shard() {
    const KEY: &str = "shard-secret";
    let n = 600;
    let data = generate(&SynthSpec::new(
        n,
        4,
        DIM as usize,
        &[(1, 1), (2, 4), (4, 8)],
        5,
    ));
    let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let shards: Vec<Server> = (0..2)
        .map(|i| Server::start(dirs[i].path(), &["--api-key", KEY]))
        .collect();
    let addrs: Vec<String> = shards.iter().map(|s| s.addr.clone()).collect();
    let shard_list = addrs.join(",");
    let single = Server::start(dirs[2].path(), &[]);
    let router = Server::start(
        dirs[3].path(),
        &["--router", "--shards", &shard_list, "--shard-api-key", KEY],
    );
    let mut r = router.clients().await;
    let mut one = single.clients().await;
    // Two flushed halves (two segments per shard), and some deletes for compaction to drop.
    for c in [&mut r, &mut one] {
        c.collections
            .create_collection(create_req("r", DIM, MC, MQ))
            .await
            .unwrap();
        for half in [0..n / 2, n / 2..n] {
            let batch = pb::UpsertRequest {
                collection: "r".into(),
                documents: half.map(|i| synth_doc(&data, i)).collect(),
            };
            upsert(c, vec![batch]).await.unwrap();
            c.admin
                .flush(pb::FlushRequest {
                    collection: "r".into(),
                })
                .await
                .unwrap();
        }
        let del = c
            .documents
            .delete(pb::DeleteRequest {
                collection: "r".into(),
                ids: (0..n).step_by(10).map(SynthData::id).collect(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(del.deleted, n as u64 / 10);
    }
    let live = (n - n / 10) as u64;

    // SearchBatch: per query, the single server's exact top-k.
    let want = one
        .search
        .search_batch(batch_req(&data, 10))
        .await
        .unwrap()
        .into_inner();
    let got = r
        .search
        .search_batch(batch_req(&data, 10))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.results.len(), 4);
    for (g, w) in got.results.iter().zip(&want.results) {
        assert_eq!(g.hits.len(), 10);
        assert!(!g.partial);
        assert_eq!(hits(g), hits(w));
    }

    // Compact: every shard merges its two segments; the sums are the single server's.
    let compacted = r
        .admin
        .compact(pb::CompactRequest {
            collection: "r".into(),
            keep_r_c: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(compacted.merged_segments.len(), 4, "{compacted:?}");
    assert_eq!(compacted.docs_in, n as u64);
    assert_eq!(compacted.docs_out, live);
    let stats = r
        .admin
        .stats(pb::StatsRequest {
            collection: "r".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            stats.collections[0].segments,
            stats.collections[0].live_docs
        ),
        (2, live)
    );
    let after = r
        .search
        .search_batch(batch_req(&data, 10))
        .await
        .unwrap()
        .into_inner();
    for (g, w) in after.results.iter().zip(&want.results) {
        assert_eq!(hits(g), hits(w), "after compaction");
    }

    // Snapshots are per shard: the router refuses them, saying so.
    let e = r
        .admin
        .create_snapshot(pb::CreateSnapshotRequest {
            collection: "r".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented, "{e:?}");
    assert!(e.message().contains("per shard"), "{}", e.message());
    let e = r
        .admin
        .list_snapshots(pb::ListSnapshotsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented, "{e:?}");

    // The shard key is what lets the router in: without it, or with a wrong one, the shards
    // refuse, and the router says which shard did.
    for (i, extra) in [&[][..], &["--shard-api-key", "guess"][..]]
        .into_iter()
        .enumerate()
    {
        let mut args = vec!["--router", "--shards", &shard_list];
        args.extend_from_slice(extra);
        let keyless = Server::start(dirs[4 + i].path(), &args);
        let mut k = keyless.clients().await;
        let e = k
            .search
            .search_batch(batch_req(&data, 10))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{extra:?}: {e:?}");
        assert!(
            addrs.iter().any(|a| e.message().contains(a.as_str())),
            "{}",
            e.message()
        );
    }

    // A shard that accepts connections and never answers: the router gives up after its
    // timeout. Shard 0 is the same first shard of two, so it holds the same documents.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let timeout_router = Server::start(
        dirs[5].path(),
        &[
            "--router",
            "--shards",
            &format!("{},{silent_addr}", addrs[0]),
            "--shard-api-key",
            KEY,
            "--shard-timeout-ms",
            "5000",
        ],
    );
    let mut t = timeout_router.clients().await;
    let e = t
        .search
        .search_batch(batch_req(&data, 10))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    // The message is the router's own timeout ("did not answer within 5000 ms") or the
    // transport's ("Timeout expired"), whichever of the two equal timers fires first.
    assert!(e.message().contains(&silent_addr), "{}", e.message());
    let mut partial = batch_req(&data, 10);
    partial.allow_partial = true;
    let part = t.search.search_batch(partial).await.unwrap().into_inner();
    let full = batch_req(&data, n as u32);
    let full = one.search.search_batch(full).await.unwrap().into_inner();
    for (p, f) in part.results.iter().zip(&full.results) {
        assert!(p.partial);
        assert_eq!(p.shards_failed.len(), 1);
        assert!(p.shards_failed[0].contains(&silent_addr), "{p:?}");
        let want: Vec<(String, f32)> = hits(f)
            .into_iter()
            .filter(|(id, _)| owner(id, 2) == 0)
            .take(10)
            .collect();
        assert_eq!(hits(p), want);
    }
    drop(silent);
}
