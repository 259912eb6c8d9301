//! Payload filters over gRPC, every operator (`eq`, `in`, `range` with each bound, `and`, `or`,
//! `not`, dotted paths) against an oracle written here in plain Rust over the fields the test
//! generated (not `Filter::matches`). Exact search with k above the collection size returns
//! exactly the matching documents, from the segment and the memtable alike, through Search and
//! SearchBatch; an approximate search returns only matching documents.

use std::collections::BTreeSet;

use metavec_api::pb;
use serde_json::json;

use crate::support::*;

const DIM: u32 = 8;
const MC: u32 = 4;
const MQ: u32 = 2;
const N: usize = 240;

/// What the test put into a document's payload; `None` = the field is absent.
#[derive(Clone, Copy, Default)]
struct Fields {
    tag: Option<&'static str>,
    n: Option<i64>,
    x: Option<f64>,
    src: Option<&'static str>,
    level: Option<i64>,
    flag: Option<bool>,
}

/// Document `i`'s fields: one in 7 has no payload at all, one in 11 a payload without any of
/// the fields, the others a varying subset.
fn fields(i: usize) -> Option<Fields> {
    if i.is_multiple_of(7) {
        return None;
    }
    if i.is_multiple_of(11) {
        return Some(Fields::default());
    }
    Some(Fields {
        tag: Some(["a", "b", "c"][i % 3]),
        n: (i % 13 != 1).then_some((i % 40) as i64),
        x: (i % 5 != 2).then_some(i as f64 / 16.0),
        src: (i % 4 != 3).then_some(["web", "book"][i / 3 % 2]),
        level: (i % 6 != 5).then_some((i % 9) as i64),
        flag: i.is_multiple_of(2).then_some(i.is_multiple_of(4)),
    })
}

fn payload(f: &Option<Fields>) -> String {
    let Some(f) = f else {
        return String::new();
    };
    let mut p = serde_json::Map::new();
    p.insert("other".into(), json!(1));
    if let Some(t) = f.tag {
        p.insert("tag".into(), json!(t));
    }
    if let Some(n) = f.n {
        p.insert("n".into(), json!(n));
    }
    if let Some(x) = f.x {
        p.insert("x".into(), json!(x));
    }
    if let Some(b) = f.flag {
        p.insert("flag".into(), json!(b));
    }
    let mut meta = serde_json::Map::new();
    if let Some(s) = f.src {
        meta.insert("src".into(), json!(s));
    }
    if let Some(l) = f.level {
        meta.insert("depth".into(), json!({ "level": l }));
    }
    p.insert("meta".into(), meta.into());
    serde_json::Value::Object(p).to_string()
}

fn vecs(seed: u64, count: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..count * DIM as usize)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 2001) as f32 / 1000.0 - 1.0 + 1e-3
        })
        .collect()
}

