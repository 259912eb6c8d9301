//! The CLI against a running server, each answer checked by an oracle of the test's own (issue
//! 16, "tests that cannot be silent"): every payload filter operator against plain Rust over the
//! payloads the test wrote (not `Filter::matches`); auto budget (`--latency-target-us`) reports
//! trained budgets, climbing the ladder as it measures; f16 storage answers exact searches with
//! MaxSim over the stored values.

use std::collections::BTreeMap;
use std::path::Path;

use metavec_core::score::maxsim_reference;
use metavec_core::synth::{generate, SynthSpec};

use crate::cli::{hits, metavec, ok};
use crate::cli_npy::write_npy;
use crate::support::*;

const DIM: usize = 16;

fn create(addr: &str, name: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "--json",
        "collections",
        "create",
        name,
        "--dim",
        "16",
        "--doc-vectors",
        "8",
        "--query-vectors",
        "4",
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(ok(metavec(addr, &args)).trim()).unwrap()
}

fn load(addr: &str, name: &str, npy: &Path, more: &[&str]) {
    let mut args = vec!["load", "--collection", name, "--npy", npy.to_str().unwrap()];
    args.extend_from_slice(more);
    ok(metavec(addr, &args));
}

/// The `--json search` lines of one CLI run.
fn search_json(addr: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["--json", "search"];
    all.extend_from_slice(args);
    ok(metavec(addr, &all))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What the test wrote as a document's payload (`None`: no payload at all).
#[derive(Debug, Clone)]
struct Payload {
    tag: &'static str,
    n: f64,
    /// `meta.year` and `meta.src`; the whole `meta` object is absent when `None`.
    meta: Option<(i64, &'static str)>,
}

fn payload(i: usize) -> Option<Payload> {
    (!i.is_multiple_of(23)).then(|| Payload {
        tag: ["a", "b", "c"][(i / 2) % 3],
        // Quarter steps over 0..=10, so 5.0 itself occurs (the gt/gte and lt/lte edges differ).
        n: ((i * 37) % 41) as f64 / 4.0,
        meta: (!i.is_multiple_of(5)).then(|| {
            (
                1990 + ((i * 11) % 31) as i64,
                if i.is_multiple_of(3) { "x" } else { "y" },
            )
        }),
    })
}

fn payload_json(p: &Option<Payload>) -> String {
    let Some(p) = p else {
        return String::new();
    };
    let mut v = serde_json::json!({"tag": p.tag, "n": p.n});
    if let Some((year, src)) = p.meta {
        v["meta"] = serde_json::json!({"year": year, "src": src});
    }
    v.to_string()
}

type Oracle = fn(Option<&Payload>) -> bool;

/// Each operator, as the CLI's `--filter` JSON and as plain Rust over the written payloads.
fn cases() -> Vec<(&'static str, Oracle)> {
    vec![
        (r#"{"eq": {"field": "tag", "value": "a"}}"#, |p| {
            p.is_some_and(|p| p.tag == "a")
        }),
        (r#"{"in": {"field": "tag", "values": ["a", "c"]}}"#, |p| {
            p.is_some_and(|p| p.tag == "a" || p.tag == "c")
        }),
        (r#"{"range": {"field": "n", "gt": 5}}"#, |p| {
            p.is_some_and(|p| p.n > 5.0)
        }),
        (r#"{"range": {"field": "n", "gte": 5}}"#, |p| {
            p.is_some_and(|p| p.n >= 5.0)
        }),
        (r#"{"range": {"field": "n", "lt": 5}}"#, |p| {
            p.is_some_and(|p| p.n < 5.0)
        }),
        (r#"{"range": {"field": "n", "lte": 5}}"#, |p| {
            p.is_some_and(|p| p.n <= 5.0)
        }),
        (
            r#"{"range": {"field": "n", "gte": 2.5, "lt": 7.25}}"#,
            |p| p.is_some_and(|p| p.n >= 2.5 && p.n < 7.25),
        ),
        (r#"{"eq": {"field": "meta.src", "value": "x"}}"#, |p| {
            p.and_then(|p| p.meta).is_some_and(|(_, src)| src == "x")
        }),
        (r#"{"range": {"field": "meta.year", "gte": 2005}}"#, |p| {
            p.and_then(|p| p.meta).is_some_and(|(year, _)| year >= 2005)
        }),
        (
            r#"{"and": [{"eq": {"field": "tag", "value": "b"}}, {"range": {"field": "n", "lte": 6}}]}"#,
            |p| p.is_some_and(|p| p.tag == "b" && p.n <= 6.0),
        ),
        (
            r#"{"or": [{"eq": {"field": "tag", "value": "c"}}, {"eq": {"field": "meta.src", "value": "x"}}]}"#,
            |p| p.is_some_and(|p| p.tag == "c" || p.meta.is_some_and(|(_, s)| s == "x")),
        ),
        (r#"{"not": {"eq": {"field": "tag", "value": "a"}}}"#, |p| {
            p.is_none_or(|p| p.tag != "a")
        }),
        (
            r#"{"not": {"range": {"field": "meta.year", "lt": 2000}}}"#,
            |p| p.and_then(|p| p.meta).is_none_or(|(year, _)| year >= 2000),
        ),
        (
            r#"{"and": [{"or": [{"in": {"field": "tag", "values": ["b"]}}, {"range": {"field": "meta.year", "gt": 2010}}]}, {"not": {"range": {"field": "n", "gt": 8}}}]}"#,
            |p| {
                p.is_some_and(|p| {
                    (p.tag == "b" || p.meta.is_some_and(|(y, _)| y > 2010)) && p.n <= 8.0
                })
            },
        ),
    ]
}

