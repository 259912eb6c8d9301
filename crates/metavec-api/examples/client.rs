//! A Rust client of a running metavec server, using only `metavec-api` (plus tokio and tonic).
//!
//!     cargo run --release -p metavec-api --example client -- http://127.0.0.1:50051
//!
//! Creates a collection, streams 200 documents, searches at two budgets, reads a document back,
//! and deletes the collection. Prints one line per step.

use metavec_api::pb;
use metavec_api::pb::collections_client::CollectionsClient;
use metavec_api::pb::documents_client::DocumentsClient;
use metavec_api::pb::search_client::SearchClient;

const DIM: u32 = 16;
const DOC_VECTORS: u32 = 8;

/// The first `count` vectors of document `doc`: deterministic pseudo-random values in
/// [-0.5, 0.5) (the server L2-normalises every vector).
fn rows(doc: u32, count: u32) -> Vec<f32> {
    (0..count * DIM)
        .map(|i| {
            // splitmix64 of (doc, i)
            let mut z = ((doc as u64) << 32 | i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let channel = tonic::transport::Channel::from_shared(addr)?
        .connect()
        .await?;
    let mut collections = CollectionsClient::new(channel.clone());
    let mut documents = DocumentsClient::new(channel.clone());
    let mut search = SearchClient::new(channel);

    let info = collections
        .create_collection(pb::CreateCollectionRequest {
            name: "rust-example".into(),
            dim: DIM,
            doc_vectors: DOC_VECTORS,
            query_vectors: 4,
            ..Default::default()
        })
        .await?
        .into_inner();
    let budgets: Vec<(u32, u32)> = info
        .config
        .iter()
        .flat_map(|c| c.budgets.iter().map(|b| (b.r_q, b.r_c)))
        .collect();
    println!("created {} with budgets {budgets:?}", info.name);

    // One Upsert stream, two batches of 100; each batch is durable once acknowledged.
    let batches: Vec<pb::UpsertRequest> = (0..2)
        .map(|b| pb::UpsertRequest {
            collection: "rust-example".into(),
            documents: (b * 100..(b + 1) * 100)
                .map(|i| pb::Document {
                    id: format!("doc-{i:03}"),
                    vectors: Some(pb::Vectors {
                        count: DOC_VECTORS,
                        dim: DIM,
                        values: rows(i, DOC_VECTORS),
                        ..Default::default()
                    }),
                    payload: format!(r#"{{"n": {i}}}"#),
                })
                .collect(),
        })
        .collect();
    let ack = documents
        .upsert(tokio_stream::iter(batches))
        .await?
        .into_inner();
    println!(
        "upserted {} documents in {} batches",
        ack.upserted, ack.batches
    );

    // Query with document 42's own vectors: it must come first at every budget.
    for (r_q, r_c) in [(1, 1), (2, 4)] {
        let res = search
            .search(pb::SearchRequest {
                collection: "rust-example".into(),
                query: Some(pb::Vectors {
                    count: 4,
                    dim: DIM,
                    values: rows(42, 4),
                    ..Default::default()
                }),
                budget: Some(pb::Budget { r_q, r_c }),
                k: 3,
                ..Default::default()
            })
            .await?
            .into_inner();
        let top: Vec<&str> = res.hits.iter().map(|h| h.id.as_str()).collect();
        println!("budget ({r_q}, {r_c}): top {top:?}");
    }

    let got = documents
        .get(pb::GetRequest {
            collection: "rust-example".into(),
            ids: vec!["doc-042".into()],
            ids_only: false,
        })
        .await?
        .into_inner();
    println!(
        "got {} with payload {}",
        got.documents[0].id, got.documents[0].payload
    );

    collections
        .delete_collection(pb::DeleteCollectionRequest {
            name: "rust-example".into(),
        })
        .await?;
    println!("deleted rust-example");
    Ok(())
}
