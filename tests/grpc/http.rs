//! The HTTP/JSON API (`--http-listen`) against the real binary with a real HTTP client: every
//! route once, vectors as nested arrays and as base64 f32 / bf16, searches equal to the gRPC
//! ones on the same data, the error body and its status codes for bad input, CORS off by
//! default and `/openapi.json`. Keys, CORS on, the body limit and the settings are in
//! `http_access.rs`, which shares the client here.

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
pub(crate) struct Http {
    pub agent: ureq::Agent,
    pub base: String,
    key: Option<(&'static str, String)>,
}

pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: http::HeaderMap,
}

impl Http {
    pub(crate) fn new(server: &Server) -> Http {
        Http {
            agent: agent(),
            base: format!(
                "http://{}",
                server.http_addr.as_ref().expect("http address")
            ),
            key: None,
        }
    }

    pub(crate) fn with_key(&self, header: &'static str, key: &str) -> Http {
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

    pub(crate) fn get(&self, path: &str) -> Reply {
        let mut r = self.agent.get(format!("{}{path}", self.base));
        if let Some((h, k)) = &self.key {
            r = r.header(*h, k);
        }
        Self::reply(r.call())
    }

    pub(crate) fn delete(&self, path: &str) -> Reply {
        let mut r = self.agent.delete(format!("{}{path}", self.base));
        if let Some((h, k)) = &self.key {
            r = r.header(*h, k);
        }
        Self::reply(r.call())
    }

    pub(crate) fn post_raw(&self, path: &str, body: &[u8]) -> Reply {
        let mut r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some((h, k)) = &self.key {
            r = r.header(*h, k);
        }
        Self::reply(r.send(body))
    }

    pub(crate) fn post(&self, path: &str, body: Value) -> Reply {
        self.post_raw(path, body.to_string().as_bytes())
    }

    /// `post` that must succeed.
    pub(crate) fn ok(&self, path: &str, body: Value) -> Value {
        let r = self.post(path, body);
        assert_eq!(r.status, 200, "POST {path}: {}", r.body);
        r.body
    }
}

/// The error body's code, checking the status and the schema's shape.
pub(crate) fn error(r: &Reply, status: u16, code: &str) -> String {
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
