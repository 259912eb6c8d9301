//! Compact storage dtypes through the library API: a flushed collection stores vector 0 in f32 and
//! the deeper groups in bf16 / f16 / int8. Get returns the stored (decoded) vectors; exact search
//! scores equal MaxSim over those vectors; default search finds the exact top hits; cascades,
//! pruning and compaction behave as with f32; bytes read per query follow the dtype.

use std::collections::BTreeMap;

use metavec_core::score::maxsim_reference;
use metavec_core::search::Stage;
use metavec_core::synth::SynthData;
use metavec_core::{Budget, CollectionConfig, Dtype, SearchRequest};

use crate::support::{engine_with, load, recall, synth};

const DIM: usize = 32;

#[test]
fn compact_dtypes_search_exactly_over_what_they_store() {
    for dtype in [Dtype::F32, Dtype::Bf16, Dtype::F16, Dtype::Int8] {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_with(dir.path(), 1 << 30);
        let mut cfg = CollectionConfig::new(DIM as u32, 16, 8);
        cfg.dtype = dtype;
        let coll = engine.create_collection("c", cfg.clone()).unwrap();
        let n = 1_500;
        let data = synth(&cfg, n, 12, 4);
        load(&coll, &data, 0..1_000, 250);
        coll.flush().unwrap();
        load(&coll, &data, 1_000..n, 250); // the rest stays in the memtable, f32
        assert_eq!(coll.info().segments.len(), 1);

        // What is stored: vector 0 exact, the rest within the dtype's rounding.
        let ids: Vec<String> = (0..n).map(SynthData::id).collect();
        let stored: BTreeMap<String, Vec<f32>> = coll
            .get(&ids)
            .unwrap()
            .into_iter()
            .flatten()
            .map(|d| (d.id, d.vectors))
            .collect();
        assert_eq!(stored.len(), n);
        let mut normalised = data.doc(5).to_vec();
        metavec_core::document::normalize_rows(&mut normalised, DIM, "x").unwrap();
        let s5 = &stored[&SynthData::id(5)];
        assert_eq!(s5[..DIM], normalised[..DIM], "{dtype}: vector 0 stays f32");
        let tol = match dtype {
            Dtype::F32 => 0.0,
            Dtype::Bf16 => 4e-3,
            Dtype::F16 => 5e-4,
            Dtype::Int8 => 8e-3,
        };
        let worst = s5
            .iter()
            .zip(&normalised)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= tol, "{dtype}: stored values off by {worst}");
        if dtype != Dtype::F32 {
            assert!(worst > 0.0, "{dtype}: the segment really is compact");
        }

        for &budget in &cfg.budgets {
            let (rq, rc) = (budget.r_q as usize, budget.r_c as usize);
            let mut total = 0.0;
            for qi in 0..12 {
                let q = data.query(qi)[..rq * DIM].to_vec();
                let exact = coll
                    .search(&SearchRequest::new(q.clone(), budget, 10).exact())
                    .unwrap();
                // Exact search is MaxSim over the stored vectors (query normalised likewise).
                let mut qn = q.clone();
                metavec_core::document::normalize_rows(&mut qn, DIM, "q").unwrap();
                let mut oracle: Vec<(f32, &String)> = stored
                    .iter()
                    .map(|(id, v)| (maxsim_reference(&qn, rq, v, rc, DIM), id))
                    .collect();
                oracle.sort_by(|a, b| b.0.total_cmp(&a.0));
                assert_eq!(
                    exact.hits.len(),
                    oracle.len().min(10),
                    "{dtype} {budget}: hit count"
                );
                for (h, (score, _)) in exact.hits.iter().zip(&oracle) {
                    let want = maxsim_reference(&qn, rq, &stored[&h.id], rc, DIM);
                    assert!(
                        (h.score - want).abs() < 1e-4,
                        "{dtype} {budget}: {} vs {want}",
                        h.score
                    );
                    assert!(
                        (h.score - score).abs() < 1e-4,
                        "{dtype} {budget}: rank order"
                    );
                }
                let approx = coll.search(&SearchRequest::new(q, budget, 10)).unwrap();
                let ids = |r: &metavec_core::SearchResponse| {
                    r.hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>()
                };
                total += recall(&ids(&approx), &ids(&exact));
            }
            assert!(
                total / 12.0 >= 0.95,
                "{dtype} {budget}: recall {}",
                total / 12.0
            );
        }

        // Bytes read follow the dtype: at (4,8) over segment documents only.
        coll.flush().unwrap();
        let q = data.query(0)[..4 * DIM].to_vec();
        let res = coll
            .search(&SearchRequest::new(q.clone(), Budget::new(4, 8), 10).exact())
            .unwrap();
        let per_doc = (DIM * 4 + 7 * dtype.row_bytes(DIM)) as u64;
        assert_eq!(res.stats.vector_bytes_read, n as u64 * per_doc, "{dtype}");

        // A cascade with pruning gives the one-stage result; compaction keeps the values.
        let one = coll
            .search(&SearchRequest::new(q.clone(), Budget::new(4, 8), 10).exact())
            .unwrap();
        let mut casc = SearchRequest::new(q, Budget::new(4, 8), 10).exact();
        casc.stages = vec![Stage {
            budget: Budget::new(1, 1),
            keep: 400,
        }];
        let casc = coll.search(&casc).unwrap();
        let top = |r: &metavec_core::SearchResponse| {
            r.hits
                .iter()
                .map(|h| (h.id.clone(), (h.score * 1e4).round()))
                .collect::<Vec<_>>()
        };
        assert_eq!(top(&casc)[..5], top(&one)[..5], "{dtype}");
        coll.delete(&[SynthData::id(0)]).unwrap();
        coll.compact().unwrap();
        let after = coll.get(&[SynthData::id(5)]).unwrap()[0].clone().unwrap();
        assert_eq!(
            &after.vectors, s5,
            "{dtype}: compaction re-encodes to the same values"
        );
        drop(coll);
        drop(engine);
        // And it all reads back after a restart.
        let engine = engine_with(dir.path(), 1 << 30);
        let coll = engine.collection("c").unwrap();
        assert_eq!(coll.config().dtype, dtype);
        assert_eq!(coll.len(), n - 1);
    }
}
