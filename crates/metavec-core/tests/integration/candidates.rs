//! Candidates that follow the budget (issue #15): on the hard profile, where documents of one
//! topic nearly coincide at vector 0 and only deeper vectors tell them apart, a deep budget must
//! find its own top 10 — which vector-0 candidates cannot.

use metavec_core::config::CandidateIndex;
use metavec_core::synth::{generate, SynthData, SynthSpec};
use metavec_core::{Budget, CollectionConfig, Document, SearchRequest};

use crate::support::{engine_with, files_under, ladder, recall};

const DOCS: usize = 12_000;
const QUERIES: usize = 20;

fn ids(res: &metavec_core::SearchResponse) -> Vec<String> {
    res.hits.iter().map(|h| h.id.clone()).collect()
}

/// Mean recall@10 at `b` against the exact scan, with `tune` applied to each request (and to
/// the exact one, so a filter applies to both).
fn mean_recall(
    coll: &metavec_core::Collection,
    data: &SynthData,
    b: Budget,
    tune: impl Fn(&mut SearchRequest),
) -> f64 {
    (0..QUERIES)
        .map(|qi| {
            let q = data.query(qi).to_vec();
            let mut req = SearchRequest::new(q, b, 10);
            tune(&mut req);
            let truth = ids(&coll.search(&req.clone().exact()).unwrap());
            recall(&ids(&coll.search(&req).unwrap()), &truth)
        })
        .sum::<f64>()
        / QUERIES as f64
}

