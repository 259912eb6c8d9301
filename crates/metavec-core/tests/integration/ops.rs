//! Ingest, search, compaction and snapshots all at once for a bounded number of rounds: no
//! error, no lost document, exact search equals the oracle on the final state, and a snapshot
//! taken mid-stream restores to exactly the writes up to its sequence number. The maintenance
//! thread works on events, not on time: each writer hands it a milestone every 250 writes (a
//! rendezvous, so the writer goes on writing while the compaction and snapshot run).

use metavec_core::Dtype;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use metavec_core::document::normalize_rows;
use metavec_core::score::maxsim_reference;
use metavec_core::synth::SynthData;
use metavec_core::{
    Budget, CollectionConfig, CollectionOptions, Document, Engine, EngineOptions, SearchRequest,
};

use crate::support::synth;

type Log = Vec<(u64, String, Option<Vec<f32>>)>;

fn oracle_upto(log: &Log, seq: u64) -> BTreeMap<String, Vec<f32>> {
    let mut sorted = log.clone();
    sorted.sort_by_key(|x| x.0);
    let mut m = BTreeMap::new();
    for (s, id, v) in sorted {
        if s > seq {
            break;
        }
        match v {
            Some(v) => m.insert(id, v),
            None => m.remove(&id),
        };
    }
    m
}

#[test]
fn concurrent_ingest_search_compaction_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = CollectionConfig::new(16, 8, 4).with_dtype(Dtype::F32);
    let engine = Arc::new(
        Engine::open(
            dir.path(),
            EngineOptions {
                collection: CollectionOptions {
                    memtable_max_bytes: 40 * 8 * 16 * 4,
                    compact_max_segments: 4,
                    ..Default::default()
                },
            },
        )
        .unwrap(),
    );
    let coll = engine.create_collection("ops", cfg.clone()).unwrap();
    let data = synth(&cfg, 500, 10, 21);
    let log: Arc<Mutex<Log>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (milestone, milestones) = std::sync::mpsc::sync_channel::<()>(0);

    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (c, log, data) = (coll.clone(), log.clone(), data.clone());
            let milestone = milestone.clone();
            std::thread::spawn(move || {
                for i in 0..1_500usize {
                    if i % 250 == 125 {
                        milestone.send(()).unwrap();
                    }
                    let id = SynthData::id((i * 7 + w * 13) % 500);
                    if i % 6 == 5 {
                        let ack = c.delete(std::slice::from_ref(&id)).unwrap();
                        log.lock().unwrap().push((ack.seq, id, None));
                    } else {
                        let mut d =
                            Document::new(id.clone(), data.doc((i * 11 + w) % 500).to_vec());
                        let ack = c.upsert(vec![d.clone()]).unwrap();
                        normalize_rows(&mut d.vectors, 16, "o").unwrap();
                        log.lock().unwrap().push((ack.seq, id, Some(d.vectors)));
                    }
                }
            })
        })
        .collect();
    drop(milestone);
    let searcher = {
        let (c, stop, data) = (coll.clone(), stop.clone(), data.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            loop {
                let b = [Budget::new(1, 1), Budget::new(2, 4), Budget::new(4, 8)][n % 3];
                let q = data.query(n % 10)[..b.r_q as usize * 16].to_vec();
                let r = c.search(&SearchRequest::new(q, b, 10)).unwrap();
                assert!(r.hits.len() <= 10);
                n += 1;
                if stop.load(Ordering::Relaxed) {
                    break n;
                }
            }
        })
    };
    let ops = {
        let (c, e) = (coll.clone(), engine.clone());
        std::thread::spawn(move || {
            let mut snaps = Vec::new();
            let mut compactions = 0;
            // Ends when both writers are done (their senders dropped).
            for () in milestones {
                c.compact().unwrap();
                compactions += 1;
                if snaps.len() < 3 {
                    snaps.push(e.create_snapshot("ops").unwrap());
                }
            }
            (compactions, snaps)
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let searches = searcher.join().unwrap();
    let (compactions, snaps) = ops.join().unwrap();
    assert!(searches > 0);
    assert_eq!((compactions, snaps.len()), (12, 3));
    eprintln!(
        "{searches} searches, {compactions} compactions, {} snapshots during 3,000 writes",
        snaps.len()
    );

    let log = log.lock().unwrap().clone();
    let oracle = oracle_upto(&log, u64::MAX);
    let check = |c: &metavec_core::Collection, oracle: &BTreeMap<String, Vec<f32>>| {
        assert_eq!(c.len(), oracle.len());
        let ids: Vec<String> = oracle.keys().cloned().collect();
        for (id, got) in ids.iter().zip(c.get(&ids).unwrap()) {
            assert_eq!(&got.expect("lost").vectors, &oracle[id]);
        }
        for qi in 0..10 {
            let mut q = data.query(qi)[..4 * 16].to_vec();
            let res = c
                .search(&SearchRequest::new(q.clone(), Budget::new(4, 8), 10).exact())
                .unwrap();
            normalize_rows(&mut q, 16, "q").unwrap();
            let mut truth: Vec<f32> = oracle
                .values()
                .map(|v| maxsim_reference(&q, 4, v, 8, 16))
                .collect();
            truth.sort_by(|a, b| b.total_cmp(a));
            assert_eq!(
                res.hits.len(),
                truth.len().min(10),
                "exact search hit count"
            );
            for (h, t) in res.hits.iter().zip(&truth) {
                assert!((h.score - t).abs() < 1e-4);
            }
        }
    };
    check(&coll, &oracle);
    let mid = &snaps[snaps.len() / 2];
    let restored = engine.restore_snapshot(&mid.name, "restored").unwrap();
    check(&restored, &oracle_upto(&log, mid.last_seq));
}
