//! Disk faults through a running server: the test build of `metavec serve` follows the fault plan
//! file named by `METAVEC_FAULT_PLAN` (`metavec_core::testing::FaultyFs`), so a test can fill the
//! disk or fail fsyncs under a live server and check what clients see. A full disk gives
//! RESOURCE_EXHAUSTED and loses nothing (writes resume when space is back); a failed WAL fsync
//! gives UNAVAILABLE for writes while reads go on, and a restart (here after `kill -9`) recovers
//! every acknowledged write.

use std::path::Path;
use std::process::Stdio;

use metavec_api::pb;
use metavec_core::synth::{generate, SynthData, SynthSpec};
use tonic::Code;

use crate::support::*;

const DIM: u32 = 16;
const MC: u32 = 8;

fn data() -> SynthData {
    generate(&SynthSpec::new(200, 4, DIM as usize, &[(1, 1), (4, 8)], 5))
}

fn batch(data: &SynthData, range: std::ops::Range<usize>) -> pb::UpsertRequest {
    pb::UpsertRequest {
        collection: "f".into(),
        documents: range.map(|i| synth_doc(data, i)).collect(),
    }
}

pub(crate) fn start(dir: &Path, plan: &Path) -> Server {
    Server::start_env(
        dir,
        &[],
        "warn",
        Stdio::inherit(),
        &[("METAVEC_FAULT_PLAN", plan)],
    )
}

async fn present(c: &mut Clients, data: &SynthData, range: std::ops::Range<usize>) -> usize {
    let ids: Vec<String> = range.clone().map(SynthData::id).collect();
    let got = stored(c, "f", ids).await;
    for (id, (v, _)) in &got {
        let i: usize = range.clone().find(|&i| &SynthData::id(i) == id).unwrap();
        let want = data.doc(i);
        assert_eq!(v.len(), want.len(), "{id}");
    }
    got.len()
}

async fn search_works(c: &mut Clients, data: &SynthData) {
    let q = data.query(0);
    let res = c
        .search
        .search(search_req(
            "f",
            vectors(4, DIM, q[..4 * DIM as usize].to_vec()),
            4,
            8,
            5,
        ))
        .await
        .expect("search goes on under a disk fault")
        .into_inner();
    assert_eq!(res.hits.len(), 5);
}

