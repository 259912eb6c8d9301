//! Disk faults injected through the storage seam (`metavec_core::testing::FaultyFs`): a failed
//! fsync poisons the writer (reads go on, reopen recovers), a failed or torn write and a full disk
//! fail the batch without losing anything acknowledged, and writes resume once space is back.

use std::path::Path;
use std::sync::Arc;

use metavec_core::testing::{FaultPlan, FaultyFs};
use metavec_core::{
    Collection, CollectionConfig, CollectionOptions, Document, Engine, EngineOptions, Error,
};

const DIM: usize = 4;
const MC: usize = 4;

fn open(dir: &Path, fs: &FaultyFs) -> Engine {
    Engine::open(
        dir,
        EngineOptions {
            // Compaction only when a test asks: the background policy would otherwise rewrite
            // a segment with deletes behind the test's back (and meet its injected faults).
            collection: CollectionOptions {
                storage: fs.storage(),
                compact_fanout: usize::MAX,
                compact_max_segments: usize::MAX,
                compact_dead_ratio: f64::INFINITY,
                ..Default::default()
            },
        },
    )
    .unwrap()
}

fn doc(i: usize) -> Document {
    let v = (0..MC * DIM)
        .map(|j| ((i * 7 + j) % 11) as f32 + 1.0)
        .collect();
    Document::new(format!("d{i}"), v)
}

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("d{i}")).collect()
}

fn present(coll: &Arc<Collection>, range: std::ops::Range<usize>) -> usize {
    coll.get(&ids(range)).unwrap().iter().flatten().count()
}

/// Closes the engine (as a restart would) and opens it again on the same storage.
fn reopen(
    dir: &Path,
    fs: &FaultyFs,
    engine: Engine,
    coll: Arc<Collection>,
) -> (Engine, Arc<Collection>) {
    drop(coll);
    drop(engine);
    let engine = open(dir, fs);
    let coll = engine.collection("c").unwrap();
    (engine, coll)
}

fn setup(dir: &Path, fs: &FaultyFs) -> (Engine, Arc<Collection>) {
    let engine = open(dir, fs);
    let coll = engine
        .create_collection("c", CollectionConfig::new(DIM as u32, MC as u32, 2))
        .unwrap();
    coll.upsert((0..10).map(doc).collect()).unwrap();
    (engine, coll)
}

#[test]
fn failed_fsync_poisons_writes_reads_go_on_and_reopen_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let (engine, coll) = setup(dir.path(), &fs);
    fs.set(FaultPlan {
        path_contains: "wal-".into(),
        fail_fsync: true,
        ..Default::default()
    });
    let err = coll.upsert(vec![doc(10)]).unwrap_err();
    assert!(matches!(err, Error::Poisoned(_)), "{err}");
    assert!(err.to_string().contains("fsync"), "{err}");
    // Poisoning is permanent until reopen, even once the disk behaves again.
    fs.heal();
    let err = coll.delete(&ids(0..1)).unwrap_err();
    assert!(matches!(err, Error::Poisoned(_)), "{err}");
    assert_eq!(present(&coll, 0..10), 10, "reads go on while poisoned");

    let (_engine, coll) = reopen(dir.path(), &fs, engine, coll);
    assert_eq!(present(&coll, 0..10), 10, "acknowledged writes survive");
    coll.upsert(vec![doc(11)]).unwrap();
    assert_eq!(present(&coll, 11..12), 1);
}

#[test]
fn enospc_in_wal_append_fails_the_batch_and_writes_resume_with_space() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let (engine, coll) = setup(dir.path(), &fs);
    // 100 bytes left: the batch's record is torn after 100 bytes, then ENOSPC.
    fs.set(FaultPlan {
        path_contains: "wal-".into(),
        quota: Some(100),
        ..Default::default()
    });
    let err = coll.upsert((10..20).map(doc).collect()).unwrap_err();
    assert!(matches!(err, Error::ResourceExhausted(_)), "{err}");
    assert!(err.to_string().contains("disk full"), "{err}");
    assert_eq!(present(&coll, 10..20), 0, "the failed batch is not applied");
    assert_eq!(present(&coll, 0..10), 10);
    fs.heal();
    coll.upsert((20..25).map(doc).collect()).unwrap();
    // The torn prefix was rewound: replay reads the later batch, not a torn record before it.
    let (_engine, coll) = reopen(dir.path(), &fs, engine, coll);
    assert_eq!(present(&coll, 0..10), 10);
    assert_eq!(present(&coll, 10..20), 0);
    assert_eq!(present(&coll, 20..25), 5);
}

#[test]
fn failed_write_after_n_bytes_is_rewound_not_poisoning() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let (engine, coll) = setup(dir.path(), &fs);
    fs.set(FaultPlan {
        path_contains: "wal-".into(),
        fail_write_after: Some(7),
        ..Default::default()
    });
    let err = coll.upsert(vec![doc(10)]).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("wal-"), "names the file: {err}");
    fs.heal();
    coll.upsert(vec![doc(11)]).unwrap();
    let (_engine, coll) = reopen(dir.path(), &fs, engine, coll);
    assert_eq!(present(&coll, 0..12), 11);
    assert_eq!(present(&coll, 10..11), 0);
}