type Pred = fn(&Fields) -> bool;
type Case = (&'static str, serde_json::Value, Pred);

fn case(what: &'static str, filter: serde_json::Value, pred: Pred) -> Case {
    (what, filter, pred)
}

/// Each filter with the oracle that says which documents it keeps. A document without a payload
/// or without the field matches no `eq` / `in` / `range`, and so matches their `not`.
fn cases() -> Vec<Case> {
    vec![
        case(
            "eq string",
            json!({"eq": {"field": "tag", "value": "a"}}),
            |f| f.tag == Some("a"),
        ),
        case(
            "eq integer",
            json!({"eq": {"field": "n", "value": 7}}),
            |f| f.n == Some(7),
        ),
        case(
            "eq bool",
            json!({"eq": {"field": "flag", "value": true}}),
            |f| f.flag == Some(true),
        ),
        case(
            "in strings",
            json!({"in": {"field": "tag", "values": ["a", "c"]}}),
            |f| matches!(f.tag, Some("a" | "c")),
        ),
        case(
            "in integers",
            json!({"in": {"field": "n", "values": [1, 2, 3, 39]}}),
            |f| matches!(f.n, Some(1 | 2 | 3 | 39)),
        ),
        case(
            "range gt",
            json!({"range": {"field": "n", "gt": 30}}),
            |f| f.n.is_some_and(|n| n > 30),
        ),
        case(
            "range gte",
            json!({"range": {"field": "n", "gte": 30}}),
            |f| f.n.is_some_and(|n| n >= 30),
        ),
        case(
            "range lt",
            json!({"range": {"field": "n", "lt": 10}}),
            |f| f.n.is_some_and(|n| n < 10),
        ),
        case(
            "range lte",
            json!({"range": {"field": "n", "lte": 10}}),
            |f| f.n.is_some_and(|n| n <= 10),
        ),
        case(
            "range gte and lt",
            json!({"range": {"field": "n", "gte": 10, "lt": 20}}),
            |f| f.n.is_some_and(|n| (10..20).contains(&n)),
        ),
        case(
            "range gt and lte on fractions",
            json!({"range": {"field": "x", "gt": 2.5, "lte": 9.0625}}),
            |f| f.x.is_some_and(|x| x > 2.5 && x <= 9.0625),
        ),
        case(
            "range on a string field",
            json!({"range": {"field": "tag", "gte": 0}}),
            |_| false,
        ),
        case(
            "eq dotted path",
            json!({"eq": {"field": "meta.src", "value": "book"}}),
            |f| f.src == Some("book"),
        ),
        case(
            "range two dots deep",
            json!({"range": {"field": "meta.depth.level", "lte": 3}}),
            |f| f.level.is_some_and(|l| l <= 3),
        ),
        case(
            "and",
            json!({"and": [
                {"eq": {"field": "tag", "value": "b"}},
                {"range": {"field": "n", "gte": 20}}
            ]}),
            |f| f.tag == Some("b") && f.n.is_some_and(|n| n >= 20),
        ),
        case(
            "or",
            json!({"or": [
                {"eq": {"field": "tag", "value": "c"}},
                {"eq": {"field": "meta.src", "value": "web"}}
            ]}),
            |f| f.tag == Some("c") || f.src == Some("web"),
        ),
        case(
            "not",
            json!({"not": {"eq": {"field": "tag", "value": "a"}}}),
            |f| f.tag != Some("a"),
        ),
        case(
            "not of a range: absent fields match",
            json!({"not": {"range": {"field": "meta.depth.level", "gt": 4}}}),
            |f| f.level.is_none_or(|l| l <= 4),
        ),
        case(
            "nested",
            json!({"and": [
                {"or": [
                    {"in": {"field": "tag", "values": ["a", "b"]}},
                    {"eq": {"field": "flag", "value": false}}
                ]},
                {"not": {"and": [
                    {"eq": {"field": "meta.src", "value": "web"}},
                    {"range": {"field": "x", "lt": 5}}
                ]}}
            ]}),
            |f| {
                (matches!(f.tag, Some("a" | "b")) || f.flag == Some(false))
                    && !(f.src == Some("web") && f.x.is_some_and(|x| x < 5.0))
            },
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_operator_keeps_exactly_the_matching_documents() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.clients().await;
    c.collections
        .create_collection(create_req("f", DIM, MC, MQ))
        .await
        .unwrap();
    let all: Vec<Option<Fields>> = (0..N).map(fields).collect();
    let doc = |i: usize| pb::Document {
        id: format!("d{i:03}"),
        vectors: Some(vectors(MC, DIM, vecs(i as u64, MC as usize))),
        payload: payload(&all[i]),
    };
    // Two thirds in a segment, the rest in the memtable.
    let seg = pb::UpsertRequest {
        collection: "f".into(),
        documents: (0..N * 2 / 3).map(doc).collect(),
    };
    upsert(&mut c, vec![seg]).await.unwrap();
    c.admin
        .flush(pb::FlushRequest {
            collection: "f".into(),
        })
        .await
        .unwrap();
    let mem = pb::UpsertRequest {
        collection: "f".into(),
        documents: (N * 2 / 3..N).map(doc).collect(),
    };
    upsert(&mut c, vec![mem]).await.unwrap();

    let queries: Vec<pb::Vectors> = (0..2)
        .map(|q| vectors(MQ, DIM, vecs(10_000 + q, MQ as usize)))
        .collect();
    for (what, filter, pred) in cases() {
        let want: BTreeSet<String> = (0..N)
            .filter(|&i| pred(&all[i].unwrap_or_default()))
            .map(|i| format!("d{i:03}"))
            .collect();
        let filter = filter.to_string();
        // Exact, k above the collection size: exactly the matching documents.
        let mut req = search_req("f", queries[0].clone(), 2, 4, N as u32 + 10);
        req.exact = true;
        req.with_payload = true;
        req.filter = filter.clone();
        let res = c.search.search(req.clone()).await.unwrap().into_inner();
        let got: BTreeSet<String> = res.hits.iter().map(|h| h.id.clone()).collect();
        assert_eq!(res.hits.len(), got.len(), "{what}: duplicate hits");
        assert_eq!(got, want, "{what}: {filter}");
        for h in &res.hits {
            let i: usize = h.id[1..].parse().unwrap();
            assert_eq!(h.payload, payload(&all[i]), "{what}: payload of {}", h.id);
        }
        // The same through SearchBatch, per query.
        let batch = c
            .search
            .search_batch(pb::SearchBatchRequest {
                collection: "f".into(),
                queries: queries.clone(),
                budget: Some(pb::Budget { r_q: 2, r_c: 4 }),
                k: N as u32 + 10,
                exact: true,
                filter: filter.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(batch.results.len(), 2, "{what}");
        for r in &batch.results {
            let got: BTreeSet<String> = r.hits.iter().map(|h| h.id.clone()).collect();
            assert_eq!((r.hits.len(), &got), (want.len(), &want), "{what}: batch");
        }
        // Approximate, k = 10: only matching documents, and some when any match.
        req.exact = false;
        req.k = 10;
        let res = c.search.search(req).await.unwrap().into_inner();
        assert!(res.hits.len() <= 10, "{what}");
        assert_eq!(res.hits.is_empty(), want.is_empty(), "{what}: approximate");
        for h in &res.hits {
            assert!(want.contains(&h.id), "{what}: {} does not match", h.id);
        }
    }
}