fn flush_req() -> pb::FlushRequest {
    pb::FlushRequest {
        collection: "f".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_under_a_running_server_is_resource_exhausted_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("fault-plan");
    let data = data();
    let server = start(&dir.path().join("data"), &plan);
    let mut c = server.clients().await;
    c.collections
        .create_collection(create_req("f", DIM, MC, 4))
        .await
        .unwrap();
    upsert(&mut c, vec![batch(&data, 0..50)]).await.unwrap();

    // The WAL's disk fills up.
    std::fs::write(&plan, "path_contains = wal-\nquota = 0\n").unwrap();
    let err = upsert(&mut c, vec![batch(&data, 50..60)])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("wal-"), "names the file: {err:?}");
    let err = c
        .documents
        .delete(pb::DeleteRequest {
            collection: "f".into(),
            ids: vec![SynthData::id(0)],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    search_works(&mut c, &data).await;
    assert_eq!(
        present(&mut c, &data, 0..60).await,
        50,
        "nothing half-applied"
    );

    // Space comes back: writes resume.
    std::fs::write(&plan, "").unwrap();
    upsert(&mut c, vec![batch(&data, 50..60)]).await.unwrap();

    // A full disk while a flush writes the segment: the flush fails, the data stays.
    std::fs::write(&plan, "path_contains = seg-\nquota = 0\n").unwrap();
    let err = c.admin.flush(flush_req()).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    upsert(&mut c, vec![batch(&data, 60..70)]).await.unwrap();
    search_works(&mut c, &data).await;
    std::fs::write(&plan, "").unwrap();
    c.admin.flush(flush_req()).await.unwrap();
    let info = c
        .collections
        .get_collection(pb::GetCollectionRequest { name: "f".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((info.live_docs, info.memtable_docs), (70, 0));
    drop(server);

    // Everything acknowledged is there after a kill -9 and restart.
    let server = start(&dir.path().join("data"), &plan);
    let mut c = server.clients().await;
    assert_eq!(present(&mut c, &data, 0..70).await, 70);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_wal_fsync_makes_writes_unavailable_reads_go_on_and_restart_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("fault-plan");
    let data = data();
    let mut server = start(&dir.path().join("data"), &plan);
    let mut c = server.clients().await;
    c.collections
        .create_collection(create_req("f", DIM, MC, 4))
        .await
        .unwrap();
    upsert(&mut c, vec![batch(&data, 0..40)]).await.unwrap();

    std::fs::write(&plan, "path_contains = wal-\nfail_fsync = true\n").unwrap();
    let err = upsert(&mut c, vec![batch(&data, 40..50)])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("fsync"), "{err:?}");
    // The writer stays poisoned once the disk behaves again: the data of a failed fsync is in
    // an unknown state until recovery reads the log back.
    std::fs::write(&plan, "").unwrap();
    let err = upsert(&mut c, vec![batch(&data, 50..60)])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    search_works(&mut c, &data).await;
    assert_eq!(present(&mut c, &data, 0..40).await, 40, "reads go on");

    server.kill9();
    let server = start(&dir.path().join("data"), &plan);
    let mut c = server.clients().await;
    assert_eq!(present(&mut c, &data, 0..40).await, 40);
    let in_flight = present(&mut c, &data, 40..50).await;
    assert!(
        in_flight == 0 || in_flight == 10,
        "the unacknowledged batch is all or nothing, found {in_flight} of 10"
    );
    assert_eq!(present(&mut c, &data, 50..60).await, 0);
    upsert(&mut c, vec![batch(&data, 50..60)]).await.unwrap();
    assert_eq!(present(&mut c, &data, 50..60).await, 10);
}

/// Waits for the server to announce a job held at `point` (it creates the marker file).
pub(crate) async fn held(plan: &Path, point: &str) {
    let marker = metavec_core::testing::held_marker(plan, point);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no job reached {point:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The directory of the live collection `name` (`collections/<name>.<generation>`).
fn collection_dir(data: &Path, name: &str) -> std::path::PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(data.join("collections"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == name || n.starts_with(&format!("{name}.")))
        })
        .collect();
    assert_eq!(dirs.len(), 1, "one directory for {name}: {dirs:?}");
    dirs.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_of_a_deleted_collection_stops_and_never_touches_its_successor() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("fault-plan");
    let data_dir = dir.path().join("data");
    let data = data();
    let server = start(&data_dir, &plan);
    let mut c = server.clients().await;
    c.collections
        .create_collection(create_req("f", DIM, MC, 4))
        .await
        .unwrap();
    upsert(&mut c, vec![batch(&data, 0..50)]).await.unwrap();
    c.admin.flush(flush_req()).await.unwrap();
    upsert(&mut c, vec![batch(&data, 50..100)]).await.unwrap();
    c.admin.flush(flush_req()).await.unwrap();

    // A compaction starts and is held before it writes the merged segment.
    std::fs::write(&plan, "hold = compaction\n").unwrap();
    let mut admin = c.admin.clone();
    let compact = tokio::spawn(async move {
        admin
            .compact(pb::CompactRequest {
                collection: "f".into(),
                keep_r_c: 0,
            })
            .await
    });
    held(&plan, "compaction").await;
    c.collections
        .delete_collection(pb::DeleteCollectionRequest { name: "f".into() })
        .await
        .unwrap();
    c.collections
        .create_collection(create_req("f", DIM, MC, 4))
        .await
        .unwrap();
    upsert(&mut c, vec![batch(&data, 100..130)]).await.unwrap();
    c.admin.flush(flush_req()).await.unwrap();
    upsert(&mut c, vec![batch(&data, 130..160)]).await.unwrap();
    c.admin.flush(flush_req()).await.unwrap();
    // Release the hold (a compaction still waiting there goes on).
    std::fs::write(&plan, "").unwrap();
    let err = compact.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("deleted"), "{err:?}");

    // The successor is whole and holds only its own documents, also after a restart.
    upsert(&mut c, vec![batch(&data, 160..170)]).await.unwrap();
    c.admin.flush(flush_req()).await.unwrap();
    c.admin
        .compact(pb::CompactRequest {
            collection: "f".into(),
            keep_r_c: 0,
        })
        .await
        .unwrap();
    search_works(&mut c, &data).await;
    assert_eq!(present(&mut c, &data, 100..170).await, 70);
    assert_eq!(present(&mut c, &data, 0..100).await, 0);
    drop(server);
    let server = start(&data_dir, &plan);
    let mut c = server.clients().await;
    assert_eq!(present(&mut c, &data, 100..170).await, 70);
    assert_eq!(present(&mut c, &data, 0..100).await, 0);
    let info = c
        .collections
        .get_collection(pb::GetCollectionRequest { name: "f".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((info.live_docs, info.segments.len()), (70, 1));
    collection_dir(&data_dir, "f");
}

fn verify(data: &Path, json: bool) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_metavec"));
    if json {
        cmd.arg("--json");
    }
    cmd.args(["verify", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_writing_the_graph_is_resource_exhausted_naming_it_and_leaves_no_orphan() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("fault-plan");
    let data_dir = dir.path().join("data");
    let data = data();
    let mut server = start(&data_dir, &plan);
    let mut c = server.clients().await;
    c.collections
        .create_collection(create_req("f", DIM, MC, 4))
        .await
        .unwrap();
    upsert(&mut c, vec![batch(&data, 0..60)]).await.unwrap();

    // The graph file goes into a disk with no space left.
    std::fs::write(&plan, "path_contains = hnsw\nquota = 0\n").unwrap();
    let err = c.admin.flush(flush_req()).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains(".hnsw."), "names the file: {err:?}");
    let seg_dir = collection_dir(&data_dir, "f").join("segments");
    let left: Vec<_> = std::fs::read_dir(&seg_dir).unwrap().flatten().collect();
    assert!(left.is_empty(), "no half-made segment is left: {left:?}");
    search_works(&mut c, &data).await;
    std::fs::write(&plan, "").unwrap();
    c.admin.flush(flush_req()).await.unwrap();
    assert!(server.terminate(), "graceful stop");

    // Offline verify: clean, and no orphan files.
    let out = verify(&data_dir, true);
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["orphans"], serde_json::json!([]), "{report}");

    // A file no manifest lists (what a crash mid-flush leaves) is reported, not a failure: the
    // server removes it at its next open.
    let stray = seg_dir.join("seg-00000000000000ff.mvs");
    std::fs::write(&stray, b"left by a crash").unwrap();
    let out = verify(&data_dir, true);
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["orphans"],
        serde_json::json!([stray.to_str().unwrap()]),
        "{report}"
    );
    let out = verify(&data_dir, false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("ORPHAN") && text.contains(stray.to_str().unwrap()),
        "{text}"
    );
    let server = start(&data_dir, &plan);
    let mut c = server.clients().await;
    assert_eq!(present(&mut c, &data, 0..60).await, 60);
    assert!(!stray.exists(), "removed at open");
}
