//! One check per kind of bad request: the right status, a message naming the field, nothing
//! written, and the server still answers health.

use metavec_api::pb;
use tonic::Code;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::support::*;

fn expect<T: std::fmt::Debug>(what: &str, r: Result<T, tonic::Status>, code: Code, needle: &str) {
    match r {
        Err(s) => {
            assert_eq!(s.code(), code, "{what}: {s:?}");
            assert!(
                s.message().contains(needle),
                "{what}: message {:?} should contain {needle:?}",
                s.message()
            );
        }
        Ok(v) => panic!("{what}: expected {code:?}, got {v:?}"),
    }
}

fn doc(id: &str, count: u32, dim: u32, fill: f32) -> pb::Document {
    pb::Document {
        id: id.into(),
        vectors: Some(vectors(count, dim, vec![fill; (count * dim) as usize])),
        payload: String::new(),
    }
}

fn batch(docs: Vec<pb::Document>) -> Vec<pb::UpsertRequest> {
    vec![pb::UpsertRequest {
        collection: "bad".into(),
        documents: docs,
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_status_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-message-bytes", "1000000"]);
    let mut c = server.clients().await;
    c.collections
        .create_collection(create_req("bad", 4, 4, 2))
        .await
        .unwrap();
    upsert(&mut c, batch(vec![doc("good", 4, 4, 1.0)]))
        .await
        .unwrap();

    // Collections.
    expect(
        "duplicate collection",
        c.collections
            .create_collection(create_req("bad", 4, 4, 2))
            .await,
        Code::AlreadyExists,
        "already exists",
    );
    expect(
        "bad collection name",
        c.collections
            .create_collection(create_req("../x", 4, 4, 2))
            .await,
        Code::InvalidArgument,
        "collection name",
    );
    expect(
        "dim 0",
        c.collections
            .create_collection(create_req("z", 0, 4, 2))
            .await,
        Code::InvalidArgument,
        "dim is 0",
    );
    let mut r = create_req("z", 4, 4, 2);
    r.budgets = vec![pb::Budget { r_q: 1, r_c: 8 }];
    expect(
        "budget above doc_vectors",
        c.collections.create_collection(r).await,
        Code::InvalidArgument,
        "budgets[0].r_c is 8",
    );
    let mut r = create_req("z", 4, 4, 2);
    r.dtype = "f64".into();
    expect(
        "unknown dtype",
        c.collections.create_collection(r).await,
        Code::InvalidArgument,
        "dtype",
    );
    expect(
        "unknown collection",
        c.collections
            .get_collection(pb::GetCollectionRequest {
                name: "nope".into(),
            })
            .await,
        Code::NotFound,
        "nope",
    );
    expect(
        "delete unknown",
        c.collections
            .delete_collection(pb::DeleteCollectionRequest {
                name: "nope".into(),
            })
            .await,
        Code::NotFound,
        "nope",
    );

    // Documents.
    let mut to_nope = batch(vec![doc("a", 4, 4, 1.0)]);
    to_nope[0].collection = "nope".into();
    expect(
        "upsert unknown collection",
        upsert(&mut c, to_nope).await,
        Code::NotFound,
        "nope",
    );
    expect(
        "wrong dim",
        upsert(&mut c, batch(vec![doc("a", 4, 3, 1.0)])).await,
        Code::InvalidArgument,
        "documents[0].vectors.dim is 3",
    );
    expect(
        "wrong count",
        upsert(&mut c, batch(vec![doc("a", 3, 4, 1.0)])).await,
        Code::InvalidArgument,
        "documents[0].vectors.count is 3",
    );
    let mut short = doc("a", 4, 4, 1.0);
    short.vectors.as_mut().unwrap().values.pop();
    expect(
        "values short",
        upsert(&mut c, batch(vec![short])).await,
        Code::InvalidArgument,
        "has 15 values",
    );
    let mut both = doc("a", 4, 4, 1.0);
    both.vectors.as_mut().unwrap().bf16 = vec![0; 32];
    expect(
        "values and raw bf16 both set",
        upsert(&mut c, batch(vec![both])).await,
        Code::InvalidArgument,
        "documents[0].vectors: set exactly one of values, bf16 and f16",
    );
    let mut raw = doc("a", 4, 4, 1.0);
    let v = raw.vectors.as_mut().unwrap();
    v.values.clear();
    v.f16 = vec![0x3c; 31];
    expect(
        "raw f16 of the wrong length",
        upsert(&mut c, batch(vec![raw])).await,
        Code::InvalidArgument,
        "documents[0].vectors.f16 has 31 bytes",
    );
    expect(
        "missing vectors",
        upsert(
            &mut c,
            batch(vec![pb::Document {
                id: "a".into(),
                vectors: None,
                payload: String::new(),
            }]),
        )
        .await,
        Code::InvalidArgument,
        "documents[0].vectors is missing",
    );
    expect(
        "NaN",
        upsert(&mut c, batch(vec![doc("a", 4, 4, f32::NAN)])).await,
        Code::InvalidArgument,
        "non-finite",
    );
    expect(
        "infinity",
        upsert(&mut c, batch(vec![doc("a", 4, 4, f32::INFINITY)])).await,
        Code::InvalidArgument,
        "non-finite",
    );
    expect(
        "zero vector",
        upsert(&mut c, batch(vec![doc("a", 4, 4, 0.0)])).await,
        Code::InvalidArgument,
        "zero",
    );
    expect(
        "empty id",
        upsert(&mut c, batch(vec![doc("", 4, 4, 1.0)])).await,
        Code::InvalidArgument,
        "documents[0].id is empty",
    );
    expect(
        "huge id",
        upsert(&mut c, batch(vec![doc(&"i".repeat(300), 4, 4, 1.0)])).await,
        Code::InvalidArgument,
        "300 bytes",
    );
    expect(
        "duplicate ids",
        upsert(
            &mut c,
            batch(vec![doc("d", 4, 4, 1.0), doc("d", 4, 4, 1.0)]),
        )
        .await,
        Code::InvalidArgument,
        "appears twice",
    );
    expect(
        "empty batch",
        upsert(&mut c, batch(vec![])).await,
        Code::InvalidArgument,
        "documents is empty",
    );
    let mut bad_payload = doc("p", 4, 4, 1.0);
    bad_payload.payload = "{oops".into();
    expect(
        "payload not JSON",
        upsert(&mut c, batch(vec![bad_payload])).await,
        Code::InvalidArgument,
        "documents[0].payload is not valid JSON",
    );
    let mut array_payload = doc("p", 4, 4, 1.0);
    array_payload.payload = "[1]".into();
    expect(
        "payload not an object",
        upsert(&mut c, batch(vec![array_payload])).await,
        Code::InvalidArgument,
        "JSON object",
    );
    let huge: Vec<pb::Document> = (0..20_000)
        .map(|i| doc(&format!("h{i}"), 4, 4, 1.0))
        .collect();
    expect(
        "oversize message",
        upsert(&mut c, batch(huge)).await,
        Code::ResourceExhausted,
        "too large",
    );
    // A bad batch after a good one: the stream fails, the good batch stays, the bad one writes nothing.
    let mut two = batch(vec![doc("first", 4, 4, 1.0)]);
    two.extend(batch(vec![
        doc("second", 4, 4, 1.0),
        doc("third", 4, 3, 1.0),
    ]));
    expect(
        "bad second batch",
        upsert(&mut c, two).await,
        Code::InvalidArgument,
        "documents[1].vectors.dim is 3",
    );
    expect(
        "delete empty",
        c.documents
            .delete(pb::DeleteRequest {
                collection: "bad".into(),
                ids: vec![],
            })
            .await,
        Code::InvalidArgument,
        "ids is empty",
    );
    expect(
        "get empty id",
        c.documents
            .get(pb::GetRequest {
                collection: "bad".into(),
                ids: vec![String::new()],
                ids_only: false,
            })
            .await,
        Code::InvalidArgument,
        "ids[0] is empty",
    );

    // Search.
    let q = || Some(vectors(2, 4, vec![1.0; 8]));
    let mut s = search_req("bad", q().unwrap(), 1, 1, 0);
    expect(
        "k = 0",
        c.search.search(s.clone()).await,
        Code::InvalidArgument,
        "k is 0",
    );
    s.k = 10_001;
    expect(
        "k too large",
        c.search.search(s.clone()).await,
        Code::InvalidArgument,
        "k is 10001",
    );
    s.k = 5;
    s.budget = None;
    expect(
        "missing budget",
        c.search.search(s.clone()).await,
        Code::InvalidArgument,
        "budget is missing",
    );
    s.budget = Some(pb::Budget { r_q: 0, r_c: 1 });
    expect(
        "budget r_q 0",
        c.search.search(s.clone()).await,
        Code::InvalidArgument,
        "budget.r_q is 0",
    );
    s.budget = Some(pb::Budget { r_q: 1, r_c: 9 });
    expect(
        "budget above counts",
        c.search.search(s.clone()).await,
        Code::InvalidArgument,
        "budget.r_c is 9",
    );
    s.budget = Some(pb::Budget { r_q: 1, r_c: 4 });
    expect(
        "untrained budget",
        c.search.search(s.clone()).await,
        Code::InvalidArgument,
        "not a trained budget",
    );
    s.budget = Some(pb::Budget { r_q: 1, r_c: 1 });
    s.query = Some(vectors(2, 5, vec![1.0; 10]));
    expect(
        "query dim",
        c.search.search(s.clone()).await,
        Code::InvalidArgument,
        "query.dim is 5",
    );
    s.query = Some(vectors(3, 4, vec![1.0; 12]));
    expect(
        "query too many vectors",
        c.search.search(s.clone()).await,
        Code::InvalidArgument,
        "query has 3 vectors",
    );
    s.query = Some(vectors(2, 4, vec![f32::NAN; 8]));
    expect(
        "query NaN",
        c.search.search(s.clone()).await,
        Code::InvalidArgument,
        "query vector 0",
    );
    s.query = None;
    expect(
        "missing query",
        c.search.search(s.clone()).await,
        Code::InvalidArgument,
        "query is missing",
    );
    s.query = q();
    s.filter = r#"{"eq": {"field": "lang"}}"#.into();
    expect(
        "bad filter",
        c.search.search(s.clone()).await,
        Code::InvalidArgument,
        "filter",
    );
    s.filter = String::new();
    // An oversize unary request is refused before any handler runs, with the same status.
    s.query = Some(vectors(2, 4, vec![1.0; 300_000]));
    expect(
        "oversize unary message",
        c.search.search(s.clone()).await,
        Code::ResourceExhausted,
        "too large",
    );
    s.query = q();
    s.collection = "nope".into();
    expect(
        "search unknown collection",
        c.search.search(s.clone()).await,
        Code::NotFound,
        "nope",
    );
    expect(
        "batch without queries",
        c.search
            .search_batch(pb::SearchBatchRequest {
                collection: "bad".into(),
                budget: Some(pb::Budget { r_q: 1, r_c: 1 }),
                k: 1,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "queries is empty",
    );

    // Names never escape the data directory.
    expect(
        "snapshot name traversal",
        c.admin
            .delete_snapshot(pb::DeleteSnapshotRequest {
                name: "../../etc".into(),
            })
            .await,
        Code::InvalidArgument,
        "snapshot name",
    );
    expect(
        "restore as a traversal name",
        c.admin
            .restore_snapshot(pb::RestoreSnapshotRequest {
                name: "x".into(),
                as_collection: "../evil".into(),
            })
            .await,
        Code::InvalidArgument,
        "collection name",
    );
    expect(
        "snapshot of an unknown collection",
        c.admin
            .create_snapshot(pb::CreateSnapshotRequest {
                collection: "nope".into(),
            })
            .await,
        Code::NotFound,
        "nope",
    );
    expect(
        "compact keep_r_c not a boundary",
        c.admin
            .compact(pb::CompactRequest {
                collection: "bad".into(),
                keep_r_c: 3,
            })
            .await,
        Code::InvalidArgument,
        "keep_r_c is 3",
    );

    // Nothing of the bad requests was written; the good ones were.
    let info = c
        .collections
        .get_collection(pb::GetCollectionRequest { name: "bad".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.live_docs, 2, "only 'good' and 'first' exist");
    let got = c
        .documents
        .get(pb::GetRequest {
            collection: "bad".into(),
            ids: vec!["good".into(), "first".into(), "second".into()],
            ids_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.missing_ids, vec!["second".to_string()]);
    let list = c
        .collections
        .list_collections(pb::ListCollectionsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.collections.len(), 1);

    // Still serving.
    let mut health = HealthClient::new(server.channel().await);
    let h = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.status, ServingStatus::Serving as i32);
    s.collection = "bad".into();
    let res = c.search.search(s).await.unwrap().into_inner();
    assert_eq!(res.hits.len(), 2);
}
