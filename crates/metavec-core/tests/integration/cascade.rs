//! Cascades reuse the running maxima of earlier stages: only new (query vector, document
//! vector) pairs are computed, and the final scores are bit-identical to a from-scratch search.

use metavec_core::search::Stage;
use metavec_core::{Budget, CollectionConfig, SearchRequest};

use crate::support::{engine_with, load, synth};

#[test]
fn cascade_computes_only_new_pairs_and_scores_like_a_single_stage() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 1 << 30);
    let cfg = CollectionConfig::new(32, 64, 16);
    let coll = engine.create_collection("cascade", cfg.clone()).unwrap();
    let data = synth(&cfg, 3_000, 5, 17);
    load(&coll, &data, 0..2_000, 250);
    coll.flush().unwrap();
    load(&coll, &data, 2_000..3_000, 250); // memtable candidates take part too
    for qi in 0..5 {
        let q = data.query(qi).to_vec();
        let mut req = SearchRequest::new(q.clone(), Budget::new(16, 64), 10);
        req.candidates = Some(400);
        req.stages = vec![
            Stage {
                budget: Budget::new(1, 1),
                keep: 300,
            },
            Stage {
                budget: Budget::new(4, 8),
                keep: 60,
            },
        ];
        let res = coll.search(&req).unwrap();
        let s = &res.stats;
        let cands = s.candidates;
        assert_eq!(s.stages.len(), 3);
        assert_eq!(s.stages[0].scored, cands);
        assert_eq!(s.stages[1].scored, 300);
        assert_eq!(s.stages[2].scored, 60);
        // Dots: every candidate at (1,1), then only the new pairs of (4,8) and of (16,64).
        assert_eq!(s.stages[0].dot_products, cands);
        assert_eq!(s.stages[1].dot_products, 300 * (4 * 8 - 1));
        assert_eq!(s.stages[2].dot_products, 60 * (16 * 64 - 4 * 8));
        assert_eq!(s.dot_products, cands + 300 * 31 + 60 * (1024 - 32));
        assert_eq!(res.hits.len(), 10);

        // Each cascade hit scores exactly what a from-scratch exact search gives it.
        let exact = coll
            .search(&SearchRequest::new(q.clone(), Budget::new(16, 64), 3_000).exact())
            .unwrap();
        for h in &res.hits {
            let e = exact.hits.iter().find(|e| e.id == h.id).unwrap();
            assert_eq!(
                h.score.to_bits(),
                e.score.to_bits(),
                "{} scores differ",
                h.id
            );
        }
        // A cascade that keeps everything is the plain search.
        let mut all = req.clone();
        all.stages = vec![Stage {
            budget: Budget::new(4, 8),
            keep: 100_000,
        }];
        let mut plain = req.clone();
        plain.stages.clear();
        assert_eq!(
            coll.search(&all).unwrap().hits,
            coll.search(&plain).unwrap().hits
        );
        // Pruning never changes results.
        let mut unpruned = req.clone();
        unpruned.prune = false;
        assert_eq!(coll.search(&unpruned).unwrap().hits, res.hits);
    }
}

#[test]
fn bad_stages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 1 << 30);
    let cfg = CollectionConfig::new(8, 16, 8);
    let coll = engine.create_collection("c", cfg).unwrap();
    let q = vec![1.0; 64];
    let with = |stages: Vec<Stage>| {
        let mut r = SearchRequest::new(q.clone(), Budget::new(4, 8), 10);
        r.stages = stages;
        coll.search(&r)
    };
    let st = |r_q, r_c, keep| Stage {
        budget: Budget::new(r_q, r_c),
        keep,
    };
    let msg = |r: metavec_core::Result<metavec_core::SearchResponse>| r.unwrap_err().to_string();
    assert!(msg(with(vec![st(8, 16, 100)])).contains("within the final budget"));
    assert!(msg(with(vec![st(2, 4, 100), st(1, 1, 100)])).contains("does not extend"));
    assert!(msg(with(vec![st(1, 1, 5)])).contains("stages[0].keep is 5"));
    assert!(msg(with(vec![st(1, 2, 100)])).contains("not a trained budget"));
    assert!(msg(with(vec![st(4, 8, 100)])).contains("does not extend"));
    with(vec![st(1, 1, 100), st(2, 4, 50)]).unwrap();
}
