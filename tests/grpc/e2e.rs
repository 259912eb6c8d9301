//! Create, stream 10,000 docs, search at every trained budget (recall@10 vs exact >= 0.95),
//! restart gracefully and get identical results; kill -9 after an ack loses nothing.

use metavec_api::pb;
use metavec_core::document::normalize_rows;
use metavec_core::synth::{generate, SynthData, SynthSpec};

use crate::support::*;

const DIM: u32 = 64;
const MC: u32 = 16;
const MQ: u32 = 8;

fn data(n: usize, seed: u64) -> SynthData {
    generate(&SynthSpec::new(
        n,
        30,
        DIM as usize,
        &[(1, 1), (2, 4), (4, 8), (8, 16)],
        seed,
    ))
}

fn batches(data: &SynthData, range: std::ops::Range<usize>, per: usize) -> Vec<pb::UpsertRequest> {
    range
        .collect::<Vec<_>>()
        .chunks(per)
        .map(|c| pb::UpsertRequest {
            collection: "e2e".into(),
            documents: c.iter().map(|&i| synth_doc(data, i)).collect(),
        })
        .collect()
}

async fn search_all(c: &mut Clients, data: &SynthData, exact: bool) -> Vec<Vec<(String, f32)>> {
    let mut out = Vec::new();
    for (r_q, r_c) in [(1, 1), (2, 4), (4, 8), (8, 16)] {
        for qi in 0..30 {
            let q = vectors(MQ, DIM, data.query(qi).to_vec());
            let mut req = search_req("e2e", q, r_q, r_c, 10);
            req.exact = exact;
            let res = c.search.search(req).await.unwrap().into_inner();
            out.push(res.hits.into_iter().map(|h| (h.id, h.score)).collect());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_search_recall_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let n = 10_000;
    let data = data(n, 11);
    let mut server = Server::start(dir.path(), &[]);
    let mut c = server.clients().await;
    let info = c
        .collections
        .create_collection(create_req("e2e", DIM, MC, MQ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.config.unwrap().budgets.len(), 4);

    let t = std::time::Instant::now();
    let r = upsert(&mut c, batches(&data, 0..6_000, 500)).await.unwrap();
    assert_eq!((r.upserted, r.batches), (6_000, 12));
    c.admin
        .flush(pb::FlushRequest {
            collection: "e2e".into(),
        })
        .await
        .unwrap();
    let r = upsert(&mut c, batches(&data, 6_000..n, 500)).await.unwrap();
    assert_eq!(r.upserted, 4_000);
    eprintln!(
        "ingest: {:.0} docs/s over gRPC",
        n as f64 / t.elapsed().as_secs_f64()
    );

    let info = c
        .collections
        .get_collection(pb::GetCollectionRequest { name: "e2e".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.live_docs, n as u64);
    assert_eq!(info.segments.len(), 1);

    let approx = search_all(&mut c, &data, false).await;
    let exact = search_all(&mut c, &data, true).await;
    for (b, (a, e)) in approx.chunks(30).zip(exact.chunks(30)).enumerate() {
        let mut found = 0;
        for (ah, eh) in a.iter().zip(e) {
            found += eh.iter().filter(|x| ah.iter().any(|y| y.0 == x.0)).count();
        }
        let recall = found as f64 / (30.0 * 10.0);
        eprintln!("budget #{b}: recall@10 {recall:.3}");
        assert!(recall >= 0.95, "budget #{b}: recall@10 {recall:.3}");
    }

    // A cascade over gRPC: per-stage stats, only new pairs computed.
    let mut req = search_req("e2e", vectors(MQ, DIM, data.query(0).to_vec()), 8, 16, 10);
    req.stages = vec![
        pb::Stage {
            budget: Some(pb::Budget { r_q: 1, r_c: 1 }),
            keep: 200,
        },
        pb::Stage {
            budget: Some(pb::Budget { r_q: 4, r_c: 8 }),
            keep: 40,
        },
    ];
    // Unpruned, every stage scores all it is given: the dot count is exact.
    req.no_prune = true;
    let res = c.search.search(req.clone()).await.unwrap().into_inner();
    let st = res.stats.unwrap();
    assert_eq!(res.hits.len(), 10);
    assert_eq!(st.stages.len(), 3);
    assert_eq!(st.dot_products, st.candidates + 200 * 31 + 40 * (128 - 32));
    // With the bounds on (the default): the same hits, and (1,1) skips what cannot be kept.
    let mut pruned = req.clone();
    pruned.no_prune = false;
    let with = c.search.search(pruned).await.unwrap().into_inner();
    assert_eq!(with.hits, res.hits);
    let ws = with.stats.unwrap();
    assert_eq!(ws.stages[0].scored + ws.stages[0].pruned, st.candidates);
    assert!(ws.dot_products <= st.dot_products);
    req.stages[1].keep = 5;
    let bad = c.search.search(req).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(
        bad.message().contains("stages[1].keep is 5"),
        "{}",
        bad.message()
    );

    assert!(server.terminate(), "graceful shutdown on SIGTERM");
    let server = Server::start(dir.path(), &[]);
    let mut c = server.clients().await;
    let again = search_all(&mut c, &data, false).await;
    assert_eq!(again, approx, "results differ after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_ack_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(600, 12);
    let mut server = Server::start(dir.path(), &["--memtable-mb", "1"]);
    let mut c = server.clients().await;
    c.collections
        .create_collection(create_req("e2e", DIM, MC, MQ))
        .await
        .unwrap();
    // Several acknowledged streams; a 1 MiB memtable makes some of them seal segments.
    for chunk in [0..150, 150..300, 300..600] {
        upsert(&mut c, batches(&data, chunk, 50)).await.unwrap();
    }
    server.kill9();

    let server = Server::start(dir.path(), &[]);
    let mut c = server.clients().await;
    let ids: Vec<String> = (0..600).map(SynthData::id).collect();
    let got = c
        .documents
        .get(pb::GetRequest {
            collection: "e2e".into(),
            ids,
            ids_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(got.missing_ids.is_empty(), "lost: {:?}", got.missing_ids);
    assert_eq!(got.documents.len(), 600);
    for (i, d) in got.documents.iter().enumerate() {
        let mut want = data.doc(i).to_vec();
        normalize_rows(&mut want, DIM as usize, "want").unwrap();
        assert_eq!(d.vectors.as_ref().unwrap().values, want, "doc {i} vectors");
        assert_eq!(d.payload, format!(r#"{{"i":{i}}}"#));
    }
}