#[test]
fn enospc_on_manifest_commit_keeps_old_manifest_and_flush_retries() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let (engine, coll) = setup(dir.path(), &fs);
    fs.set(FaultPlan {
        path_contains: "MANIFEST".into(),
        quota: Some(0),
        ..Default::default()
    });
    let err = coll.flush().unwrap_err();
    assert!(matches!(err, Error::ResourceExhausted(_)), "{err}");
    assert!(!has_tmp(dir.path()), "the temporary manifest is cleaned up");
    assert_eq!(present(&coll, 0..10), 10);
    // Writes still go (the WAL is not full) and nothing is left half-written.
    coll.upsert(vec![doc(10)]).unwrap();
    fs.heal();
    assert!(coll.flush().unwrap().is_some());
    // The retried run and the write made meanwhile.
    assert_eq!(coll.info().segments.len(), 2);
    assert_eq!(coll.info().memtable_docs, 0);
    let (_engine, coll) = reopen(dir.path(), &fs, engine, coll);
    assert_eq!(present(&coll, 0..11), 11);
}

/// Whether any temporary file or directory (`*.tmp`) is left under `dir`.
fn has_tmp(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|e| {
        let p = e.path();
        p.to_string_lossy().ends_with(".tmp") || (p.is_dir() && has_tmp(&p))
    })
}

fn full(path_contains: &str) -> FaultPlan {
    FaultPlan {
        path_contains: path_contains.into(),
        quota: Some(0),
        ..Default::default()
    }
}

#[test]
fn enospc_writing_a_segment_fails_the_flush_cleanly_and_it_retries() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let (engine, coll) = setup(dir.path(), &fs);
    fs.set(full("seg-"));
    let err = coll.flush().unwrap_err();
    assert!(matches!(err, Error::ResourceExhausted(_)), "{err}");
    assert!(!has_tmp(dir.path()), "the temporary segment is cleaned up");
    assert!(coll.info().segments.is_empty());
    assert_eq!(present(&coll, 0..10), 10);
    fs.heal();
    assert!(coll.flush().unwrap().is_some());
    let (_engine, coll) = reopen(dir.path(), &fs, engine, coll);
    assert_eq!(coll.info().segments.len(), 1);
    assert_eq!(present(&coll, 0..10), 10);
}

#[test]
fn enospc_during_compaction_keeps_the_old_segments_and_it_retries() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let (engine, coll) = setup(dir.path(), &fs);
    coll.flush().unwrap();
    coll.upsert((10..20).map(doc).collect()).unwrap();
    coll.flush().unwrap();
    coll.delete(&ids(0..5)).unwrap();
    fs.set(full("seg-"));
    let err = coll.compact().unwrap_err();
    assert!(matches!(err, Error::ResourceExhausted(_)), "{err}");
    assert!(!has_tmp(dir.path()));
    assert_eq!(coll.info().segments.len(), 2, "the old segments stay");
    assert_eq!(present(&coll, 0..20), 15);
    fs.heal();
    let report = coll.compact().unwrap();
    assert_eq!(report.docs_out, 15);
    let (_engine, coll) = reopen(dir.path(), &fs, engine, coll);
    assert_eq!(coll.info().segments.len(), 1);
    assert_eq!(present(&coll, 0..20), 15);
}

#[test]
fn enospc_during_snapshot_leaves_no_partial_snapshot_and_it_retries() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let (engine, coll) = setup(dir.path(), &fs);
    coll.flush().unwrap();
    fs.set(full("snapshots"));
    let err = engine.create_snapshot("c").unwrap_err();
    assert!(matches!(err, Error::ResourceExhausted(_)), "{err}");
    assert!(!has_tmp(dir.path()), "no half-written snapshot directory");
    assert!(engine.list_snapshots().unwrap().is_empty());
    // The collection is not harmed: writes go on.
    coll.upsert(vec![doc(10)]).unwrap();
    fs.heal();
    let info = engine.create_snapshot("c").unwrap();
    assert_eq!(engine.list_snapshots().unwrap().len(), 1);
    assert_eq!(
        info.last_seq, 2,
        "the snapshot holds both acknowledged batches"
    );
}

#[test]
fn enospc_starting_the_next_wal_generation_fails_the_flush_and_it_retries() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let (engine, coll) = setup(dir.path(), &fs);
    // The flush rotates the WAL; the new generation's header cannot be written.
    fs.set(full("wal-"));
    let err = coll.flush().unwrap_err();
    assert!(matches!(err, Error::ResourceExhausted(_)), "{err}");
    let err = coll.upsert(vec![doc(10)]).unwrap_err();
    assert!(matches!(err, Error::ResourceExhausted(_)), "{err}");
    fs.heal();
    coll.upsert(vec![doc(11)]).unwrap();
    assert!(coll.flush().unwrap().is_some());
    let (_engine, coll) = reopen(dir.path(), &fs, engine, coll);
    assert_eq!(present(&coll, 0..12), 11);
    assert_eq!(present(&coll, 10..11), 0);
}

