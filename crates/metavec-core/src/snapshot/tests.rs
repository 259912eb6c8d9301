use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::document::normalize_rows;
use crate::synth::{generate, SynthData, SynthSpec};
use crate::{
    CollectionConfig, CollectionOptions, Document, Dtype, Engine, EngineOptions, Error,
    SearchRequest,
};

fn engine(dir: &std::path::Path) -> Engine {
    Engine::open(
        dir,
        EngineOptions {
            collection: CollectionOptions {
                memtable_max_bytes: 64 * 16 * 16 * 4,
                ..Default::default()
            },
        },
    )
    .unwrap()
}

#[test]
fn snapshot_delete_restore_gives_the_same_results_and_damage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    // f32: the comparison is bit for bit, and a bf16 collection scores a document a little
    // differently in the memtable (f32) than once sealed (bf16), which the snapshot may do.
    let cfg = CollectionConfig::new(16, 16, 8).with_dtype(Dtype::F32);
    let c = e.create_collection("src", cfg.clone()).unwrap();
    let data = generate(&SynthSpec::new(
        500,
        5,
        16,
        &[(1, 1), (2, 4), (4, 8), (8, 16)],
        8,
    ));
    for chunk in (0..500).collect::<Vec<_>>().chunks(50) {
        c.upsert(
            chunk
                .iter()
                .map(|&i| {
                    Document::new(SynthData::id(i), data.doc(i).to_vec()).with_payload(r#"{"a":1}"#)
                })
                .collect(),
        )
        .unwrap();
    }
    c.delete(&[SynthData::id(7)]).unwrap();
    let run = |c: &crate::Collection| -> Vec<Vec<(String, f32, Option<String>)>> {
        cfg.budgets
            .iter()
            .flat_map(|b| (0..5).map(move |q| (b, q)))
            .map(|(b, q)| {
                let mut req =
                    SearchRequest::new(data.query(q)[..b.r_q as usize * 16].to_vec(), *b, 10);
                req.with_payload = true;
                c.search(&req)
                    .unwrap()
                    .hits
                    .into_iter()
                    .map(|h| (h.id, h.score, h.payload))
                    .collect()
            })
            .collect()
    };
    let before = run(&c);
    assert!(
        !c.info().segments.is_empty(),
        "the small memtable sealed segments"
    );
    let info = e.create_snapshot("src").unwrap();
    assert_eq!(info.collection, "src");
    assert!(info.files.iter().any(|f| f.path.starts_with("segments/")));
    assert!(info.files.iter().any(|f| f.path.starts_with("wal/")));
    assert_eq!(e.list_snapshots().unwrap().len(), 1);

    e.delete_collection("src").unwrap();
    let r = e.restore_snapshot(&info.name, "back").unwrap();
    assert_eq!(r.len(), 499);
    assert_eq!(run(&r), before, "restored results differ");
    assert!(matches!(
        e.restore_snapshot(&info.name, "back"),
        Err(Error::AlreadyExists(_))
    ));

    // One flipped byte anywhere in the snapshot: restore refuses and names the file.
    let seg = info
        .files
        .iter()
        .find(|f| f.path.ends_with(".mvs"))
        .unwrap();
    let p = dir
        .path()
        .join("snapshots")
        .join(&info.name)
        .join(&seg.path);
    let mut b = std::fs::read(&p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x01;
    std::fs::remove_file(&p).unwrap(); // the file is a hard link shared with "back": never write through it
    std::fs::write(&p, &b).unwrap();
    match e.restore_snapshot(&info.name, "again") {
        Err(Error::Corruption { path, .. }) => assert_eq!(path, p),
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(matches!(e.collection("again"), Err(Error::NotFound(_))));
    assert_eq!(run(&r), before, "the restored collection is untouched");
    e.delete_snapshot(&info.name).unwrap();
    assert!(e.list_snapshots().unwrap().is_empty());
    assert!(matches!(
        e.restore_snapshot("../etc", "x"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(e.delete_snapshot("nope"), Err(Error::NotFound(_))));
}

#[test]
fn snapshot_during_ingest_holds_exactly_the_writes_up_to_its_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(engine(dir.path()));
    let c = e
        .create_collection("live", CollectionConfig::new(8, 4, 2))
        .unwrap();
    let data = generate(&SynthSpec::new(300, 1, 8, &[(1, 1), (2, 4)], 9));
    // (acknowledged seq, id, vectors or None for a delete)
    type Log = Vec<(u64, String, Option<Vec<f32>>)>;
    let log: Arc<Mutex<Log>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (c, log, stop, data) = (c.clone(), log.clone(), stop.clone(), data.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) && i < 20_000 {
                let id = SynthData::id(i % 300);
                if i % 5 == 4 {
                    let ack = c.delete(std::slice::from_ref(&id)).unwrap();
                    log.lock().push((ack.seq, id, None));
                } else {
                    let mut d = Document::new(id.clone(), data.doc((i * 7) % 300).to_vec());
                    let ack = c.upsert(vec![d.clone()]).unwrap();
                    normalize_rows(&mut d.vectors, 8, "o").unwrap();
                    log.lock().push((ack.seq, id, Some(d.vectors)));
                }
                i += 1;
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    let info = e.create_snapshot("live").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    let mut oracle: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let mut log = log.lock().clone();
    log.sort_by_key(|x| x.0);
    assert!(
        log.iter().any(|x| x.0 > info.last_seq),
        "writes went on after the snapshot"
    );
    for (seq, id, v) in log {
        if seq > info.last_seq {
            break;
        }
        match v {
            Some(v) => oracle.insert(id, v),
            None => oracle.remove(&id),
        };
    }
    let r = e.restore_snapshot(&info.name, "restored").unwrap();
    assert_eq!(r.len(), oracle.len());
    let ids: Vec<String> = oracle.keys().cloned().collect();
    for (id, got) in ids.iter().zip(r.get(&ids).unwrap()) {
        assert_eq!(got.expect("missing").vectors, oracle[id], "{id}");
    }
}
