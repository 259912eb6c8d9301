//! Compatibility: data directories written by earlier versions of the on-disk format (checked in
//! under `tests/fixtures/<format>/`) open and answer searches with the results recorded when they
//! were written.
//!
//! Each fixture holds `data/` (a whole data directory as the engine laid it out: sled catalogue,
//! manifest, segments, HNSW graphs, WAL) and `expected.json` (exact-search results, documents and
//! counts the writing engine gave). A fixture is written once, by [`write_fixture`] (an ignored
//! test) on the version it records, and never rewritten: every later format change adds its own.
//! See docs/FORMAT.md, "Compatibility fixtures".

use std::path::{Path, PathBuf};

use metavec_core::synth::{generate, SynthSpec};
use metavec_core::{Budget, CollectionConfig, Document, Dtype, Engine, SearchRequest};
use serde::{Deserialize, Serialize};

use crate::support::{engine_with, files_under};

/// The fixture today's engine writes ([`write_fixture`]): bump it with every format change.
const CURRENT: &str = "format-1.1-graph-1";

/// Every fixture checked in, oldest first. Each must open with today's engine.
const FIXTURES: &[&str] = &[
    "format-1.1-catalog-1",
    "format-1.1-catalog-2",
    "format-1.1-tokens-1",
    "format-1.1-graph-1",
];

/// Fixtures written before the token index (their segments have none until compacted).
const BEFORE_TOKENS: &[&str] = &["format-1.1-catalog-1", "format-1.1-catalog-2"];

/// Fixtures whose segments carry hnsw_rs's dumps (`.hnsw.graph`, `.hnsw.data`) instead of the
/// `.hnsw` graph file.
const BEFORE_GRAPH: &[&str] = &[
    "format-1.1-catalog-1",
    "format-1.1-catalog-2",
    "format-1.1-tokens-1",
];

const DIM: u32 = 8;
const MC: u32 = 4;
const MQ: u32 = 2;
const DOCS: usize = 50;
const QUERIES: usize = 4;
const K: u32 = 10;