/// Enough documents that the flushed segment has an HNSW graph to dump.
fn setup_for_index(dir: &Path, fs: &FaultyFs) -> (Engine, Arc<Collection>) {
    let (engine, coll) = setup(dir, fs);
    coll.upsert((10..40).map(doc).collect()).unwrap();
    (engine, coll)
}

#[test]
fn full_disk_while_writing_the_hnsw_graph_fails_the_flush_cleanly_and_it_retries() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let (engine, coll) = setup_for_index(dir.path(), &fs);
    // The graph file is written into a disk with no space left: its write fails with ENOSPC.
    fs.set(full("hnsw"));
    let err = coll.flush().unwrap_err();
    assert!(matches!(err, Error::ResourceExhausted(_)), "{err}");
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(err.to_string().contains(".hnsw."), "names the file: {err}");
    assert!(
        !has_tmp(dir.path()),
        "the temporary graph file is cleaned up"
    );
    assert!(coll.info().segments.is_empty());
    let seg_dir = coll.dir().join("segments");
    let left: Vec<_> = std::fs::read_dir(&seg_dir).unwrap().flatten().collect();
    assert!(
        left.is_empty(),
        "the half-made segment's files are removed: {left:?}"
    );
    coll.upsert(vec![doc(40)]).unwrap();
    fs.heal();
    assert!(coll.flush().unwrap().is_some());
    let (_engine, coll) = reopen(dir.path(), &fs, engine, coll);
    assert_eq!(coll.info().segments.len(), 2, "the retried run and doc 40");
    assert_eq!(present(&coll, 0..41), 41);
}

#[test]
fn failed_fsync_of_the_hnsw_graph_fails_the_flush_without_poisoning_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let (engine, coll) = setup_for_index(dir.path(), &fs);
    fs.set(FaultPlan {
        path_contains: "hnsw".into(),
        fail_fsync: true,
        ..Default::default()
    });
    let err = coll.flush().unwrap_err();
    assert!(err.to_string().contains("hnsw"), "{err}");
    assert!(!has_tmp(dir.path()));
    let left: Vec<_> = std::fs::read_dir(coll.dir().join("segments"))
        .unwrap()
        .flatten()
        .collect();
    assert!(
        left.is_empty(),
        "the half-made segment's files are removed: {left:?}"
    );
    // The WAL still holds every acknowledged write, so writes go on.
    coll.upsert(vec![doc(40)]).unwrap();
    fs.heal();
    assert!(coll.flush().unwrap().is_some());
    let (_engine, coll) = reopen(dir.path(), &fs, engine, coll);
    assert_eq!(present(&coll, 0..41), 41);
}

#[test]
fn full_disk_during_snapshot_copies_and_restore_leaves_nothing_half_made() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let (engine, coll) = setup_for_index(dir.path(), &fs);
    coll.flush().unwrap();
    coll.upsert(vec![doc(40)]).unwrap();
    // A quota that lets the snapshot start and fails it mid-copy (hard links are free while
    // there is space; the WAL tail is copied).
    fs.set(FaultPlan {
        path_contains: "snapshots".into(),
        quota: Some(16),
        ..Default::default()
    });
    let err = engine.create_snapshot("c").unwrap_err();
    assert!(matches!(err, Error::ResourceExhausted(_)), "{err}");
    assert!(!has_tmp(dir.path()));
    assert!(engine.list_snapshots().unwrap().is_empty());
    fs.heal();
    let snap = engine.create_snapshot("c").unwrap();

    // Restore into a full disk: refused, nothing half-copied, then it works.
    fs.set(full("collections/r"));
    let err = engine.restore_snapshot(&snap.name, "r").unwrap_err();
    assert!(matches!(err, Error::ResourceExhausted(_)), "{err}");
    assert!(!has_tmp(dir.path()));
    assert!(engine.collection("r").is_err());
    fs.heal();
    let r = engine.restore_snapshot(&snap.name, "r").unwrap();
    assert_eq!(present(&r, 0..41), 41);
    drop(coll);
}

#[test]
fn a_flush_retried_after_a_full_disk_also_flushes_what_came_in_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let (_engine, coll) = setup(dir.path(), &fs);
    fs.set(full("seg-"));
    coll.flush().unwrap_err();
    coll.upsert((10..20).map(doc).collect()).unwrap();
    fs.heal();
    assert!(coll.flush().unwrap().is_some());
    let info = coll.info();
    assert_eq!(info.memtable_docs, 0, "both runs are in segments");
    assert_eq!(info.segments.len(), 2);
    assert_eq!(present(&coll, 0..20), 20);
}
