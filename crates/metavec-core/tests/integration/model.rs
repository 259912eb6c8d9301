//! Random upsert / delete / flush / reopen / search sequences against a BTreeMap + brute-force
//! MaxSim oracle (redb's fuzz pattern, driven by proptest).

use metavec_core::Dtype;
use std::collections::BTreeMap;

use metavec_core::document::normalize_rows;
use metavec_core::score::maxsim_reference;
use metavec_core::{Budget, CollectionConfig, Document, Engine, SearchRequest};
use proptest::prelude::*;

use crate::support::engine_with;

const DIM: usize = 8;
const MC: usize = 4;
const MQ: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    Upsert(Vec<(u8, u64, bool)>),
    Delete(Vec<u8>),
    Flush,
    /// One merge step of the size-tiered policy (or nothing), or a full compaction.
    Compact(bool),
    Reopen,
    Search(u64, usize, u32),
    Get(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((0u8..40, any::<u64>(), any::<bool>()), 1..6).prop_map(Op::Upsert),
        2 => prop::collection::vec(0u8..48, 1..4).prop_map(Op::Delete),
        1 => Just(Op::Flush),
        1 => any::<bool>().prop_map(Op::Compact),
        1 => Just(Op::Reopen),
        3 => (any::<u64>(), 0usize..2, 1u32..8).prop_map(|(s, b, k)| Op::Search(s, b, k)),
        1 => prop::collection::vec(0u8..48, 1..4).prop_map(Op::Get),
    ]
}

fn vectors(seed: u64, n: usize) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n * DIM)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    // A tiny memtable so writes also trigger flushes on their own.
    let small = 6 * (MC * DIM * 4 + 80);
    let mut engine = engine_with(dir.path(), small);
    let cfg = CollectionConfig::new(DIM as u32, MC as u32, MQ as u32).with_dtype(Dtype::F32);
    engine.create_collection("m", cfg.clone()).unwrap();
    let mut oracle: BTreeMap<String, (Vec<f32>, Option<String>)> = BTreeMap::new();
    for op in ops {
        let coll = engine.collection("m").unwrap();
        match op {
            Op::Upsert(batch) => {
                let mut seen = std::collections::HashSet::new();
                let docs: Vec<Document> = batch
                    .into_iter()
                    .filter(|(id, _, _)| seen.insert(*id))
                    .map(|(id, seed, with_payload)| {
                        let mut d = Document::new(format!("id{id}"), vectors(seed, MC));
                        if with_payload {
                            d.payload = Some(format!(r#"{{"seed":{seed}}}"#));
                        }
                        d
                    })
                    .collect();
                coll.upsert(docs.clone()).unwrap();
                for mut d in docs {
                    normalize_rows(&mut d.vectors, DIM, "oracle").unwrap();
                    oracle.insert(d.id, (d.vectors, d.payload));
                }
            }
            Op::Delete(ids) => {
                let ids: Vec<String> = ids.into_iter().map(|i| format!("id{i}")).collect();
                let mut unique = ids.clone();
                unique.sort();
                unique.dedup();
                let ack = coll.delete(&ids).unwrap();
                let existed = unique
                    .iter()
                    .filter(|i| oracle.remove(*i).is_some())
                    .count();
                assert_eq!(ack.count, existed);
            }
            Op::Flush => {
                coll.flush().unwrap();
            }
            Op::Compact(full) => {
                if full {
                    coll.compact().unwrap();
                } else {
                    coll.compact_step().unwrap();
                }
            }
            Op::Reopen => {
                drop(coll);
                drop(engine);
                engine = engine_with(dir.path(), small);
            }
            Op::Get(ids) => {
                let ids: Vec<String> = ids.into_iter().map(|i| format!("id{i}")).collect();
                let got = coll.get(&ids).unwrap();
                for (id, g) in ids.iter().zip(got) {
                    match (oracle.get(id), g) {
                        (None, None) => {}
                        (Some((v, p)), Some(d)) => {
                            assert_eq!(&d.vectors, v, "vectors of {id} differ");
                            assert_eq!(&d.payload, p);
                        }
                        (o, g) => panic!(
                            "get {id}: oracle {:?} engine {:?}",
                            o.is_some(),
                            g.is_some()
                        ),
                    }
                }
            }
            Op::Search(seed, b, k) => {
                let budget = cfg.budgets[b];
                let q = {
                    let mut q = vectors(seed, MQ);
                    normalize_rows(&mut q, DIM, "q").unwrap();
                    q
                };
                let mut req = SearchRequest::new(q.clone(), budget, k);
                req.exact = true;
                req.with_payload = true;
                let res = coll.search(&req).unwrap();
                check_against_oracle(&oracle, &q, budget, k as usize, &res.hits);
                // The indexed path never returns a deleted or stale document either.
                req.exact = false;
                for h in coll.search(&req).unwrap().hits {
                    let (v, p) = oracle.get(&h.id).expect("search returned a deleted id");
                    let s = maxsim_reference(&q, budget.r_q as usize, v, budget.r_c as usize, DIM);
                    assert!((s - h.score).abs() < 1e-4);
                    assert_eq!(&h.payload, p);
                }
            }
        }
        assert_eq!(engine.collection("m").unwrap().len(), oracle.len());
    }
    drop(engine);
    let engine: Engine = engine_with(dir.path(), small);
    assert_eq!(engine.collection("m").unwrap().len(), oracle.len());
}

fn check_against_oracle(
    oracle: &BTreeMap<String, (Vec<f32>, Option<String>)>,
    q: &[f32],
    b: Budget,
    k: usize,
    hits: &[metavec_core::Hit],
) {
    let mut truth: Vec<(f32, &String)> = oracle
        .iter()
        .map(|(id, (v, _))| {
            (
                maxsim_reference(q, b.r_q as usize, v, b.r_c as usize, DIM),
                id,
            )
        })
        .collect();
    truth.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    truth.truncate(k);
    assert_eq!(hits.len(), truth.len());
    for (h, t) in hits.iter().zip(&truth) {
        // Tie-robust: the i-th score matches, and each hit's own oracle score matches it.
        assert!(
            (h.score - t.0).abs() < 1e-4,
            "score {} vs oracle {}",
            h.score,
            t.0
        );
        let (v, p) = &oracle[&h.id];
        let own = maxsim_reference(q, b.r_q as usize, v, b.r_c as usize, DIM);
        assert!((own - h.score).abs() < 1e-4);
        assert_eq!(&h.payload, p);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn engine_matches_oracle(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
