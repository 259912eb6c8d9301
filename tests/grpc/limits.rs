//! Responses are bounded while they are gathered (issue 16, defect 2): 100 documents with ~1 MB
//! payloads; SearchBatch (4 queries, k=100, with payloads), Search (k=100) and Get of every id
//! stop at the message limit with RESOURCE_EXHAUSTED naming it, and Get of one id repeated 300
//! times reads it once. Measured by the bytes the server reports it reserved for the response
//! (`metavec-response-reserved-bytes`), which must stay within the limit plus one document.

use metavec_api::pb;
use metavec_api::pb::{documents_client::DocumentsClient, search_client::SearchClient};
use tonic::Code;

use crate::support::*;

const LIMIT: usize = 16 << 20;
const DIM: u32 = 8;
const DOCS: usize = 100;
const RESERVED: &str = "metavec-response-reserved-bytes";

fn id(i: usize) -> String {
    format!("doc-{i:03}")
}

/// A distinct, non-zero vector per document (M_c = 2).
fn doc_vectors(i: usize) -> Vec<f32> {
    (0..2 * DIM as usize)
        .map(|j| ((i * 7 + j * 3) % 11) as f32 + 1.0)
        .collect()
}

fn payload(i: usize) -> String {
    // ~1 MB, under the 1 MiB payload limit.
    format!(r#"{{"i":{i},"blob":"{}"}}"#, "x".repeat(1_000_000))
}

/// The most one document adds to a response: its payload, id, vectors and framing.
fn one_doc() -> usize {
    payload(DOCS).len() + 64 + 2 * DIM as usize * 4 + 64
}

fn reserved(md: &tonic::metadata::MetadataMap) -> usize {
    md.get(RESERVED)
        .unwrap_or_else(|| panic!("no {RESERVED} in {md:?}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn assert_exhausted(e: &tonic::Status) {
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message()
            .contains(&format!("{LIMIT}-byte message limit (--max-message-bytes)")),
        "{}",
        e.message()
    );
    let r = reserved(e.metadata());
    // It went up to the limit (it did not give up early) and stopped within one document of it.
    assert!(r > LIMIT && r <= LIMIT + one_doc(), "reserved {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_stop_at_the_message_limit_and_get_reads_each_id_once() {
    let dir = tempfile::tempdir().unwrap();
    let limit = LIMIT.to_string();
    let server = Server::start(dir.path(), &["--max-message-bytes", &limit]);
    let mut c = server.clients().await;
    let ch = server.channel().await;
    let mut docs = DocumentsClient::new(ch.clone()).max_decoding_message_size(usize::MAX);
    let mut search = SearchClient::new(ch).max_decoding_message_size(usize::MAX);
    c.collections
        .create_collection(create_req("big", DIM, 2, 2))
        .await
        .unwrap();
    // Half sealed into a segment, half in the memtable; 8 documents (~8 MB) per message.
    for (half, seal) in [(0..DOCS / 2, true), (DOCS / 2..DOCS, false)] {
        let batches = half
            .collect::<Vec<_>>()
            .chunks(8)
            .map(|is| pb::UpsertRequest {
                collection: "big".into(),
                documents: is
                    .iter()
                    .map(|&i| pb::Document {
                        id: id(i),
                        vectors: Some(vectors(2, DIM, doc_vectors(i))),
                        payload: payload(i),
                    })
                    .collect(),
            })
            .collect();
        upsert(&mut c, batches).await.unwrap();
        if seal {
            c.admin
                .flush(pb::FlushRequest {
                    collection: "big".into(),
                })
                .await
                .unwrap();
        }
    }

    // SearchBatch: 4 queries x k=100 with payloads is ~400 MB; it stops at the limit.
    let q = |s: f32| vectors(1, DIM, (0..DIM).map(|j| j as f32 + s).collect());
    let batch = pb::SearchBatchRequest {
        collection: "big".into(),
        queries: (0..4).map(|s| q(s as f32 + 1.0)).collect(),
        budget: Some(pb::Budget { r_q: 1, r_c: 1 }),
        k: 100,
        exact: true,
        with_payload: true,
        ..Default::default()
    };
    let e = search.search_batch(batch.clone()).await.unwrap_err();
    assert_exhausted(&e);
    assert!(
        e.message().contains("(k=100) with payloads"),
        "{}",
        e.message()
    );

    // The same batch without payloads fits, and reports what it reserved.
    let ok = search
        .search_batch(pb::SearchBatchRequest {
            with_payload: false,
            ..batch
        })
        .await
        .unwrap();
    let r = reserved(ok.metadata());
    let results = ok.into_inner().results;
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(|r| r.hits.len() == DOCS));
    assert!(r > 0 && r < 64 << 10, "reserved {r}");

    // One Search with k=100: the same; with k=10 every payload comes back whole.
    let one = |k| pb::SearchRequest {
        with_payload: true,
        exact: true,
        ..search_req("big", q(1.0), 1, 1, k)
    };
    assert_exhausted(&search.search(one(100)).await.unwrap_err());
    let ok = search.search(one(10)).await.unwrap();
    let r = reserved(ok.metadata());
    let hits = ok.into_inner().hits;
    assert_eq!(hits.len(), 10);
    for h in &hits {
        let i: usize = h.id["doc-".len()..].parse().unwrap();
        assert_eq!(h.payload, payload(i), "{}", h.id);
    }
    assert!(
        r >= 10 * payload(0).len() && r <= 10 * one_doc(),
        "reserved {r}"
    );

    // Get with one id 300 times: one document (~1 MB), not 300.
    let resp = docs
        .get(pb::GetRequest {
            collection: "big".into(),
            ids: vec![id(7); 300],
            ids_only: false,
        })
        .await
        .unwrap();
    let r = reserved(resp.metadata());
    let got = resp.into_inner();
    assert_eq!(got.documents.len(), 1);
    assert_eq!(got.documents[0].id, id(7));
    assert_eq!(got.documents[0].payload, payload(7));
    assert!(got.missing_ids.is_empty());
    assert!(r >= payload(7).len() && r <= one_doc(), "reserved {r}");

    // Each id once, in the order of first mention; a missing id once too.
    let got = docs
        .get(pb::GetRequest {
            collection: "big".into(),
            ids: [
                id(5),
                id(3),
                "nope".into(),
                id(5),
                id(90),
                id(3),
                "nope".into(),
            ]
            .into(),
            ids_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    let order: Vec<&str> = got.documents.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(order, [id(5), id(3), id(90)]);
    assert_eq!(got.missing_ids, ["nope"]);

    // Get of every id (~100 MB) stops at the limit.
    let e = docs
        .get(pb::GetRequest {
            collection: "big".into(),
            ids: (0..DOCS).map(id).collect(),
            ids_only: false,
        })
        .await
        .unwrap_err();
    assert_exhausted(&e);
    assert!(e.message().contains("distinct ids"), "{}", e.message());
    // ids_only reads them all: ids alone are small.
    let got = docs
        .get(pb::GetRequest {
            collection: "big".into(),
            ids: (0..DOCS).map(id).collect(),
            ids_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.documents.len(), DOCS);
}
