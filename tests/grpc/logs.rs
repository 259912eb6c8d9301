//! Log lines are well-formed (issue 16, defect 8): a JSON line never repeats a key within one
//! object (serde_json would keep the last duplicate silently, so the raw text is checked), and a
//! text line's request span names its collection once, never as `collection=""`.

use std::collections::HashSet;
use std::fmt;
use std::process::Stdio;

use metavec_api::pb;
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

use crate::support::*;

/// Any JSON value, refused when one of its objects has a key twice.
struct Unique;

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut keys = HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if !keys.insert(k.clone()) {
                return Err(A::Error::custom(format!("duplicate key {k:?}")));
            }
            map.next_value::<Unique>()?;
        }
        Ok(Unique)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }
}

#[test]
fn the_duplicate_key_check_catches_duplicates() {
    assert!(serde_json::from_str::<Unique>(r#"{"a":1,"b":{"c":[{"d":2}]}}"#).is_ok());
    let e = serde_json::from_str::<Unique>(r#"{"a":1,"b":{"m":"x","m":"y"}}"#)
        .err()
        .unwrap();
    assert!(e.to_string().contains("duplicate key \"m\""), "{e}");
}

/// Runs a few requests (an Upsert stream, a failing Get, a failing Search, a Flush) against a
/// server logging at debug in `format`, then stops it and returns its log.
async fn log_of_requests(format: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_logging(
        &data,
        &["--log-format", format],
        "debug,h2=info,hyper=info,tower=info,tonic=info",
        Stdio::from(log),
    );
    let mut c = server.clients().await;
    c.collections
        .create_collection(create_req("logged", 4, 1, 1))
        .await
        .unwrap();
    upsert(
        &mut c,
        vec![pb::UpsertRequest {
            collection: "logged".into(),
            documents: vec![pb::Document {
                id: "a".into(),
                vectors: Some(vectors(1, 4, vec![1.0, 0.0, 0.0, 0.0])),
                payload: String::new(),
            }],
        }],
    )
    .await
    .unwrap();
    let e = c
        .documents
        .get(pb::GetRequest {
            collection: "logged".into(),
            ids: vec![String::new()],
            ids_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = c
        .search
        .search(search_req("logged", vectors(1, 4, vec![0.0; 4]), 1, 1, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    c.admin
        .flush(pb::FlushRequest {
            collection: "logged".into(),
        })
        .await
        .unwrap();
    assert!(server.terminate());
    std::fs::read_to_string(&log_path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_have_unique_keys() {
    let log = log_of_requests("json").await;
    let mut failed = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        if let Err(e) = serde_json::from_str::<Unique>(line) {
            panic!("{e}: {line}");
        }
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["fields"]["message"] == "request failed" {
            failed += 1;
            assert_eq!(v["span"]["collection"], "logged", "{line}");
            assert!(v["fields"]["error"].is_string(), "{line}");
        }
    }
    assert_eq!(failed, 2, "{log}");
    assert!(log.contains(r#""rpc":"Upsert""#), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_spans_name_the_collection_once() {
    let log = log_of_requests("text").await;
    let mut rpc_lines = 0;
    for line in log.lines() {
        assert!(!line.contains(r#"collection="""#), "{line}");
        // The request span, `rpc{rpc=... collection=...}:`, names its collection once.
        if let Some(start) = line.find("rpc{") {
            let span = &line[start..start + line[start..].find('}').unwrap()];
            assert!(span.matches("collection=").count() <= 1, "{line}");
            rpc_lines += 1;
        }
    }
    assert!(rpc_lines >= 4, "{log}");
    assert!(
        log.contains(r#"rpc{rpc="Upsert" collection="logged"}"#),
        "{log}"
    );
}

/// `RUST_LOG=debug` is metavec's debug log, not h2's frames or sled's internals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_debug_level_logs_metavec_only() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server =
        Server::start_logging(&dir.path().join("data"), &[], "debug", Stdio::from(log));
    let mut c = server.clients().await;
    c.collections
        .create_collection(create_req("quiet", 4, 1, 1))
        .await
        .unwrap();
    upsert(
        &mut c,
        vec![pb::UpsertRequest {
            collection: "quiet".into(),
            documents: vec![pb::Document {
                id: "a".into(),
                vectors: Some(vectors(1, 4, vec![1.0, 0.0, 0.0, 0.0])),
                payload: String::new(),
            }],
        }],
    )
    .await
    .unwrap();
    drop(c);
    assert!(server.terminate());
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        text.contains("DEBUG") && text.contains("metavec::server::observe: ok"),
        "no metavec debug lines:\n{text}"
    );
    for noisy in ["h2::", "sled::", "hyper::", "tower::"] {
        assert!(
            !text.contains(noisy),
            "{noisy} logged at RUST_LOG=debug:\n{text}"
        );
    }
}
