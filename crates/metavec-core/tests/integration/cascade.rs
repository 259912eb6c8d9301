//! Cascades reuse the running maxima of earlier stages: only new (query vector, document
//! vector) pairs are computed, and the final scores are bit-identical to a from-scratch search.

use metavec_core::search::Stage;
use metavec_core::Dtype;
use metavec_core::{Budget, CollectionConfig, SearchRequest};

use crate::support::{engine_with, load, synth};

#[test]
fn cascade_computes_only_new_pairs_and_scores_like_a_single_stage() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 1 << 30);
    let cfg = CollectionConfig::new(32, 64, 16).with_dtype(Dtype::F32);
    let coll = engine.create_collection("cascade", cfg.clone()).unwrap();
    let data = synth(&cfg, 3_000, 5, 17);
    load(&coll, &data, 0..2_000, 250);
    coll.flush().unwrap();
    load(&coll, &data, 2_000..3_000, 250); // memtable candidates take part too
    for qi in 0..5 {
        let q = data.query(qi).to_vec();
        let mut req = SearchRequest::new(q.clone(), Budget::new(16, 64), 10);
        req.candidates = Some(400);
        // Vector-0 candidates: the same 400 per segment whatever the stages (the token index
        // would add its own first stage to a plain deep search).
        req.candidate_index = Some(metavec_core::config::CandidateIndex::Vector0);
        // Unpruned, so every stage scores all it is given (pruning is checked below).
        req.prune = false;
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
        let mut pruned = req.clone();
        pruned.prune = true;
        assert_eq!(coll.search(&pruned).unwrap().hits, res.hits);
    }
}

#[test]
fn bad_stages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 1 << 30);
    let cfg = CollectionConfig::new(8, 16, 8).with_dtype(Dtype::F32);
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
    assert!(msg(with(vec![st(2, 4, 100), st(1, 1, 100)]))
        .contains("stages[1].budget (1, 1) does not extend stages[0].budget"));
    assert!(msg(with(vec![st(1, 1, 5)])).contains("stages[0].keep is 5"));
    assert!(msg(with(vec![st(1, 2, 100)])).contains("not a trained budget"));
    // One stage: the request's own budget is what fails to extend it, and is named so.
    assert!(msg(with(vec![st(4, 8, 100)]))
        .contains("budget (4, 8) does not extend stages[0].budget (4, 8)"));
    assert!(!msg(with(vec![st(4, 8, 100)])).contains("stages[1]"));
    with(vec![st(1, 1, 100), st(2, 4, 50)]).unwrap();
}

#[test]
fn early_termination_prunes_without_changing_results() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 1 << 30);
    let cfg = CollectionConfig::new(32, 16, 8).with_dtype(Dtype::F32);
    let coll = engine.create_collection("prune", cfg.clone()).unwrap();
    // Documents whose deeper vectors stay close to vector 0 (small radii): where bounds bite.
    let mut spec =
        metavec_core::synth::SynthSpec::new(4_000, 10, 32, &crate::support::ladder(&cfg), 23);
    spec.level_noise = 0.25;
    spec.query_noise = 0.5;
    let data = metavec_core::synth::generate(&spec);
    load(&coll, &data, 0..4_000, 500);
    coll.flush().unwrap();
    let mut pruned = 0;
    for qi in 0..10 {
        for (stages, fin) in [
            (
                vec![Stage {
                    budget: Budget::new(4, 16),
                    keep: 1_000,
                }],
                Budget::new(8, 16),
            ),
            (
                vec![
                    Stage {
                        budget: Budget::new(2, 4),
                        keep: 500,
                    },
                    Stage {
                        budget: Budget::new(4, 8),
                        keep: 200,
                    },
                ],
                Budget::new(8, 16),
            ),
        ] {
            let mut req = SearchRequest::new(data.query(qi).to_vec(), fin, 10);
            req.candidates = Some(1_000);
            req.allow_untrained_budget = true;
            req.stages = stages;
            let with = coll.search(&req).unwrap();
            req.prune = false;
            let without = coll.search(&req).unwrap();
            assert_eq!(with.hits, without.hits, "pruning changed results");
            assert_eq!(without.stats.pruned, 0);
            let last = with.stats.stages.last().unwrap();
            assert_eq!(
                last.scored + last.pruned,
                without.stats.stages.last().unwrap().scored
            );
            assert!(with.stats.dot_products <= without.stats.dot_products);
            pruned += with.stats.pruned;
        }
    }
    eprintln!("pruned {pruned} candidates over 20 cascades");
    assert!(pruned > 0, "the bound never pruned anything on this data");
}

