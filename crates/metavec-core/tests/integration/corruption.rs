//! Damaged files give the documented outcome: a torn WAL tail is truncated at recovery; a flipped
//! byte in a segment's vector block is a corruption error naming the file, never a panic.

use std::io::Write;

use metavec_core::{Budget, CollectionConfig, Document, Error, SearchRequest};

use crate::support::{collection_dir, engine_with, load, synth};

fn wal_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(collection_dir(dir, "c").join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn torn_wal_tail_is_truncated_and_earlier_batches_survive() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = CollectionConfig::new(8, 4, 2);
    let data = synth(&cfg, 30, 1, 5);
    {
        let engine = engine_with(dir.path(), 1 << 30);
        let coll = engine.create_collection("c", cfg.clone()).unwrap();
        load(&coll, &data, 0..30, 10);
    }
    // Tear the last record: cut its final 7 bytes, as a crash mid-write would.
    let files = wal_files(dir.path());
    let last = files
        .iter()
        .rev()
        .find(|p| std::fs::metadata(p).unwrap().len() > 48)
        .unwrap()
        .clone();
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    // And a second file with garbage after a good header would be cut the same way.
    {
        let engine = engine_with(dir.path(), 1 << 30);
        let coll = engine.collection("c").unwrap();
        assert_eq!(coll.len(), 20, "the torn third batch is dropped whole");
        let got = coll
            .get(&[
                metavec_core::synth::SynthData::id(19),
                metavec_core::synth::SynthData::id(20),
            ])
            .unwrap();
        assert!(got[0].is_some() && got[1].is_none());
        // The file was truncated at the bad record, so the next open sees a clean log.
        assert!(std::fs::metadata(&last).unwrap().len() < len - 7);
        // Writes go on.
        coll.upsert(vec![Document::new("after", data.doc(25).to_vec())])
            .unwrap();
    }
    // Garbage appended to a log is cut too.
    let newest = wal_files(dir.path()).pop().unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap()
        .write_all(&[0xAB; 100])
        .unwrap();
    let engine = engine_with(dir.path(), 1 << 30);
    let coll = engine.collection("c").unwrap();
    assert_eq!(coll.len(), 21);
    assert!(coll.get(&["after".to_string()]).unwrap()[0].is_some());
}

#[test]
fn flipped_segment_byte_is_reported_with_the_file_and_other_collections_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = CollectionConfig::new(16, 16, 8);
    let data = synth(&cfg, 400, 1, 6);
    {
        let engine = engine_with(dir.path(), 1 << 30);
        for name in ["c", "healthy"] {
            let coll = engine.create_collection(name, cfg.clone()).unwrap();
            load(&coll, &data, 0..400, 100);
            coll.flush().unwrap();
        }
    }
    let seg = std::fs::read_dir(collection_dir(dir.path(), "c").join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "mvs"))
        .unwrap();
    // A byte inside the deepest group's vectors (well past the header, before the metadata).
    let len = std::fs::metadata(&seg).unwrap().len();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = (len / 2) as usize;
    bytes[at] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();

    let engine = engine_with(dir.path(), 1 << 30);
    let coll = engine.collection("c").unwrap();
    let q = data.query(0).to_vec();
    let req = SearchRequest::new(q.clone(), Budget::new(8, 16), 10).exact();
    match coll.search(&req) {
        Err(Error::Corruption { path, .. }) => assert_eq!(path, seg),
        other => panic!("expected a corruption error, got {other:?}"),
    }
    match coll.verify() {
        Err(Error::Corruption { path, offset, .. }) => {
            assert_eq!(path, seg);
            assert!(offset <= at as u64);
        }
        other => panic!("verify: {other:?}"),
    }
    // Budgets below the damaged group still read clean bytes.
    coll.search(&SearchRequest::new(q.clone(), Budget::new(1, 1), 10).exact())
        .unwrap();
    engine.collection("healthy").unwrap().search(&req).unwrap();
}

