//! Payload filters: every hit satisfies the filter, and filtered search equals the brute-force
//! oracle over the allowed documents — also for a very selective filter, where the graph walk is
//! replaced by a scan of the allowed documents.

use metavec_core::Dtype;
use std::collections::BTreeMap;

use metavec_core::document::normalize_rows;
use metavec_core::score::maxsim_reference;
use metavec_core::search::Filter;
use metavec_core::synth::SynthData;
use metavec_core::{Budget, CollectionConfig, Document, SearchRequest};

use crate::support::{engine_with, synth};

#[test]
fn filtered_search_matches_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 1 << 30);
    let cfg = CollectionConfig::new(16, 8, 4).with_dtype(Dtype::F32);
    let coll = engine.create_collection("f", cfg.clone()).unwrap();
    let data = synth(&cfg, 3_000, 8, 31);
    let payload = |i: usize| {
        format!(
            r#"{{"lang":"{}","year":{},"tag":"t{}"}}"#,
            ["en", "de", "fr"][i % 3],
            1990 + i % 30,
            i % 100
        )
    };
    let mut oracle = BTreeMap::new();
    for chunk in (0..3_000).collect::<Vec<_>>().chunks(500) {
        let docs: Vec<Document> = chunk
            .iter()
            .map(|&i| {
                Document::new(SynthData::id(i), data.doc(i).to_vec()).with_payload(payload(i))
            })
            .collect();
        coll.upsert(docs.clone()).unwrap();
        for mut d in docs {
            normalize_rows(&mut d.vectors, 16, "o").unwrap();
            oracle.insert(d.id.clone(), d);
        }
        if chunk[0] == 1_000 {
            coll.flush().unwrap();
        }
    }
    coll.flush().unwrap();
    coll.upsert(vec![Document::new("late", data.doc(0).to_vec())
        .with_payload(r#"{"lang":"en","year":2001,"tag":"t7"}"#)])
        .unwrap();
    let mut late = Document::new("late", data.doc(0).to_vec())
        .with_payload(r#"{"lang":"en","year":2001,"tag":"t7"}"#);
    normalize_rows(&mut late.vectors, 16, "o").unwrap();
    oracle.insert("late".into(), late);

    let filters = [
        r#"{"eq": {"field": "lang", "value": "en"}}"#,
        r#"{"and": [{"in": {"field": "lang", "values": ["de", "fr"]}}, {"range": {"field": "year", "gte": 2000, "lt": 2010}}]}"#,
        r#"{"not": {"eq": {"field": "lang", "value": "en"}}}"#,
        // Very selective: 30 of 3,001 documents.
        r#"{"eq": {"field": "tag", "value": "t7"}}"#,
    ];
    for fj in filters {
        let f = Filter::parse(fj).unwrap();
        for qi in 0..8 {
            let b = Budget::new(2, 4);
            let mut q = data.query(qi)[..2 * 16].to_vec();
            let mut req = SearchRequest::new(q.clone(), b, 10);
            req.filter = Some(f.clone());
            req.with_payload = true;
            let approx = coll.search(&req).unwrap();
            req.exact = true;
            let exact = coll.search(&req).unwrap();
            normalize_rows(&mut q, 16, "q").unwrap();
            let mut truth: Vec<(f32, String)> = oracle
                .values()
                .filter(|d| f.matches_text(d.payload.as_deref()))
                .map(|d| (maxsim_reference(&q, 2, &d.vectors, 4, 16), d.id.clone()))
                .collect();
            truth.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            truth.truncate(10);
            assert_eq!(exact.hits.len(), truth.len());
            for (h, t) in exact.hits.iter().zip(&truth) {
                assert!((h.score - t.0).abs() < 1e-4, "{fj}: {} vs {}", h.score, t.0);
            }
            for h in approx.hits.iter().chain(&exact.hits) {
                assert!(
                    f.matches_text(h.payload.as_deref()),
                    "{fj}: hit {} does not match",
                    h.id
                );
            }
            if fj.contains("t7") {
                // The selective filter falls back to scanning the allowed documents: exact results.
                assert_eq!(approx.hits, exact.hits);
            }
        }
    }
}
