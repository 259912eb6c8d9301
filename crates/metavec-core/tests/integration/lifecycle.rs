//! A collection's life ends with its maintenance: deleting it cancels (or waits for) a flush or a
//! compaction in progress, and a collection created again under the same name never shares a
//! file with the deleted one. The races are ordered with the fault-injecting storage's holds
//! (`FaultPlan::hold`), so they play out the same way on every run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use metavec_core::testing::{FaultPlan, FaultyFs};
use metavec_core::{
    Collection, CollectionConfig, CollectionOptions, Document, Engine, EngineOptions, Error,
};

const DIM: usize = 4;
const MC: usize = 4;
/// Long enough for any job to reach its hold point; a test that waits this long has failed.
const ARRIVE: Duration = Duration::from_secs(120);

fn open(dir: &Path, fs: &FaultyFs) -> Engine {
    Engine::open(
        dir,
        EngineOptions {
            collection: CollectionOptions {
                storage: fs.storage(),
                ..Default::default()
            },
        },
    )
    .unwrap()
}

fn cfg() -> CollectionConfig {
    CollectionConfig::new(DIM as u32, MC as u32, 2)
}

fn docs(range: std::ops::Range<usize>) -> Vec<Document> {
    range
        .map(|i| {
            let v = (0..MC * DIM)
                .map(|j| ((i * 7 + j) % 11) as f32 + 1.0)
                .collect();
            Document::new(format!("d{i}"), v)
        })
        .collect()
}

fn present(coll: &Arc<Collection>, range: std::ops::Range<usize>) -> usize {
    let ids: Vec<String> = range.map(|i| format!("d{i}")).collect();
    coll.get(&ids).unwrap().iter().flatten().count()
}

fn hold(point: &str) -> FaultPlan {
    FaultPlan {
        hold: vec![point.to_string()],
        ..Default::default()
    }
}

/// Every file under `dir`, relative to it.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            out.extend(files(&e.path()).into_iter().map(|f| format!("{name}/{f}")));
        } else {
            out.push(name);
        }
    }
    out.sort();
    out
}

#[test]
fn a_compaction_of_a_deleted_collection_stops_and_never_touches_its_successor() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let engine = open(dir.path(), &fs);
    let old = engine.create_collection("c", cfg()).unwrap();
    old.upsert(docs(0..30)).unwrap();
    old.flush().unwrap();
    old.upsert(docs(30..60)).unwrap();
    old.flush().unwrap();
    let old_dir = old.dir().to_path_buf();

    fs.set(hold("compaction"));
    let job = {
        let old = old.clone();
        std::thread::spawn(move || old.compact())
    };
    assert!(
        fs.wait_held("compaction", ARRIVE),
        "the compaction never started"
    );
    engine.delete_collection("c").unwrap();
    let new = engine.create_collection("c", cfg()).unwrap();
    new.upsert(docs(100..130)).unwrap();
    new.flush().unwrap();
    new.upsert(docs(130..160)).unwrap();
    new.flush().unwrap();
    // Let the old compaction go on, if it still waits.
    fs.heal();
    let err = job.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert!(err.to_string().contains("deleted"), "{err}");
    assert_ne!(
        new.dir(),
        old_dir,
        "a new collection never shares paths with an old one"
    );
    assert!(!old_dir.exists(), "the deleted collection's files are gone");

    // The successor is whole: it flushes, compacts, and a reopen finds exactly its documents.
    new.upsert(docs(160..170)).unwrap();
    assert!(new.flush().unwrap().is_some());
    new.compact().unwrap();
    assert_eq!(present(&new, 100..170), 70);
    assert_eq!(present(&new, 0..60), 0);
    drop((new, old, engine));
    let engine = open(dir.path(), &fs);
    let new = engine.collection("c").unwrap();
    assert_eq!(new.info().segments.len(), 1);
    assert_eq!(present(&new, 100..170), 70);
    assert_eq!(present(&new, 0..60), 0);
    new.verify().unwrap();
}

#[test]
fn a_flush_of_a_deleted_collection_ends_before_delete_returns_and_writes_nothing_into_its_successor(
) {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let engine = open(dir.path(), &fs);
    let old = engine.create_collection("c", cfg()).unwrap();
    old.upsert(docs(0..30)).unwrap();
    let old_dir = old.dir().to_path_buf();

    fs.set(hold("flush"));
    let job = {
        let old = old.clone();
        std::thread::spawn(move || old.flush())
    };
    assert!(fs.wait_held("flush", ARRIVE), "the flush never started");
    engine.delete_collection("c").unwrap();
    let new = engine.create_collection("c", cfg()).unwrap();
    let new_files = files(new.dir());
    fs.heal();
    let err = job.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert_eq!(
        files(new.dir()),
        new_files,
        "the old flush wrote into the new collection"
    );
    assert!(!old_dir.exists());

    new.upsert(docs(100..130)).unwrap();
    assert!(new.flush().unwrap().is_some());
    drop((new, old, engine));
    let engine = open(dir.path(), &fs);
    let new = engine.collection("c").unwrap();
    assert_eq!(present(&new, 100..130), 30);
    assert_eq!(present(&new, 0..30), 0);
}

#[test]
fn collections_of_a_name_get_a_new_directory_each_and_strays_go_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let engine = open(dir.path(), &fs);
    let first = engine.create_collection("c", cfg()).unwrap();
    let first_dir = first.dir().to_path_buf();
    engine.delete_collection("c").unwrap();
    let second = engine.create_collection("c", cfg()).unwrap();
    assert_ne!(second.dir(), first_dir);
    let name = second
        .dir()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with("c."), "{name}");
    second.upsert(docs(0..5)).unwrap();
    drop((first, second, engine));
    // A stray directory no catalogue entry names (a crash between the two steps of a delete)
    // goes at the next open; the live one stays.
    let stray = dir.path().join("collections/c");
    std::fs::create_dir_all(stray.join("segments")).unwrap();
    let engine = open(dir.path(), &fs);
    assert!(!stray.exists());
    assert_eq!(present(&engine.collection("c").unwrap(), 0..5), 5);
}
