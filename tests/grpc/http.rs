//! The HTTP/JSON API (`--http-listen`) against the real binary with a real HTTP client: every
//! route once, vectors as nested arrays and as base64 f32 / bf16, searches equal to the gRPC
//! ones on the same data, keys, the error body and its status codes, the body limit, CORS and
//! `/openapi.json`.

use base64::Engine as _;
use metavec_api::pb;
use metavec_core::document::normalize_rows;
use metavec_core::synth::{generate, SynthData, SynthSpec};
use serde_json::{json, Value};

use crate::support::*;

const DIM: usize = 32;
const N: usize = 300;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// One HTTP call: status, body as JSON (Null when it is not JSON), and the response headers.
struct Http {
    agent: ureq::Agent,
    base: String,
    key: Option<(&'static str, String)>,
}

struct Reply {
    status: u16,
    body: Value,
    headers: http::HeaderMap,
}

impl Http {
    fn new(server: &Server) -> Http {
        Http {
            agent: agent(),
            base: format!(
                "http://{}",
                server.http_addr.as_ref().expect("http address")
            ),
            key: None,
        }
    }

    fn with_key(&self, header: &'static str, key: &str) -> Http {
        Http {
            agent: self.agent.clone(),
            base: self.base.clone(),
            key: Some((header, key.into())),
        }
    }

    fn reply(r: Result<http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let r = r.expect("http call");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.into_body().read_to_string().unwrap();
        Reply {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        }
    }

    fn get(&self, path: &str) -> Reply {
        let mut r = self.agent.get(format!("{}{path}", self.base));
        if let Some((h, k)) = &self.key {
            r = r.header(*h, k);
        }
        Self::reply(r.call())
    }

    fn delete(&self, path: &str) -> Reply {
        let mut r = self.agent.delete(format!("{}{path}", self.base));
        if let Some((h, k)) = &self.key {
            r = r.header(*h, k);
        }
        Self::reply(r.call())
    }

    fn post_raw(&self, path: &str, body: &[u8]) -> Reply {
        let mut r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some((h, k)) = &self.key {
            r = r.header(*h, k);
        }
        Self::reply(r.send(body))
    }

    fn post(&self, path: &str, body: Value) -> Reply {
        self.post_raw(path, body.to_string().as_bytes())
    }

    /// `post` that must succeed.
    fn ok(&self, path: &str, body: Value) -> Value {
        let r = self.post(path, body);
        assert_eq!(r.status, 200, "POST {path}: {}", r.body);
        r.body
    }
}

/// The error body's code, checking the status and the schema's shape.
fn error(r: &Reply, status: u16, code: &str) -> String {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["error"]["code"], code, "{}", r.body);
    let m = r.body["error"]["message"]
        .as_str()
        .expect("message")
        .to_string();
    assert!(!m.is_empty());
    m
}

fn data() -> SynthData {
    generate(&SynthSpec::new(N, 6, DIM, &[(1, 1), (2, 4), (4, 8)], 5))
}

fn rows(v: &[f32]) -> Value {
    json!(v.chunks(DIM).map(<[f32]>::to_vec).collect::<Vec<_>>())
}

fn b64(bytes: Vec<u8>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Document `i` in one of the three forms: nested numbers, base64 f32, base64 bf16.
fn doc_json(data: &SynthData, i: usize) -> Value {
    let v = data.doc(i);
    let rows_n = v.len() / DIM;
    let vectors = match i % 3 {
        0 => rows(v),
        1 => json!({"dtype": "f32", "shape": [rows_n, DIM],
            "data": b64(v.iter().flat_map(|x| x.to_le_bytes()).collect())}),
        _ => json!({"dtype": "bf16", "shape": [rows_n, DIM],
            "data": b64(v.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect())}),
    };
    json!({"id": SynthData::id(i), "vectors": vectors, "payload": {"i": i}})
}

fn hits(v: &Value) -> Vec<(String, f32)> {
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["id"].as_str().unwrap().to_string(),
                h["score"].as_f64().unwrap() as f32,
            )
        })
        .collect()
}

