//! Bytes read grow with r_c, not with M_c: the prefix-grouped layout at work.

use metavec_core::{Budget, CollectionConfig, SearchRequest};

use crate::support::{engine_with, load, synth};

#[test]
fn vector_bytes_read_are_proportional_to_r_c_on_the_same_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 1 << 30);
    let cfg = CollectionConfig::new(32, 64, 16);
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
