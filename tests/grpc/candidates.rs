//! Candidates that follow the budget, from outside: on the hard profile (documents of a topic
//! nearly coincide at vector 0 and differ deeper), a plain gRPC Search with only a budget finds
//! 0.95 of the exact top 10 at every trained budget, where vector-0 candidates (asked for with
//! `candidate_index = "vector0"`) find less than 0.8 at (8,16). The candidate index is part of
//! the collection's config and bad knobs name their field.

use metavec_api::pb;
use metavec_core::synth::{generate, SynthData, SynthSpec};
use tonic::Code;

use crate::support::*;

const DIM: u32 = 32;
const MC: u32 = 16;
const MQ: u32 = 8;
const N: usize = 12_000;
const Q: usize = 12;

async fn recall_at(
    c: &mut Clients,
    data: &SynthData,
    b: (u32, u32),
    tune: impl Fn(&mut pb::SearchRequest),
) -> f64 {
    let mut sum = 0.0;
    for qi in 0..Q {
        let q = vectors(MQ, DIM, data.query(qi).to_vec());
        let mut req = search_req("hard", q, b.0, b.1, 10);
        let mut exact = req.clone();
        exact.exact = true;
        tune(&mut req);
        let ids = |r: pb::SearchResponse| r.hits.into_iter().map(|h| h.id).collect::<Vec<_>>();
        let truth = ids(c.search.search(exact).await.unwrap().into_inner());
        let got = ids(c.search.search(req).await.unwrap().into_inner());
        sum += truth.iter().filter(|t| got.contains(t)).count() as f64 / truth.len() as f64;
    }
    sum / Q as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_search_follows_the_budget_on_the_hard_profile() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.clients().await;
    let ladder = [(1, 1), (2, 4), (4, 8), (8, 16)];
    let data = generate(&SynthSpec::hard(N, Q, DIM as usize, &ladder, 23));
    let info = c
        .collections
        .create_collection(create_req("hard", DIM, MC, MQ))
        .await
        .unwrap()
        .into_inner();
    let ci = info.config.unwrap().candidate_index.unwrap();
    assert_eq!((ci.kind.as_str(), ci.index_vectors), ("tokens", 0));
    let batches = (0..N)
        .collect::<Vec<_>>()
        .chunks(500)
        .map(|ch| pb::UpsertRequest {
            collection: "hard".into(),
            documents: ch.iter().map(|&i| synth_doc(&data, i)).collect(),
        })
        .collect();
    upsert(&mut c, batches).await.unwrap();
    c.admin
        .flush(pb::FlushRequest {
            collection: "hard".into(),
        })
        .await
        .unwrap();

    for b in ladder {
        let r = recall_at(&mut c, &data, b, |_| {}).await;
        let v0 = recall_at(&mut c, &data, b, |r| r.candidate_index = "vector0".into()).await;
        eprintln!("{b:?}: default {r:.3}, vector-0 candidates {v0:.3}");
        assert!(r >= 0.95, "{b:?}: recall@10 {r} with default settings");
        if b == (8, 16) {
            assert!(v0 < 0.8, "vector-0 candidates reach {v0} at (8,16)");
        }
    }

    // SearchBatch takes the same knobs.
    let batch = c
        .search
        .search_batch(pb::SearchBatchRequest {
            collection: "hard".into(),
            queries: (0..2)
                .map(|qi| vectors(MQ, DIM, data.query(qi).to_vec()))
                .collect(),
            budget: Some(pb::Budget { r_q: 8, r_c: 16 }),
            k: 10,
            nprobe: 4,
            candidate_index: "tokens".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.results.len(), 2);
    assert!(batch.results.iter().all(|r| r.hits.len() == 10));

    // Bad knobs: INVALID_ARGUMENT naming the field, nothing created.
    let q = vectors(MQ, DIM, data.query(0).to_vec());
    let mut bad = search_req("hard", q.clone(), 8, 16, 10);
    bad.candidate_index = "ivf".into();
    let e = c.search.search(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("candidate_index"), "{}", e.message());
    let mut req = create_req("bad", DIM, MC, MQ);
    req.candidate_index = Some(pb::CandidateIndexParams {
        kind: "tokens".into(),
        index_vectors: MC + 1,
        centroids: 0,
    });
    let e = c.collections.create_collection(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("index_vectors"), "{}", e.message());
    let mut req = create_req("bad", DIM, MC, MQ);
    req.candidate_index = Some(pb::CandidateIndexParams {
        kind: "lsh".into(),
        ..Default::default()
    });
    let e = c.collections.create_collection(req).await.unwrap_err();
    assert!(
        e.message().contains("candidate_index.kind"),
        "{}",
        e.message()
    );
    let list = c
        .collections
        .list_collections(pb::ListCollectionsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.collections.len(), 1);
}