fn grpc_hits(r: &pb::SearchResponse) -> Vec<(String, f32)> {
    r.hits.iter().map(|h| (h.id.clone(), h.score)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_matches_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--http-listen", "127.0.0.1:0"]);
    let mut c = server.clients().await;
    let h = Http::new(&server);
    let data = data();
    let (mc, mq) = (data.spec.doc_vectors(), data.spec.query_vectors());

    // Budgets in the three accepted forms.
    let info = h.ok(
        "/v1/collections",
        json!({"name": "h", "dim": DIM, "doc_vectors": mc, "query_vectors": mq,
               "budgets": ["1x1", [2, 4], {"r_q": 4, "r_c": 8}], "dtype": "f32"}),
    );
    assert_eq!(info["budgets"], json!([[1, 1], [2, 4], [4, 8]]));
    assert_eq!(info["dtype"], "f32");
    let again = h.post(
        "/v1/collections",
        json!({"name": "h", "dim": DIM, "doc_vectors": mc, "query_vectors": mq}),
    );
    error(&again, 409, "already_exists");

    for chunk in (0..N).collect::<Vec<_>>().chunks(100) {
        let docs: Vec<Value> = chunk.iter().map(|&i| doc_json(&data, i)).collect();
        let r = h.ok("/v1/collections/h/documents", json!({"documents": docs}));
        assert_eq!(r["upserted"], 100);
    }
    let listed = h.get("/v1/collections");
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["collections"][0]["live_docs"], N);

    // Get: each form read back as stored (normalised), the same values gRPC returns.
    let ids: Vec<String> = [0, 1, 2].iter().map(|&i| SynthData::id(i)).collect();
    let got = h.ok(
        "/v1/collections/h/documents/get",
        json!({"ids": [ids[0], ids[1], ids[2], "nope"]}),
    );
    assert_eq!(got["missing_ids"], json!(["nope"]));
    let by_grpc = stored(&mut c, "h", ids.clone()).await;
    for (i, d) in got["documents"].as_array().unwrap().iter().enumerate() {
        assert_eq!(d["id"], ids[i]);
        assert_eq!(d["payload"], json!({"i": i}));
        let flat: Vec<f32> = d["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
            })
            .collect();
        assert_eq!(flat, by_grpc[&ids[i]].0, "{}", ids[i]);
        let mut want = data.doc(i).to_vec();
        normalize_rows(&mut want, DIM, "doc").unwrap();
        let tol = if i == 2 { 1e-2 } else { 1e-6 };
        let worst = flat
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < tol, "document {i}: off by {worst}");
    }

    // Packed on request: base64 of the same f32 values.
    let got = h.ok(
        "/v1/collections/h/documents/get",
        json!({"ids": [ids[1]], "packed": true}),
    );
    let v = &got["documents"][0]["vectors"];
    assert_eq!(v["dtype"], "f32");
    assert_eq!(v["shape"], json!([mc, DIM]));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v["data"].as_str().unwrap())
        .unwrap();
    let values: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(values, by_grpc[&ids[1]].0);

    // Count, scroll.
    assert_eq!(
        h.ok("/v1/collections/h/documents/count", json!({}))["count"],
        N
    );
    let small = json!({"range": {"field": "i", "lt": 50}});
    assert_eq!(
        h.ok(
            "/v1/collections/h/documents/count",
            json!({"filter": small})
        )["count"],
        50
    );
    let (mut seen, mut cursor) = (Vec::new(), String::new());
    loop {
        let page = h.ok(
            "/v1/collections/h/documents/scroll",
            json!({"cursor": cursor, "limit": 120}),
        );
        seen.extend(
            page["documents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.into(),
            None => break,
        }
    }
    let mut all: Vec<String> = (0..N).map(SynthData::id).collect();
    all.sort();
    assert_eq!(seen, all);

    // Set payload (merge).
    let r = h.ok(
        "/v1/collections/h/documents/payload",
        json!({"ids": [ids[0]], "payload": {"tag": "x"}, "merge": true}),
    );
    assert_eq!(r["updated"], 1);
    let got = h.ok("/v1/collections/h/documents/get", json!({"ids": [ids[0]]}));
    assert_eq!(got["documents"][0]["payload"], json!({"i": 0, "tag": "x"}));

    // Searches equal gRPC's: plain at each budget, with a filter, with a cascade, exact.
    for qi in 0..3 {
        let q = data.query(qi).to_vec();
        for (r_q, r_c) in [(1, 1), (2, 4), (4, 8)] {
            let mut req = search_req("h", vectors(mq as u32, DIM as u32, q.clone()), r_q, r_c, 10);
            let mut body = json!({"query": rows(&q), "budget": [r_q, r_c], "k": 10});
            let got = h.ok("/v1/collections/h/search", body.clone());
            let want = c.search.search(req.clone()).await.unwrap().into_inner();
            assert_eq!(hits(&got), grpc_hits(&want), "query {qi} at {r_q}x{r_c}");
            assert_eq!(got["budget"], json!([r_q, r_c]));
            assert_eq!(got["stats"]["stages"].as_array().unwrap().len(), 1);

            req.filter = small.to_string();
            body["filter"] = small.clone();
            let got = h.ok("/v1/collections/h/search", body.clone());
            let want = c.search.search(req.clone()).await.unwrap().into_inner();
            assert_eq!(hits(&got), grpc_hits(&want), "filtered query {qi}");
            assert!(!want.hits.is_empty());
        }
        let mut req = search_req("h", vectors(mq as u32, DIM as u32, q.clone()), 4, 8, 5);
        req.stages = vec![pb::Stage {
            budget: Some(pb::Budget { r_q: 1, r_c: 1 }),
            keep: 40,
        }];
        req.with_payload = true;
        let body = json!({"query": rows(&q), "budget": "4x8", "k": 5, "with_payload": true,
                          "stages": [{"budget": [1, 1], "keep": 40}]});
        let got = h.ok("/v1/collections/h/search", body);
        let want = c.search.search(req).await.unwrap().into_inner();
        assert_eq!(hits(&got), grpc_hits(&want), "cascade {qi}");
        let stages = got["stats"]["stages"].as_array().unwrap();
        assert_eq!(stages.len(), 2);
        assert_eq!(stages[0]["budget"], json!([1, 1]));
        assert!(
            got["hits"][0]["payload"]["i"].is_u64(),
            "{}",
            got["hits"][0]
        );
    }

    // A stored document as the query: the same as sending its first vectors.
    let got = h.ok(
        "/v1/collections/h/search",
        json!({"query_id": SynthData::id(7), "budget": [4, 8], "k": 5}),
    );
    let doc7 = stored(&mut c, "h", vec![SynthData::id(7)]).await;
    let q = doc7[&SynthData::id(7)].0[..mq * DIM].to_vec();
    let want = c
        .search
        .search(search_req("h", vectors(mq as u32, DIM as u32, q), 4, 8, 5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hits(&got), grpc_hits(&want));
    assert_eq!(got["hits"][0]["id"], SynthData::id(7));

    // Deletes by ids and by filter.
    let r = h.ok(
        "/v1/collections/h/documents/delete",
        json!({"ids": [ids[0], ids[1], "nope"]}),
    );
    assert_eq!(r["deleted"], 2);
    let r = h.ok(
        "/v1/collections/h/documents/delete",
        json!({"filter": {"eq": {"field": "i", "value": 2}}}),
    );
    assert_eq!(r["deleted"], 1);
    assert_eq!(
        h.ok("/v1/collections/h/documents/count", json!({}))["count"],
        N - 3
    );

    // Admin.
    assert_eq!(
        h.ok("/v1/collections/h/flush", json!({}))["flushed"],
        json!(["h"])
    );
    let compacted = h.ok("/v1/collections/h/compact", json!({}));
    assert!(compacted["stored_vectors"].is_u64(), "{compacted}");
    let snap = h.ok("/v1/collections/h/snapshots", json!({}));
    let listed = h.get("/v1/collections/h/snapshots");
    assert_eq!(listed.body["snapshots"][0]["name"], snap["name"]);
    let stats = h.get("/v1/stats");
    assert_eq!(stats.body["collections"][0]["live_docs"], N - 3);

    // Bad input: the one error body, the field named.
    let wrong_dim = json!({"documents": [{"id": "w", "vectors": vec![vec![1.0; 2]; mc]}]});
    let m = error(
        &h.post("/v1/collections/h/documents", wrong_dim),
        400,
        "invalid_argument",
    );
    assert!(m.contains("dim"), "{m}");
    let m = error(&h.get("/v1/collections/nope"), 404, "not_found");
    assert!(m.contains("nope"), "{m}");
    error(
        &h.post(
            "/v1/collections/nope/search",
            json!({"query": [[1.0]], "budget": [1, 1]}),
        ),
        404,
        "not_found",
    );
    let m = error(
        &h.post_raw("/v1/collections/h/documents", b"{\"documents\": ["),
        400,
        "invalid_argument",
    );
    assert!(m.contains("invalid JSON body"), "{m}");
    let bad_field = json!({"documents": [{"id": "a", "vectors": "nope"}]});
    let m = error(
        &h.post("/v1/collections/h/documents", bad_field),
        400,
        "invalid_argument",
    );
    assert!(m.contains("documents[0].vectors"), "{m}");
    let m = error(
        &h.post(
            "/v1/collections/h/search",
            json!({"query": [[1.0]], "budget": "4y8"}),
        ),
        400,
        "invalid_argument",
    );
    assert!(m.contains("budget"), "{m}");
    let m = error(
        &h.post("/v1/collections/h/documents/count", json!({"filtre": {}})),
        400,
        "invalid_argument",
    );
    assert!(m.contains("unknown field"), "{m}");
    let m = error(
        &h.post("/v1/collections/h/search", json!({"budget": [1, 1]})),
        400,
        "invalid_argument",
    );
    assert!(m.contains("query and query_id"), "{m}");
    let m = error(
        &h.post("/v1/collections/h/documents/delete", json!({})),
        400,
        "invalid_argument",
    );
    assert!(m.contains("ids and filter"), "{m}");
    let m = error(&h.get("/v1/nothing-here"), 404, "not_found");
    assert!(m.contains("no route"), "{m}");
    let m = error(&h.delete("/v1/stats"), 405, "invalid_argument");
    assert!(m.contains("is not allowed"), "{m}");

    // The OpenAPI document lists what is served; CORS is off by default; the console is there.
    let doc = h.get("/openapi.json");
    assert_eq!(doc.status, 200);
    let paths = doc.body["paths"].as_object().expect("paths");
    for p in [
        "/v1/collections",
        "/v1/collections/{name}",
        "/v1/collections/{name}/documents",
        "/v1/collections/{name}/documents/get",
        "/v1/collections/{name}/documents/delete",
        "/v1/collections/{name}/documents/scroll",
        "/v1/collections/{name}/documents/count",
        "/v1/collections/{name}/documents/payload",
        "/v1/collections/{name}/search",
        "/v1/collections/{name}/flush",
        "/v1/collections/{name}/compact",
        "/v1/collections/{name}/snapshots",
        "/v1/stats",
    ] {
        assert!(paths.contains_key(p), "openapi.json lacks {p}");
    }
    assert!(doc.body["components"]["schemas"]["ErrorBody"].is_object());
    let schemes = &doc.body["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["api_key"]["name"], "x-api-key", "{schemes}");
    let r = h.get("/v1/collections");
    assert!(r.headers.get("access-control-allow-origin").is_none());
    let page = agent()
        .get(format!("{}/", h.base))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(page.contains("metavec console"), "{page}");

    let r = h.delete("/v1/collections/h");
    assert_eq!(r.status, 200, "{}", r.body);
    error(&h.get("/v1/collections/h"), 404, "not_found");
    assert!(server.terminate());
}

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
