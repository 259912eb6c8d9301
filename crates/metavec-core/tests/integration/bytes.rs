//! Bytes read grow with r_c, not with M_c: the prefix-grouped layout at work.

use metavec_core::Dtype;
use metavec_core::{Budget, CollectionConfig, SearchRequest};

use crate::support::{engine_with, load, synth};

#[test]
fn vector_bytes_read_are_proportional_to_r_c_on_the_same_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 1 << 30);
    let cfg = CollectionConfig::new(32, 64, 16).with_dtype(Dtype::F32);
    let coll = engine.create_collection("bytes", cfg.clone()).unwrap();
    let data = synth(&cfg, 2_000, 3, 9);
    load(&coll, &data, 0..2_000, 250);
    coll.flush().unwrap();
    let q = data.query(0).to_vec();
    for exact in [false, true] {
        let mut base = None;
        for b in [(1, 1), (2, 4), (4, 8), (8, 16), (16, 64)] {
            let budget = Budget::new(b.0, b.1);
            let mut req = SearchRequest::new(q.clone(), budget, 10);
            req.exact = exact;
            req.candidates = Some(300);
            // Vector-0 candidates: the same documents at every budget.
            req.candidate_index = Some(metavec_core::config::CandidateIndex::Vector0);
            // Unpruned: every candidate is scored at every budget, (1,1) included.
            req.prune = false;
            let s = coll.search(&req).unwrap().stats;
            let (cands, bytes1) = *base.get_or_insert((s.docs_scored, s.vector_bytes_read));
            // The same candidates are scored at every budget (they come from vector 0 only)...
            assert_eq!(s.docs_scored, cands);
            // ...and the bytes read are exactly r_c rows of D f32 per scored document.
            assert_eq!(s.vector_bytes_read, s.docs_scored * b.1 as u64 * 32 * 4);
            assert_eq!(s.vector_bytes_read, bytes1 * b.1 as u64);
            assert_eq!(s.dot_products, s.docs_scored * (b.0 * b.1) as u64);
        }
    }
}

/// `count_pages`: the distinct 4 KiB pages an exact scan touches. With the grouped layout a scan
/// at r_c = 1 reads group 0 only, N rows of D f32 packed back to back: about N * D * 4 / 4096
/// pages, where one contiguous block per document would touch a page per document.
#[test]
fn pages_touched_by_a_scan_follow_the_grouped_layout() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 1 << 30);
    let cfg = CollectionConfig::new(32, 64, 16).with_dtype(Dtype::F32);
    let coll = engine.create_collection("pages", cfg.clone()).unwrap();
    let data = synth(&cfg, 2_000, 3, 9);
    load(&coll, &data, 0..2_000, 250);
    coll.flush().unwrap();
    let q = data.query(0).to_vec();
    let mut req = SearchRequest::new(q, Budget::new(1, 1), 10).exact();
    assert_eq!(
        coll.search(&req).unwrap().stats.vector_pages,
        0,
        "off by default"
    );
    req.count_pages = true;
    let pages = |r: &SearchRequest| coll.search(r).unwrap().stats.vector_pages;
    // 2,000 rows x 128 B = 62.5 pages; the group may start mid-page: 63 or 64.
    let p1 = pages(&req);
    assert!((63..=64).contains(&p1), "{p1} pages at r_c = 1");
    // At (16, 64) every row of every document: 2,000 x 64 x 128 B = 4,000 pages (+ group edges).
    req.budget = Budget::new(16, 64);
    let p64 = pages(&req);
    assert!((4_000..=4_006).contains(&p64), "{p64} pages at r_c = 64");
}