#[test]
fn cli_filters_match_an_independent_oracle() {
    const N: usize = 300;
    const SEALED: usize = 200;
    let tmp = tempfile::tempdir().unwrap();
    let data = generate(&SynthSpec::new(N, 2, DIM, &[(1, 1), (2, 4), (4, 8)], 11));
    let payloads: Vec<Option<Payload>> = (0..N).map(payload).collect();
    // Rows 0..200 go to a segment, 200..300 stay in the memtable: the filter must hold in both.
    let p = |name: &str| tmp.path().join(name);
    let d = 8 * DIM;
    write_npy(
        &p("a.npy"),
        &[SEALED, 8, DIM],
        &data.docs[..SEALED * d],
        false,
    );
    write_npy(
        &p("b.npy"),
        &[N - SEALED, 8, DIM],
        &data.docs[SEALED * d..],
        false,
    );
    write_npy(&p("q.npy"), &[2, 4, DIM], &data.queries, false);
    let lines = |rows: std::ops::Range<usize>, f: &dyn Fn(usize) -> String| {
        rows.map(|i| f(i) + "\n").collect::<String>()
    };
    std::fs::write(
        p("a.jsonl"),
        lines(0..SEALED, &|i| payload_json(&payloads[i])),
    )
    .unwrap();
    std::fs::write(
        p("b.jsonl"),
        lines(SEALED..N, &|i| payload_json(&payloads[i])),
    )
    .unwrap();
    std::fs::write(p("b.ids"), lines(SEALED..N, &|i| i.to_string())).unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    let a = server.addr.as_str();
    create(a, "docs", &[]);
    load(
        a,
        "docs",
        &p("a.npy"),
        &["--payload", p("a.jsonl").to_str().unwrap()],
    );
    ok(metavec(a, &["flush", "docs"]));
    load(
        a,
        "docs",
        &p("b.npy"),
        &[
            "--payload",
            p("b.jsonl").to_str().unwrap(),
            "--ids",
            p("b.ids").to_str().unwrap(),
        ],
    );
    let q = p("q.npy");
    let q = q.to_str().unwrap();
    let n = N.to_string();
    let search = |filter: Option<&str>, exact: bool, k: &str| {
        let mut args = vec![
            "search",
            "--collection",
            "docs",
            "--npy",
            q,
            "--budget",
            "2x4",
            "-k",
            k,
        ];
        if exact {
            args.push("--exact");
        }
        if let Some(f) = filter {
            args.extend(["--filter", f]);
        }
        args.insert(0, "--json");
        hits(&ok(metavec(a, &args)))
    };
    // The whole collection ranked: a filtered exact search is this ranking cut to the matches.
    let all = search(None, true, &n);
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|h| h.len() == N), "every document ranked");
    for (filter, oracle) in cases() {
        let matches = |id: &str| oracle(payloads[id.parse::<usize>().unwrap()].as_ref());
        let count = (0..N).filter(|&i| oracle(payloads[i].as_ref())).count();
        assert!(0 < count && count < N, "{filter} selects {count} of {N}");
        let exact = search(Some(filter), true, &n);
        for (got, ranked) in exact.iter().zip(&all) {
            let want: Vec<_> = ranked.iter().filter(|h| matches(&h.0)).cloned().collect();
            assert_eq!(want.len(), count);
            assert_eq!(got, &want, "{filter}");
        }
        let approx = search(Some(filter), false, "10");
        for got in &approx {
            assert_eq!(got.len(), 10, "{filter}");
            assert!(got.iter().all(|h| matches(&h.0)), "{filter}: {got:?}");
        }
    }
}

