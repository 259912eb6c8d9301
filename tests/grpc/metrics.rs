//! Prometheus metrics on a separate HTTP port: per-RPC counts and latencies by status, and
//! per-budget search latency, documents scored and vector bytes read.

use std::io::{Read, Write};

use crate::support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_rpcs_and_per_budget_search_figures() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let server = Server::start(dir.path(), &["--metrics-listen", &listen]);
    let mut c = server.clients().await;
    c.collections
        .create_collection(create_req("m", 4, 4, 2))
        .await
        .unwrap();
    let doc = metavec_api::pb::Document {
        id: "a".into(),
        vectors: Some(vectors(4, 4, vec![0.5; 16])),
        payload: String::new(),
    };
    upsert(
        &mut c,
        vec![metavec_api::pb::UpsertRequest {
            collection: "m".into(),
            documents: vec![doc],
        }],
    )
    .await
    .unwrap();
    c.search
        .search(search_req("m", vectors(2, 4, vec![1.0; 8]), 2, 4, 5))
        .await
        .unwrap();
    c.search
        .search(search_req("m", vectors(2, 4, vec![1.0; 8]), 1, 1, 0))
        .await
        .unwrap_err();
    let text = scrape(port);
    for needle in [
        r#"metavec_requests_total{rpc="Search",code="OK"} 1"#,
        r#"metavec_requests_total{rpc="Search",code="InvalidArgument"} 1"#,
        r#"metavec_search_docs_scored_total{budget="2x4"} 1"#,
        r#"metavec_search_vector_bytes_read_total{budget="2x4"} 64"#,
        r#"metavec_upserted_docs_total 1"#,
        "metavec_search_seconds_bucket",
        "metavec_request_seconds_bucket",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}