#[derive(Debug, Serialize, Deserialize)]
struct Expected {
    /// The engine and layout that wrote the fixture.
    written_by: String,
    collections: Vec<ExpectedCollection>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ExpectedCollection {
    name: String,
    config: CollectionConfig,
    live_docs: u64,
    segments: usize,
    memtable_docs: u64,
    searches: Vec<ExpectedSearch>,
    gets: Vec<ExpectedGet>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ExpectedSearch {
    budget: Budget,
    query: Vec<f32>,
    /// Exact search, top K: (id, score).
    hits: Vec<(String, f32)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ExpectedGet {
    id: String,
    /// `None`: the id is absent (deleted).
    doc: Option<(Vec<f32>, Option<String>)>,
}

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn payload(i: usize) -> String {
    format!(
        r#"{{"tag":"{}","n":{i}}}"#,
        if i.is_multiple_of(3) { "a" } else { "b" }
    )
}

/// Two collections (f32, and int8 for the 1.1 dtypes), each with two flushed segments (the
/// second commit carrying tombstones of the first), and a WAL tail of upserts, an overwrite and
/// a delete that no segment holds yet.
fn populate(engine: &Engine) -> Vec<ExpectedCollection> {
    let mut out = Vec::new();
    for (name, dtype, seed) in [("docs", Dtype::F32, 11), ("docs_int8", Dtype::Int8, 12)] {
        let mut cfg = CollectionConfig::new(DIM, MC, MQ);
        cfg.dtype = dtype;
        let budgets: Vec<(u32, u32)> = cfg.budgets.iter().map(|b| (b.r_q, b.r_c)).collect();
        let data = generate(&SynthSpec::new(
            DOCS + 1,
            QUERIES,
            DIM as usize,
            &budgets,
            seed,
        ));
        let doc = |i: usize| {
            Document::new(format!("d{i}"), data.doc(i).to_vec()).with_payload(payload(i))
        };
        let coll = engine.create_collection(name, cfg.clone()).unwrap();
        coll.upsert((0..30).map(doc).collect()).unwrap();
        coll.flush().unwrap();
        coll.upsert((30..40).map(doc).collect()).unwrap();
        coll.delete(&["d1".into(), "d2".into()]).unwrap();
        coll.flush().unwrap();
        coll.upsert((40..DOCS).map(doc).collect()).unwrap();
        // Overwrite d5 with new vectors, delete d3: both only in the WAL.
        let new5 = Document::new("d5", data.doc(DOCS).to_vec()).with_payload(payload(5));
        coll.upsert(vec![new5]).unwrap();
        coll.delete(&["d3".into()]).unwrap();
        out.push(record(engine, name, &data.queries));
    }
    out
}

/// What the fixture's engine answers, recorded at generation time (and compared at open).
fn record(engine: &Engine, name: &str, queries: &[f32]) -> ExpectedCollection {
    let coll = engine.collection(name).unwrap();
    let cfg = coll.config().clone();
    let qlen = (MQ * DIM) as usize;
    let mut searches = Vec::new();
    for q in queries.chunks_exact(qlen) {
        for b in &cfg.budgets {
            let query = q[..(b.r_q * DIM) as usize].to_vec();
            let res = coll
                .search(&SearchRequest::new(query.clone(), *b, K).exact())
                .unwrap();
            searches.push(ExpectedSearch {
                budget: *b,
                query,
                hits: res.hits.into_iter().map(|h| (h.id, h.score)).collect(),
            });
        }
    }
    let ids: Vec<String> = ["d0", "d1", "d3", "d5", "d35", "d49"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let gets = coll
        .get(&ids)
        .unwrap()
        .into_iter()
        .zip(ids)
        .map(|(d, id)| ExpectedGet {
            id,
            doc: d.map(|d| (d.vectors, d.payload)),
        })
        .collect();
    let info = coll.info();
    ExpectedCollection {
        name: name.to_string(),
        config: cfg,
        live_docs: info.live_docs,
        segments: info.segments.len(),
        memtable_docs: info.memtable_docs,
        searches,
        gets,
    }
}

/// Writes `tests/fixtures/CURRENT/` with today's engine. Run once per format change, on the
/// version being recorded; never over an existing fixture:
/// `cargo test --release --workspace --test integration compat::write_fixture -- --ignored`
#[test]
#[ignore = "writes a compatibility fixture; run by hand at a format change"]
fn write_fixture() {
    let dir = fixture_dir(CURRENT);
    assert!(
        !dir.exists(),
        "{} exists: fixtures are never rewritten; add a new one",
        dir.display()
    );
    let data = dir.join("data");
    let engine = engine_with(&data, 64 << 20);
    let collections = populate(&engine);
    drop(engine);
    let expected = Expected {
        written_by: format!("metavec-core {} ({CURRENT})", env!("CARGO_PKG_VERSION")),
        collections,
    };
    std::fs::write(
        dir.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap(),
    )
    .unwrap();
}

fn check_against(engine: &Engine, want: &ExpectedCollection, fixture: &str) {
    let what = format!("{fixture}/{}", want.name);
    let coll = engine.collection(&want.name).unwrap();
    assert_eq!(coll.config(), &want.config, "{what}");
    coll.verify().unwrap();
    let info = coll.info();
    assert_eq!(info.live_docs, want.live_docs, "{what}");
    for s in &want.searches {
        let req = SearchRequest::new(s.query.clone(), s.budget, K);
        let exact = coll.search(&req.clone().exact()).unwrap();
        assert_eq!(exact.hits.len(), s.hits.len(), "{what} {}", s.budget);
        for (got, (id, score)) in exact.hits.iter().zip(&s.hits) {
            assert_eq!(&got.id, id, "{what} {}", s.budget);
            assert!(
                (got.score - score).abs() <= 1e-5,
                "{what} {}: {id} scores {} now, {score} when written",
                s.budget,
                got.score
            );
        }
        // The graph files load and the approximate path finds the same documents.
        let approx = coll.search(&req).unwrap();
        let ids: Vec<&String> = approx.hits.iter().map(|h| &h.id).collect();
        let want_ids: Vec<&String> = s.hits.iter().map(|(id, _)| id).collect();
        assert_eq!(ids, want_ids, "{what} {} approximate", s.budget);
    }
    let ids: Vec<String> = want.gets.iter().map(|g| g.id.clone()).collect();
    for (got, want) in coll.get(&ids).unwrap().into_iter().zip(&want.gets) {
        let got = got.map(|d| (d.vectors, d.payload));
        assert_eq!(got, want.doc, "{what} get {}", want.id);
    }
}

/// The exact hits of every recorded search, and the recorded gets, as `engine` answers now.
#[allow(clippy::type_complexity)]
fn answers(
    engine: &Engine,
    want: &ExpectedCollection,
) -> (Vec<Vec<(String, f32)>>, Vec<Option<Document>>) {
    let coll = engine.collection(&want.name).unwrap();
    let hits = want
        .searches
        .iter()
        .map(|s| {
            let req = SearchRequest::new(s.query.clone(), s.budget, K).exact();
            let res = coll.search(&req).unwrap();
            res.hits.into_iter().map(|h| (h.id, h.score)).collect()
        })
        .collect();
    let ids: Vec<String> = want.gets.iter().map(|g| g.id.clone()).collect();
    (hits, coll.get(&ids).unwrap())
}

#[test]
fn every_fixture_opens_and_answers_as_when_it_was_written() {
    for &name in FIXTURES {
        let src = fixture_dir(name);
        let expected: Expected =
            serde_json::from_slice(&std::fs::read(src.join("expected.json")).unwrap()).unwrap();
        // Opening recovers (replays and rotates the WAL): work on a copy.
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        copy_tree(&src.join("data"), &data);
        let engine = engine_with(&data, 64 << 20);
        for want in &expected.collections {
            let coll = engine.collection(&want.name).unwrap();
            let info = coll.info();
            assert_eq!(
                (info.segments.len(), info.memtable_docs),
                (want.segments, want.memtable_docs),
                "{name}/{}: the segments and the WAL tail as written",
                want.name
            );
            check_against(&engine, want, name);
        }
        // Segments from before the token index have none; today's engine searches them through
        // vector 0 and writes one when it rewrites them.
        let tok_files = || {
            files_under(&data)
                .into_iter()
                .filter(|p| p.to_string_lossy().ends_with(".tok"))
                .count()
        };
        if BEFORE_TOKENS.contains(&name) {
            assert_eq!(tok_files(), 0, "{name}: no token index before compaction");
        } else {
            assert!(tok_files() > 0, "{name}: written with token indexes");
        }
        // Graphs: hnsw_rs dumps in the older fixtures, `.hnsw` files after.
        let ending = |suffix: &str| {
            files_under(&data)
                .into_iter()
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .count()
        };
        if BEFORE_GRAPH.contains(&name) {
            assert!(ending(".hnsw.graph") > 0 && ending(".hnsw") == 0, "{name}");
        } else {
            assert!(ending(".hnsw.graph") == 0 && ending(".hnsw") > 0, "{name}");
        }
        // Today's engine writes on top of the old files: flush the WAL tail, merge, reopen. The
        // answers survive the reopen; with f32 they are still the recorded ones (sealing is
        // lossless there, while int8 quantizes the documents it seals).
        let mut sealed = Vec::new();
        for want in &expected.collections {
            let coll = engine.collection(&want.name).unwrap();
            coll.flush().unwrap();
            coll.compact().unwrap();
            sealed.push(answers(&engine, want));
        }
        assert_eq!(
            tok_files(),
            expected.collections.len(),
            "{name}: compaction wrote one token index per collection"
        );
        assert_eq!(
            (
                ending(".hnsw"),
                ending(".hnsw.graph") + ending(".hnsw.data")
            ),
            (expected.collections.len(), 0),
            "{name}: compaction wrote one graph file per collection and no dump"
        );
        drop(engine);
        let engine = engine_with(&data, 64 << 20);
        for (want, sealed) in expected.collections.iter().zip(sealed) {
            assert_eq!(
                engine.collection(&want.name).unwrap().info().segments.len(),
                1
            );
            assert_eq!(answers(&engine, want), sealed, "{name}/{}", want.name);
            if want.config.dtype == Dtype::F32 {
                check_against(&engine, want, name);
            }
        }
    }
}
