//! Prometheus metrics on a separate HTTP port: per-RPC counts and latencies by status, and
//! per-budget search latency, documents scored and vector bytes read; per-collection sizes, WAL
//! bytes, segment counts and flush/compaction/snapshot counts and durations.

use std::io::{Read, Write};

use crate::support::*;

fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_rpcs_and_per_budget_search_figures() {
    let dir = tempfile::tempdir().unwrap();
    // Port 0: the server binds a free port and reports it (no probe-then-bind race).
    let server = Server::start(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let metrics = server
        .metrics_addr
        .clone()
        .expect("the server reports its metrics address");
    assert!(!metrics.ends_with(":0"), "{metrics}");
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
    let text = scrape(&metrics);
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

    // Collection gauges and maintenance counts, read from the engine at the scrape: the flush
    // and the snapshot above have finished, so the first scrape shows them.
    c.admin
        .flush(metavec_api::pb::FlushRequest {
            collection: "m".into(),
        })
        .await
        .unwrap();
    c.admin
        .create_snapshot(metavec_api::pb::CreateSnapshotRequest {
            collection: "m".into(),
        })
        .await
        .unwrap();
    let want = [
        r#"metavec_collection_docs{collection="m"} 1"#,
        r#"metavec_collection_memtable_docs{collection="m"} 0"#,
        r#"metavec_collection_segments{collection="m"} 1"#,
        r#"metavec_maintenance_total{collection="m",work="flush"} 1"#,
        r#"metavec_maintenance_total{collection="m",work="snapshot"} 1"#,
        r#"metavec_maintenance_total{collection="m",work="compaction"} 0"#,
        r#"metavec_maintenance_milliseconds_total{collection="m",work="flush"}"#,
        r#"metavec_maintenance_documents_total{collection="m",work="flush"} 1"#,
        r#"metavec_maintenance_documents_total{collection="m",work="compaction"} 0"#,
        r#"metavec_maintenance_bytes_total{collection="m",work="flush"}"#,
        r#"metavec_wal_bytes{collection="m"}"#,
        r#"metavec_collection_segment_bytes{collection="m"}"#,
    ];
    let text = scrape(&metrics);
    for needle in want {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

/// `--log-format json`: one JSON object per line, and every event of a request carries the
/// request's span (RPC, collection, budget), also for work done on the blocking pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_span() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_logging(
        &data,
        &["--log-format", "json"],
        "metavec=debug,metavec_core=debug",
        log.into(),
    );
    let mut c = server.clients().await;
    c.collections
        .create_collection(create_req("logs", 4, 4, 2))
        .await
        .unwrap();
    c.search
        .search(search_req("logs", vectors(2, 4, vec![1.0; 8]), 2, 4, 5))
        .await
        .unwrap();
    assert!(server.terminate());
    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let search = lines
        .iter()
        .find(|v| v["span"]["rpc"] == "Search")
        .unwrap_or_else(|| panic!("no event inside a Search span in:\n{text}"));
    assert_eq!(search["span"]["collection"], "logs", "{search}");
    assert_eq!(search["span"]["budget"], "(2, 4)", "{search}");
    assert!(search["level"].is_string() && search["timestamp"].is_string());
}