#[test]
fn auto_budget_picks_the_largest_budget_that_fits_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 1 << 30);
    let cfg = CollectionConfig::new(16, 16, 8).with_dtype(Dtype::F32);
    let coll = engine.create_collection("auto", cfg.clone()).unwrap();
    let data = synth(&cfg, 500, 4, 41);
    load(&coll, &data, 0..500, 250);
    let q = data.query(0).to_vec();
    let auto = |target: std::time::Duration| {
        let mut r = SearchRequest::new(q.clone(), Budget::new(1, 1), 10);
        r.latency_target = Some(target);
        coll.search(&r).unwrap()
    };
    let generous = std::time::Duration::from_secs(3600);
    // With no measurements it probes upwards one budget per search, then settles on the largest.
    let mut seen = Vec::new();
    for _ in 0..cfg.budgets.len() + 2 {
        seen.push(auto(generous).budget);
    }
    assert_eq!(seen[..cfg.budgets.len()], cfg.budgets[..]);
    assert_eq!(*seen.last().unwrap(), *cfg.budgets.last().unwrap());
    // An impossible target falls back to the smallest budget.
    let tiny = auto(std::time::Duration::from_nanos(1));
    assert_eq!(tiny.budget, cfg.budgets[0]);
    // A query with fewer vectors only gets budgets it can run.
    let mut short = SearchRequest::new(q[..2 * 16].to_vec(), Budget::new(1, 1), 10);
    short.latency_target = Some(generous);
    assert_eq!(coll.search(&short).unwrap().budget, Budget::new(2, 4));
    // The hits are those of an explicit search at the reported budget.
    let picked = auto(generous);
    let explicit = coll
        .search(&SearchRequest::new(q.clone(), picked.budget, 10))
        .unwrap();
    assert_eq!(picked.hits, explicit.hits);
}

/// At (1,1) a score is the vector-0 dot product, and the graph walk's int8 score bounds it: the
/// rerank scores only candidates whose bound reaches the k-th exact score. Same hits, same
/// scores, fewer dot products; memtable documents (no bound) are always scored.
#[test]
fn a_first_stage_at_1x1_skips_candidates_the_walk_rules_out() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 1 << 30);
    let cfg = CollectionConfig::new(32, 16, 8).with_dtype(Dtype::F32);
    let coll = engine.create_collection("v0", cfg.clone()).unwrap();
    let data = synth(&cfg, 3_000, 12, 29);
    load(&coll, &data, 0..1_500, 500);
    coll.flush().unwrap();
    load(&coll, &data, 1_500..2_800, 500);
    coll.flush().unwrap();
    load(&coll, &data, 2_800..3_000, 100); // stays in the memtable
    let mut pruned = 0;
    for qi in 0..12 {
        let plain = SearchRequest::new(data.query(qi).to_vec(), Budget::new(1, 1), 10);
        let cascade = {
            let mut r = SearchRequest::new(data.query(qi).to_vec(), Budget::new(4, 8), 10);
            r.stages = vec![Stage {
                budget: Budget::new(1, 1),
                keep: 50,
            }];
            r
        };
        for mut req in [plain, cascade] {
            req.candidates = Some(200);
            let with = coll.search(&req).unwrap();
            req.prune = false;
            let without = coll.search(&req).unwrap();
            assert_eq!(with.hits, without.hits, "pruning changed results");
            let (w, wo) = (&with.stats, &without.stats);
            assert_eq!(wo.pruned, 0);
            assert_eq!(w.stages[0].scored + w.stages[0].pruned, wo.stages[0].scored);
            assert_eq!(w.docs_scored, w.stages[0].scored);
            assert_eq!(w.stages[0].dot_products, w.stages[0].scored);
            assert!(
                w.stages[0].scored >= 200,
                "memtable docs and k are always scored"
            );
            pruned += w.stages[0].pruned;
        }
        // The exact scan is never pruned.
        let exact = coll
            .search(&SearchRequest::new(data.query(qi).to_vec(), Budget::new(1, 1), 10).exact())
            .unwrap();
        assert_eq!(exact.stats.pruned, 0);
        assert_eq!(exact.stats.docs_scored, 3_000);
    }
    eprintln!("pruned {pruned} candidates at (1,1) over 24 searches");
    assert!(pruned > 0, "the walk's bound never ruled anything out");
}