#[test]
fn damaged_manifest_or_index_fails_that_collection_only() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = CollectionConfig::new(8, 4, 2);
    let data = synth(&cfg, 50, 1, 7);
    {
        let engine = engine_with(dir.path(), 1 << 30);
        for name in ["a", "b"] {
            let coll = engine.create_collection(name, cfg.clone()).unwrap();
            load(&coll, &data, 0..50, 25);
            coll.flush().unwrap();
        }
    }
    let manifest = collection_dir(dir.path(), "a").join("MANIFEST");
    let mut m = std::fs::read(&manifest).unwrap();
    let last = m.len() - 1;
    m[last] ^= 1;
    std::fs::write(&manifest, &m).unwrap();
    let graph = std::fs::read_dir(collection_dir(dir.path(), "b").join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".hnsw"))
        .unwrap();
    let mut g = std::fs::read(&graph).unwrap();
    g[10] ^= 1;
    std::fs::write(&graph, &g).unwrap();

    let engine = engine_with(dir.path(), 1 << 30);
    for name in ["a", "b"] {
        match engine.collection(name) {
            Err(Error::FailedPrecondition(msg)) => assert!(msg.contains("corruption"), "{msg}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    // The engine itself keeps working.
    engine.create_collection("fresh", cfg).unwrap();
}

#[test]
fn flipped_byte_mid_wal_is_corruption_not_a_torn_tail_and_other_collections_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = CollectionConfig::new(8, 4, 2);
    let data = synth(&cfg, 30, 1, 9);
    {
        let engine = engine_with(dir.path(), 1 << 30);
        for name in ["c", "d"] {
            let coll = engine.create_collection(name, cfg.clone()).unwrap();
            load(&coll, &data, 0..30, 10);
        }
    }
    // Three batch records of equal size follow the 48-byte WAL preamble; flip a byte inside the
    // first one's vectors, so two good records come after it.
    let wal = wal_files(dir.path())
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&wal).unwrap();
    let record_len = (bytes.len() - 48) / 3;
    let at = 48 + record_len / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&wal, &bytes).unwrap();

    let engine = engine_with(dir.path(), 1 << 30);
    match engine.collection("c") {
        Err(Error::FailedPrecondition(msg)) => {
            assert!(msg.contains("corruption"), "{msg}");
            assert!(msg.contains("wal-"), "names the file: {msg}");
            assert!(
                msg.contains("offset 48"),
                "names the record's offset: {msg}"
            );
        }
        other => panic!("expected the collection to be refused, got {other:?}"),
    }
    // The WAL was not truncated: nothing acknowledged was dropped behind the operator's back.
    assert_eq!(std::fs::read(&wal).unwrap().len(), bytes.len());
    let d = engine.collection("d").unwrap();
    assert_eq!(d.len(), 30);
    let q = data.query(0).to_vec();
    let res = d
        .search(&SearchRequest::new(q, Budget::new(1, 1), 3))
        .unwrap();
    assert_eq!(res.hits.len(), 3);
}

#[test]
fn flipped_wal_length_field_is_corruption_not_a_torn_tail() {
    // A record's length field is not covered by its crc. Flipped, it points past the records
    // after it; recovery must still find them instead of truncating them away as a torn tail.
    for (what, flip) in [
        ("longer", 0x0000_4000u32),
        ("shorter", 0x0000_0010),
        ("huge", 0x4000_0000),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = CollectionConfig::new(8, 4, 2);
        let data = synth(&cfg, 30, 1, 11);
        {
            let engine = engine_with(dir.path(), 1 << 30);
            let coll = engine.create_collection("c", cfg.clone()).unwrap();
            load(&coll, &data, 0..30, 10);
        }
        let wal = wal_files(dir.path())
            .into_iter()
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .unwrap();
        let mut bytes = std::fs::read(&wal).unwrap();
        let len = u32::from_le_bytes(bytes[48..52].try_into().unwrap());
        bytes[48..52].copy_from_slice(&(len ^ flip).to_le_bytes());
        std::fs::write(&wal, &bytes).unwrap();

        let engine = engine_with(dir.path(), 1 << 30);
        match engine.collection("c") {
            Err(Error::FailedPrecondition(msg)) => {
                assert!(msg.contains("offset 48"), "{what}: {msg}");
                assert!(msg.contains("not a torn tail"), "{what}: {msg}");
            }
            other => panic!("{what}: expected the collection to be refused, got {other:?}"),
        }
        assert_eq!(
            std::fs::read(&wal).unwrap().len(),
            bytes.len(),
            "{what}: nothing truncated"
        );
    }
}
