//! Who may call the HTTP API and how: keys (401, 403, checked before the body), CORS for the
//! configured origin only, the body limit (413), wrong-shape bodies to every route, the HTTP
//! settings in the config file, and a router refusing `--http-listen`.

use serde_json::json;

use crate::http::{error, Http};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_keys_cors_and_body_limit() {
    let dir = tempfile::tempdir().unwrap();
    let origin = "http://console.example.test";
    let mut server = Server::start(
        dir.path(),
        &[
            "--http-listen",
            "127.0.0.1:0",
            "--api-key",
            "admin-key",
            "--read-only-key",
            "reader-key",
            "--http-cors-origin",
            origin,
            "--max-message-bytes",
            "1048576",
        ],
    );
    let anon = Http::new(&server);
    let admin = anon.with_key("authorization", "Bearer admin-key");
    let reader = anon.with_key("x-api-key", "reader-key");
    let create = json!({"name": "k", "dim": 4, "doc_vectors": 2, "query_vectors": 1, "budgets": ["1x1", "1x2"]});

    let m = error(&anon.get("/v1/collections"), 401, "unauthenticated");
    assert!(m.contains("api key"), "{m}");
    let wrong = anon.with_key("authorization", "Bearer wrong");
    let m = error(&wrong.get("/v1/collections"), 401, "unauthenticated");
    assert!(m.contains("api key"), "{m}");
    // The key is checked before the body is read.
    let bad = b"{not json";
    error(
        &anon.post_raw("/v1/collections/k/documents", bad),
        401,
        "unauthenticated",
    );
    error(
        &reader.post_raw("/v1/collections/k/documents", bad),
        403,
        "permission_denied",
    );
    let m = error(
        &reader.post("/v1/collections", create.clone()),
        403,
        "permission_denied",
    );
    assert!(m.contains("read-only"), "{m}");
    admin.ok("/v1/collections", create);
    let docs = json!({"documents": [{"id": "a", "vectors": [[1, 0, 0, 0], [0, 1, 0, 0]]}]});
    error(
        &reader.post("/v1/collections/k/documents", docs.clone()),
        403,
        "permission_denied",
    );
    anon.with_key("x-api-key", "admin-key")
        .ok("/v1/collections/k/documents", docs);
    let r = reader.get("/v1/collections");
    assert_eq!(r.status, 200);
    assert_eq!(r.body["collections"][0]["name"], "k");
    let hit = reader.ok(
        "/v1/collections/k/search",
        json!({"query_id": "a", "budget": [1, 2], "k": 1}),
    );
    assert_eq!(hit["hits"][0]["id"], "a");
    // The console page itself holds no data and needs no key; the plot is a read.
    assert_eq!(anon.get("/").status, 200);
    error(&anon.get("/v1/console/bench-plot"), 401, "unauthenticated");
    assert_eq!(reader.get("/v1/console/bench-plot").status, 204);

    // Body limit: past --max-message-bytes, 413 with the error body.
    let big = vec![b' '; 1_100_000];
    let m = error(
        &admin.post_raw("/v1/collections/k/documents", &big),
        413,
        "resource_exhausted",
    );
    assert!(m.contains("1048576"), "{m}");

    // CORS for the configured origin, preflight included.
    let r = anon
        .agent
        .get(format!("{}/v1/collections", anon.base))
        .header("origin", origin)
        .header("x-api-key", "reader-key")
        .call()
        .unwrap();
    assert_eq!(
        r.headers().get("access-control-allow-origin").unwrap(),
        origin
    );
    let r = anon
        .agent
        .options(format!("{}/v1/collections/k/search", anon.base))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .call()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        r.headers().get("access-control-allow-origin").unwrap(),
        origin
    );
    let allowed = r
        .headers()
        .get("access-control-allow-headers")
        .unwrap()
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    let r = anon
        .agent
        .get(format!("{}/v1/collections", anon.base))
        .header("origin", "http://elsewhere.test")
        .call()
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert!(server.terminate());
}