fn load_hard(coll: &metavec_core::Collection, data: &SynthData, range: std::ops::Range<usize>) {
    for chunk in range.collect::<Vec<_>>().chunks(1000) {
        let docs = chunk
            .iter()
            .map(|&i| {
                Document::new(SynthData::id(i), data.doc(i).to_vec())
                    .with_payload(format!(r#"{{"half":{}}}"#, i % 2))
            })
            .collect();
        coll.upsert(docs).unwrap();
    }
}

/// The seeded check the issue asks for: with the token index every trained budget reaches 0.95
/// recall@10 against the exact scan; on the same data vector-0 candidates reach less than 0.8 at
/// (8,16), so this test cannot pass on vector-0 candidates alone.
#[test]
fn deep_budgets_find_their_own_top_10_where_vector_0_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 1 << 30);
    let cfg = CollectionConfig::new(32, 16, 8);
    let coll = engine.create_collection("hard", cfg.clone()).unwrap();
    let data = generate(&SynthSpec::hard(DOCS, QUERIES, 32, &ladder(&cfg), 11));
    load_hard(&coll, &data, 0..DOCS - 500);
    coll.flush().unwrap();
    // The last 500 stay in the memtable: they are candidates too.
    load_hard(&coll, &data, DOCS - 500..DOCS);
    for &b in &cfg.budgets {
        let tokens = mean_recall(&coll, &data, b, |_| {});
        let v0 = mean_recall(&coll, &data, b, |r| {
            r.candidate_index = Some(CandidateIndex::Vector0)
        });
        eprintln!("{b}: tokens {tokens:.3} vector0 {v0:.3}");
        assert!(tokens >= 0.95, "{b}: recall {tokens} with the token index");
        if b == Budget::new(8, 16) {
            assert!(
                v0 < 0.8,
                "{b}: vector-0 candidates reach {v0}: the profile is not hard"
            );
        }
    }
    // A deep budget's candidates come from the token index, ranked by approximate score, and
    // meet the rerank progressively: the 500 memtable documents and the best PROGRESSIVE_FIRST
    // first, then batches while they may still reach the top 10. Each is scored at a quarter of
    // the document rows, (8,4), and only those whose partial score may reach the top 10 are
    // extended to (8,16): two stages.
    let deep = Budget::new(8, 16);
    let res = coll
        .search(&SearchRequest::new(data.query(0).to_vec(), deep, 10))
        .unwrap();
    let first = metavec_core::search::PROGRESSIVE_FIRST as u64 + 500;
    let stages = &res.stats.stages;
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert_eq!(stages[0].budget, Budget::new(8, 4));
    assert_eq!(stages[1].budget, deep);
    let scored = stages[0].scored;
    assert!(
        scored >= first && scored <= res.stats.candidates,
        "scored {scored} of {} candidates",
        res.stats.candidates
    );
    assert_eq!(res.stats.docs_scored, scored);
    // At least the first 32 are extended, and (on this profile) far from all.
    assert_eq!(stages[0].kept, stages[1].scored);
    assert!(
        stages[1].scored >= 32 && stages[1].scored < scored / 2,
        "extended {} of {scored}",
        stages[1].scored
    );
    assert_eq!(stages[1].dot_products, stages[1].scored * (8 * 16 - 8 * 4));
    assert_eq!(res.hits.len(), 10);
    // Many token-index candidates first meet an implicit exact stage at the index's depth.
    let mut req = SearchRequest::new(data.query(0).to_vec(), deep, 10);
    req.candidates = Some(1200);
    let res = coll.search(&req).unwrap();
    assert_eq!(res.stats.candidates, 1200 + 500);
    assert_eq!(res.stats.stages[0].budget, Budget::new(4, 8));
    assert_eq!(
        res.stats.stages[1].scored,
        metavec_core::search::DEFAULT_STAGE_KEEP as u64
    );

    // Filters and tombstones hold on the token path: every hit matches, deleted documents never
    // come back, and recall against the filtered exact scan stays.
    let filter =
        metavec_core::search::Filter::parse(r#"{"eq":{"field":"half","value":1}}"#).unwrap();
    let b = Budget::new(4, 8);
    let exact0 = coll
        .search(&SearchRequest::new(data.query(0).to_vec(), b, 3).exact())
        .unwrap();
    let gone: Vec<String> = exact0.hits.iter().map(|h| h.id.clone()).collect();
    coll.delete(&gone).unwrap();
    let filtered = mean_recall(&coll, &data, b, |r| r.filter = Some(filter.clone()));
    assert!(filtered >= 0.95, "filtered recall {filtered}");
    for qi in 0..QUERIES {
        let mut req = SearchRequest::new(data.query(qi).to_vec(), b, 10);
        req.filter = Some(filter.clone());
        req.with_payload = true;
        for h in coll.search(&req).unwrap().hits {
            assert_eq!(h.payload.as_deref(), Some(r#"{"half":1}"#), "{}", h.id);
            assert!(!gone.contains(&h.id), "deleted {} came back", h.id);
        }
    }
    let res = coll
        .search(&SearchRequest::new(data.query(0).to_vec(), b, 10))
        .unwrap();
    assert!(res.hits.iter().all(|h| !gone.contains(&h.id)));
}

/// A vector-0 collection builds no token index and serves deep budgets from vector 0 (files
/// from before the token index are covered by `compat`). Shrinking a collection below the
/// indexed depth keeps every remaining budget working.
#[test]
fn vector0_collections_build_no_token_index_and_shrinking_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 1 << 30);
    let mut cfg = CollectionConfig::new(32, 16, 8);
    cfg.candidates.index = CandidateIndex::Vector0;
    let coll = engine.create_collection("legacy", cfg.clone()).unwrap();
    let data = generate(&SynthSpec::hard(4_000, 4, 32, &ladder(&cfg), 5));
    load_hard(&coll, &data, 0..4_000);
    coll.flush().unwrap();
    let seg_files = |suffix: &str| -> usize {
        files_under(dir.path())
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .count()
    };
    assert_eq!(
        seg_files(".tok"),
        0,
        "a vector0 collection builds no token index"
    );
    let b = Budget::new(8, 16);
    let mut req = SearchRequest::new(data.query(0).to_vec(), b, 10);
    req.candidates = Some(100);
    let res = coll.search(&req).unwrap();
    assert_eq!(res.stats.stages.len(), 1, "vector-0 candidates: one stage");
    assert_eq!(res.hits.len(), 10);
    // A compaction of a vector-0 collection still writes none.
    coll.compact().unwrap();
    assert_eq!(seg_files(".tok"), 0);

    // A tokens collection shrunk below the indexed depth (8) keeps every remaining budget.
    let cfg = CollectionConfig::new(32, 16, 8);
    let coll = engine.create_collection("shrunk", cfg).unwrap();
    load_hard(&coll, &data, 0..4_000);
    coll.flush().unwrap();
    assert_eq!(seg_files(".tok"), 1);
    coll.compact_keep(Some(4)).unwrap();
    assert_eq!(
        seg_files(".tok"),
        1,
        "the shrunk segment is indexed at depth 4"
    );
    for b in [Budget::new(1, 1), Budget::new(2, 4)] {
        let req = SearchRequest::new(data.query(1).to_vec(), b, 10);
        let exact = coll.search(&req.clone().exact()).unwrap();
        let res = coll.search(&req).unwrap();
        assert!(recall(&ids(&res), &ids(&exact)) >= 0.9, "{b}");
        let res = coll
            .search(&SearchRequest::new(data.query(1).to_vec(), b, 10))
            .unwrap();
        assert_eq!(res.hits.len(), 10, "{b}");
    }
    assert!(coll
        .search(&SearchRequest::new(data.query(1).to_vec(), b, 10))
        .is_err());
}

/// A segment with far fewer centroids than groups of near-identical vector 0s (as a small
/// segment of a large collection has: at 1,000,000 documents' topic count, a 30,000-document
/// segment held 5,000 topics in 4,096 centroids): one code covers several topics and codes alone
/// tie their documents, so the best by approximate score were a draw among them (recall@10 at
/// (2,4) fell to 0.54). Vector 0's term comes from the graph's int8 copy and tells them apart.
#[test]
fn codes_coarser_than_the_topics_do_not_tie_their_documents() {
    use metavec_core::synth::SynthStream;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 1 << 30);
    let mut cfg = CollectionConfig::new(32, 16, 8);
    cfg.candidates.centroids = 128;
    let coll = engine.create_collection("coarse", cfg.clone()).unwrap();
    // Topics and facets sized for 400,000 documents (2,000 topics); 6,000 are stored, ~3 a topic,
    // in 128 lists: ~16 topics a list.
    let queries = 40;
    let stream = SynthStream::new(SynthSpec::hard(400_000, queries, 32, &ladder(&cfg), 5));
    let n = 6_000;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let docs = chunk
            .iter()
            .map(|&i| Document::new(SynthData::id(i), stream.doc(i)))
            .collect();
        coll.upsert(docs).unwrap();
    }
    coll.flush().unwrap();
    let b = Budget::new(2, 4);
    let mean = |tune: &dyn Fn(&mut SearchRequest)| {
        (0..queries)
            .map(|j| {
                let mut req = SearchRequest::new(stream.query(j), b, 10);
                tune(&mut req);
                let truth = ids(&coll.search(&req.clone().exact()).unwrap());
                recall(&ids(&coll.search(&req).unwrap()), &truth)
            })
            .sum::<f64>()
            / queries as f64
    };
    // Every list read, the best 1,000 reranked: what the codes and the vector-0 term rank.
    // Measured: 0.55 with vector 0 by its code, 0.76 from its int8 copy (0.88 and 0.76 at 512
    // centroids).
    let all_lists = mean(&|r| {
        r.nprobe = Some(128);
        r.candidates = Some(1000);
    });
    eprintln!("{b}: recall {all_lists:.3} with 128 centroids for ~2,000 topics, every list");
    assert!(
        all_lists >= 0.68,
        "{b}: recall {all_lists}: codes tie the topics"
    );
    // The default path (adaptive probe, progressive rerank) reads on where the codes are coarse:
    // measured 0.65 (a fixed 200 candidates: 0.46).
    let default = mean(&|_| {});
    eprintln!("{b}: recall {default:.3} on the default path");
    assert!(default >= 0.6, "{b}: recall {default} on the default path");
}
