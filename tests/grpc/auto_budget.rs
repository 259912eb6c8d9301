//! Auto budget over gRPC (`latency_target_us`, no budget): the server starts at the smallest
//! trained budget and, while every measured budget fits the target, climbs one unmeasured budget
//! per search until the largest the query can use; the response names the budget it used, and
//! its hits are those of a plain search at that budget. With a target no search can miss (the
//! largest `u32` of microseconds) the ladder it climbs does not depend on timing.

use metavec_api::pb;

use crate::support::*;

const DIM: u32 = 8;
const MC: u32 = 4;
const MQ: u32 = 4;

fn vecs(seed: u64, count: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..count * DIM)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 2001) as f32 / 1000.0 - 1.0 + 1e-3
        })
        .collect()
}

fn auto(query: pb::Vectors, target_us: u32) -> pb::SearchRequest {
    pb::SearchRequest {
        collection: "auto".into(),
        query: Some(query),
        budget: None,
        k: 10,
        latency_target_us: target_us,
        ..Default::default()
    }
}

fn budget(r: &pb::SearchResponse) -> (u32, u32) {
    let b = r.budget.expect("the response names the budget it used");
    (b.r_q, b.r_c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_budget_climbs_the_trained_ladder_and_reports_its_choice() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.clients().await;
    let mut req = create_req("auto", DIM, MC, MQ);
    req.budgets = [(1, 1), (2, 2), (4, 4)]
        .map(|(r_q, r_c)| pb::Budget { r_q, r_c })
        .to_vec();
    c.collections.create_collection(req).await.unwrap();
    let docs = (0..200u64)
        .map(|i| pb::Document {
            id: format!("d{i:03}"),
            vectors: Some(vectors(MC, DIM, vecs(i, MC))),
            payload: String::new(),
        })
        .collect();
    upsert(
        &mut c,
        vec![pb::UpsertRequest {
            collection: "auto".into(),
            documents: docs,
        }],
    )
    .await
    .unwrap();
    c.admin
        .flush(pb::FlushRequest {
            collection: "auto".into(),
        })
        .await
        .unwrap();

    // A query of 4 vectors: (1,1), then each next budget once the ones below are measured.
    let q4 = vectors(MQ, DIM, vecs(1_000, MQ));
    for want in [(1, 1), (2, 2), (4, 4), (4, 4)] {
        let res = c
            .search
            .search(auto(q4.clone(), u32::MAX))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(budget(&res), want);
        assert_eq!(res.hits.len(), 10);
        let plain = c
            .search
            .search(search_req("auto", q4.clone(), want.0, want.1, 10))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(res.hits, plain.hits, "auto at {want:?} vs a plain search");
    }
    // A query of 2 vectors can use (1,1) and (2,2) only.
    let q2 = vectors(2, DIM, vecs(2_000, 2));
    let res = c
        .search
        .search(auto(q2, u32::MAX))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(budget(&res), (2, 2));
    // Neither a budget nor a latency target: refused, naming the budget.
    let e = c.search.search(auto(q4, 0)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("budget"), "{}", e.message());
}