/// Bodies of every wrong shape to every route: each answer is a 4xx with the error body, and
/// the server still answers afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_garbage_gets_error_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--http-listen", "127.0.0.1:0"]);
    let h = Http::new(&server);
    h.ok(
        "/v1/collections",
        json!({"name": "g", "dim": 2, "doc_vectors": 1, "query_vectors": 1}),
    );
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let bodies: Vec<Vec<u8>> = [
        "null", "[]", "\"x\"", "1e999", "{\"ids\": 5}", "{\"documents\": [{\"id\": 5}]}",
        "{\"documents\": [{\"id\": \"a\", \"vectors\": [[1e39, 0]]}]}",
        "{\"documents\": [{\"id\": \"a\", \"vectors\": [[0, 0]]}]}",
        "{\"documents\": [{\"id\": \"a\", \"vectors\": {\"dtype\": \"f32\", \"shape\": [4294967295, 4294967295], \"data\": \"\"}}]}",
        "{\"documents\": [{\"id\": \"a\", \"vectors\": {\"dtype\": \"f32\", \"shape\": [1], \"data\": \"@@\"}}]}",
        "{\"query\": [[1, 0]], \"budget\": [0, 0]}", "{\"query\": [], \"budget\": \"1x1\"}",
        "{\"query_id\": \"\", \"budget\": \"1x1\"}", "{\"query_id\": \"missing\", \"budget\": \"1x1\"}",
        "{\"filter\": {\"nope\": 1}}", "{\"filter\": \"[\"}", "{\"ids\": [\"\"]}", "\u{0}\u{1}",
        "{\"limit\": -1}", "{\"keep_r_c\": 3}", "{\"budget\": [1, 1], \"query\": [[1, 0]], \"k\": 0}",
    ]
    .iter()
    .map(|b| b.as_bytes().to_vec())
    .chain([deep.into_bytes(), vec![0xff, 0xfe, 0x00]])
    .collect();
    let routes = [
        "/v1/collections",
        "/v1/collections/g/documents",
        "/v1/collections/g/documents/get",
        "/v1/collections/g/documents/delete",
        "/v1/collections/g/documents/scroll",
        "/v1/collections/g/documents/count",
        "/v1/collections/g/documents/payload",
        "/v1/collections/g/search",
        "/v1/collections/g/compact",
    ];
    for route in routes {
        for body in &bodies {
            let r = h.post_raw(route, body);
            let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
            // Some bodies are valid for some routes (an empty filter counts everything).
            if r.status == 200 {
                continue;
            }
            assert!(
                (400..500).contains(&r.status),
                "{route} {shown}: {} {}",
                r.status,
                r.body
            );
            assert!(
                r.body["error"]["code"].is_string(),
                "{route} {shown}: {}",
                r.body
            );
            assert!(
                r.body["error"]["message"].is_string(),
                "{route} {shown}: {}",
                r.body
            );
        }
    }
    assert_eq!(h.get("/v1/collections/g").status, 200);
    assert!(server.terminate());
}

#[test]
fn http_refused_by_a_router() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_metavec"))
        .args([
            "serve",
            "--router",
            "--shards",
            "127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--http-listen is not served by a router"),
        "{err}"
    );
}

/// `http_listen` (and the other HTTP settings) from the config file.
#[test]
fn http_settings_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("metavec.toml");
    std::fs::write(
        &cfg,
        "http_listen = \"127.0.0.1:0\"\nhttp_cors_origin = \"http://a.test\"\nbench_plot = \"plot.svg\"\n",
    )
    .unwrap();
    let mut server = Server::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    );
    let h = Http::new(&server);
    let r = h
        .agent
        .get(format!("{}/v1/collections", h.base))
        .header("origin", "http://a.test")
        .call()
        .unwrap();
    assert_eq!(
        r.headers().get("access-control-allow-origin").unwrap(),
        "http://a.test"
    );
    let m = error(&h.get("/v1/console/bench-plot"), 404, "not_found");
    assert!(m.contains("plot.svg"), "{m}");
    assert!(server.terminate());
}
