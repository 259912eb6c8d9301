//! End-to-end gRPC bench: start the real `metavec serve`, stream synthetic documents
//! (default 20,000 x 64 x 384), then per budget measure search QPS and p50/p99 from one client,
//! with recall@10 against `exact = true` over gRPC on the same queries.
//!
//! `cargo bench -p metavec --bench grpc` (env: MV_DOCS, MV_DIM, MV_MC, MV_MQ, MV_QUERIES).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use metavec_api::pb;
use metavec_api::pb::{
    admin_client::AdminClient, collections_client::CollectionsClient,
    documents_client::DocumentsClient, search_client::SearchClient,
};
use metavec_core::synth::{generate, SynthData, SynthSpec};
use metavec_core::CollectionConfig;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (n, dim, mc, mq, nq) = (
        env("MV_DOCS", 20_000),
        env("MV_DIM", 384),
        env("MV_MC", 64),
        env("MV_MQ", 16),
        env("MV_QUERIES", 100),
    );
    let cfg = CollectionConfig::new(dim as u32, mc as u32, mq as u32);
    let ladder: Vec<(u32, u32)> = cfg.budgets.iter().map(|b| (b.r_q, b.r_c)).collect();
    let data = generate(&SynthSpec::new(n, nq, dim, &ladder, 7));

    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_metavec"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--memtable-mb",
            "512",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("metavec listening on ")
        .unwrap()
        .to_string();
    let ch = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut colls = CollectionsClient::new(ch.clone());
    let mut docs = DocumentsClient::new(ch.clone());
    let mut search = SearchClient::new(ch.clone());
    let mut admin = AdminClient::new(ch);
    colls
        .create_collection(pb::CreateCollectionRequest {
            name: "bench".into(),
            dim: dim as u32,
            doc_vectors: mc as u32,
            query_vectors: mq as u32,
            ..Default::default()
        })
        .await
        .unwrap();

    let per = 200;
    let batches: Vec<pb::UpsertRequest> = (0..n)
        .collect::<Vec<_>>()
        .chunks(per)
        .map(|c| pb::UpsertRequest {
            collection: "bench".into(),
            documents: c
                .iter()
                .map(|&i| pb::Document {
                    id: SynthData::id(i),
                    vectors: Some(pb::Vectors {
                        count: mc as u32,
                        dim: dim as u32,
                        values: data.doc(i).to_vec(),
                        ..Default::default()
                    }),
                    payload: String::new(),
                })
                .collect(),
        })
        .collect();
    let t = Instant::now();
    docs.upsert(tokio_stream::iter(batches)).await.unwrap();
    let ingest = t.elapsed();
    let t = Instant::now();
    admin
        .flush(pb::FlushRequest {
            collection: "bench".into(),
        })
        .await
        .unwrap();
    let flush = t.elapsed();
    println!(
        "{{\"docs\":{n},\"dim\":{dim},\"doc_vectors\":{mc},\"ingest_docs_per_s\":{:.0},\"ingest_mb_per_s\":{:.0},\"flush_s\":{:.1}}}",
        n as f64 / ingest.as_secs_f64(),
        (n * mc * dim * 4) as f64 / 1e6 / ingest.as_secs_f64(),
        flush.as_secs_f64()
    );

    for (r_q, r_c) in [(1u32, 1u32), (4, 8), (16, 64)] {
        let mut lat = Vec::new();
        let mut recall = 0.0;
        let mut bytes = 0u64;
        let reqs: Vec<pb::SearchRequest> = (0..nq)
            .map(|qi| pb::SearchRequest {
                collection: "bench".into(),
                query: Some(pb::Vectors {
                    count: r_q,
                    dim: dim as u32,
                    values: data.query(qi)[..r_q as usize * dim].to_vec(),
                    ..Default::default()
                }),
                budget: Some(pb::Budget { r_q, r_c }),
                k: 10,
                ..Default::default()
            })
            .collect();
        let t = Instant::now();
        let mut results = Vec::new();
        for r in &reqs {
            let t = Instant::now();
            results.push(search.search(r.clone()).await.unwrap().into_inner());
            lat.push(t.elapsed());
        }
        let wall = t.elapsed();
        for (r, res) in reqs.iter().zip(&results) {
            let mut e = r.clone();
            e.exact = true;
            let truth = search.search(e).await.unwrap().into_inner();
            recall += truth
                .hits
                .iter()
                .filter(|h| res.hits.iter().any(|x| x.id == h.id))
                .count() as f64
                / 10.0;
            bytes += res.stats.as_ref().unwrap().vector_bytes_read;
        }
        println!(
            "{{\"budget\":\"{r_q}x{r_c}\",\"qps_1_client\":{:.0},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"recall_at_10\":{:.3},\"vector_bytes_per_query\":{}}}",
            nq as f64 / wall.as_secs_f64(),
            pct(&mut lat, 0.5).as_secs_f64() * 1e3,
            pct(&mut lat, 0.99).as_secs_f64() * 1e3,
            recall / nq as f64,
            bytes / nq as u64
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
