//! Default search against `exact = true` on 20,000 synthetic documents, at every trained budget.

use metavec_core::Dtype;
use metavec_core::{CollectionConfig, SearchRequest};

use crate::support::{engine_with, load, recall, synth};

#[test]
fn recall_at_10_is_at_least_095_at_every_trained_budget() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 1 << 30);
    let cfg = CollectionConfig::new(64, 16, 8).with_dtype(Dtype::F32);
    let coll = engine.create_collection("synth", cfg.clone()).unwrap();
    let n = 20_000;
    let data = synth(&cfg, n, 40, 42);
    // Two sealed segments and a memtable, so the merge across all three is exercised.
    load(&coll, &data, 0..9_000, 500);
    coll.flush().unwrap();
    load(&coll, &data, 9_000..19_000, 500);
    coll.flush().unwrap();
    load(&coll, &data, 19_000..n, 500);
    let info = coll.info();
    assert_eq!(info.live_docs, n as u64);
    assert_eq!(info.segments.len(), 2);
    assert_eq!(info.memtable_docs, 1_000);

    let mut mrr_by_budget = Vec::new();
    for &budget in &cfg.budgets {
        let mut total = 0.0;
        let mut mrr = 0.0;
        for qi in 0..40 {
            let q = data.query(qi)[..budget.r_q as usize * 64].to_vec();
            let approx = coll
                .search(&SearchRequest::new(q.clone(), budget, 10))
                .unwrap();
            let exact = coll
                .search(&SearchRequest::new(q.clone(), budget, 10).exact())
                .unwrap();
            assert_eq!(exact.stats.docs_scored, n as u64);
            let ids = |r: &metavec_core::SearchResponse| {
                r.hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>()
            };
            total += recall(&ids(&approx), &ids(&exact));
            // Scores of a hit found by both are the same computation.
            for h in &approx.hits {
                if let Some(e) = exact.hits.iter().find(|e| e.id == h.id) {
                    assert!((e.score - h.score).abs() < 1e-5);
                }
            }
            let deep = coll
                .search(&SearchRequest::new(q, budget, 100).exact())
                .unwrap();
            let target = metavec_core::synth::SynthData::id(data.targets[qi]);
            if let Some(rank) = deep.hits.iter().position(|h| h.id == target) {
                mrr += 1.0 / (rank + 1) as f64;
            }
        }
        let r = total / 40.0;
        eprintln!(
            "budget {budget}: recall@10 {r:.3}, target MRR {:.3}",
            mrr / 40.0
        );
        assert!(r >= 0.95, "recall@10 at {budget} is {r:.3}");
        mrr_by_budget.push(mrr / 40.0);
    }
    // The data is Matryoshka-like: the largest budget ranks the target better than the smallest.
    assert!(
        mrr_by_budget.last().unwrap() > mrr_by_budget.first().unwrap(),
        "MRR by budget: {mrr_by_budget:?}"
    );
}