#[test]
fn cli_auto_budget_reports_trained_budgets() {
    const N: usize = 200;
    let tmp = tempfile::tempdir().unwrap();
    let data = generate(&SynthSpec::new(N, 5, DIM, &[(1, 1), (2, 4), (4, 8)], 13));
    let (docs, q) = (tmp.path().join("d.npy"), tmp.path().join("q.npy"));
    write_npy(&docs, &[N, 8, DIM], &data.docs, false);
    write_npy(&q, &[5, 4, DIM], &data.queries, false);
    let server = Server::start(&tmp.path().join("data"), &[]);
    let a = server.addr.as_str();
    let info = create(a, "docs", &["--budgets", "1x1,2x4,4x8"]);
    let trained: Vec<&str> = info["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    assert_eq!(trained, ["1x1", "2x4", "4x8"]);
    load(a, "docs", &docs, &[]);
    let q = q.to_str().unwrap();
    // A target no search misses (a minute): each query runs the next budget not measured yet,
    // then stays at the largest.
    let auto = search_json(
        a,
        &[
            "--collection",
            "docs",
            "--npy",
            q,
            "--latency-target-us",
            "60000000",
        ],
    );
    let used: Vec<&str> = auto.iter().map(|l| l["budget"].as_str().unwrap()).collect();
    assert_eq!(used, ["1x1", "2x4", "4x8", "4x8", "4x8"]);
    // Each answer is the plain search at the budget it reports.
    for b in trained {
        let plain = search_json(a, &["--collection", "docs", "--npy", q, "--budget", b]);
        for (i, line) in auto.iter().enumerate().filter(|(_, l)| l["budget"] == b) {
            assert_eq!(plain[i]["budget"], b);
            assert_eq!(line["hits"], plain[i]["hits"], "query {i} at {b}");
            assert_eq!(line["hits"].as_array().unwrap().len(), 10);
        }
    }
    // Neither a budget nor a target: refused before anything is sent.
    let out = metavec(a, &["search", "--collection", "docs", "--npy", q]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--budget"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_f16_storage_exact_search_is_maxsim_over_stored_values() {
    const N: usize = 250;
    let tmp = tempfile::tempdir().unwrap();
    let data = generate(&SynthSpec::new(N, 4, DIM, &[(1, 1), (2, 4), (4, 8)], 17));
    let (docs, q) = (tmp.path().join("d.npy"), tmp.path().join("q.npy"));
    write_npy(&docs, &[N, 8, DIM], &data.docs, false);
    write_npy(&q, &[4, 4, DIM], &data.queries, false);
    let server = Server::start(&tmp.path().join("data"), &[]);
    let a = server.addr.as_str();
    assert_eq!(create(a, "h", &["--dtype", "f16"])["dtype"], "f16");
    assert_eq!(create(a, "f", &["--dtype", "f32"])["dtype"], "f32");
    assert_eq!(create(a, "default", &[])["dtype"], "bf16");
    for name in ["h", "f"] {
        load(a, name, &docs, &[]);
        ok(metavec(a, &["flush", name]));
    }
    let mut c = server.clients().await;
    let ids: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    let half = stored(&mut c, "h", ids.clone()).await;
    let full = stored(&mut c, "f", ids).await;
    assert_eq!(half.len(), N);
    // Vector 0 stays f32; the rest is rounded to f16 (half an ulp below 1 is 2^-12).
    for (id, (v, _)) in &half {
        let f = &full[id].0;
        assert_eq!(v[..DIM], f[..DIM], "{id}: vector 0");
        let worst = v
            .iter()
            .zip(f)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst > 0.0 && worst <= 2.5e-4, "{id}: off by {worst}");
    }
    let answers = hits(&ok(metavec(
        a,
        &[
            "--json",
            "search",
            "--collection",
            "h",
            "--npy",
            q.to_str().unwrap(),
            "--budget",
            "4x8",
            "-k",
            "250",
            "--exact",
        ],
    )));
    assert_eq!(answers.len(), 4);
    for (qi, got) in answers.iter().enumerate() {
        let mut qn = data.query(qi).to_vec();
        metavec_core::document::normalize_rows(&mut qn, DIM, "q").unwrap();
        let oracle: BTreeMap<&String, f32> = half
            .iter()
            .map(|(id, (v, _))| (id, maxsim_reference(&qn, 4, v, 8, DIM)))
            .collect();
        let mut ranked: Vec<(&String, f32)> = oracle.iter().map(|(i, s)| (*i, *s)).collect();
        ranked.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(y.0)));
        assert_eq!(got.len(), N, "query {qi}: every document");
        for ((id, score), (_, want)) in got.iter().zip(&ranked) {
            let own = f64::from(oracle[id]);
            assert!(
                (score - own).abs() < 1e-4,
                "query {qi} {id}: {score} vs {own}"
            );
            assert!(
                (score - f64::from(*want)).abs() < 1e-4,
                "query {qi}: rank order"
            );
        }
    }
}
