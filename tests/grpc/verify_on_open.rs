//! `--verify-on-open`: every block checksum of every segment is checked at start. A byte flipped
//! inside a vector block makes that collection fail to open (FAILED_PRECONDITION naming the
//! file) while the clean one serves; without the flag the same collection opens and the flip is
//! found when a search first touches the block (DATA_LOSS naming the file).

use std::path::{Path, PathBuf};

use metavec_api::pb;

use crate::support::*;

const DIM: u32 = 8;
const MC: u32 = 4;
const N: usize = 50;

/// Every `.mvs` file under `dir`.
fn segment_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            segment_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "mvs") {
            out.push(p);
        }
    }
}

fn exact(name: &str) -> pb::SearchRequest {
    let mut q = search_req(name, vectors(1, DIM, vec![0.5; DIM as usize]), 1, 1, 100);
    q.exact = true;
    q
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_on_open_refuses_a_flipped_segment_and_serves_a_clean_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let mut c = server.clients().await;
    for name in ["clean", "flipped"] {
        c.collections
            .create_collection(create_req(name, DIM, MC, 1))
            .await
            .unwrap();
        let documents = (0..N)
            .map(|i| pb::Document {
                id: format!("d{i}"),
                vectors: Some(vectors(
                    MC,
                    DIM,
                    (0..MC * DIM)
                        .map(|j| 1.0 + ((i as u32 * 7 + j) % 5) as f32)
                        .collect(),
                )),
                payload: String::new(),
            })
            .collect();
        upsert(
            &mut c,
            vec![pb::UpsertRequest {
                collection: name.into(),
                documents,
            }],
        )
        .await
        .unwrap();
        c.admin
            .flush(pb::FlushRequest {
                collection: name.into(),
            })
            .await
            .unwrap();
    }
    assert!(server.terminate());
    drop(server);

    // One segment per collection; flip a byte of document 0's vector 0 (group 0 starts at
    // offset 64, docs/FORMAT.md), which only its block checksum covers.
    let mut files = Vec::new();
    segment_files(dir.path(), &mut files);
    assert_eq!(files.len(), 2, "{files:?}");
    let seg = files
        .iter()
        .find(|p| p.to_string_lossy().contains("flipped"))
        .unwrap()
        .clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[64 + 5] ^= 0x40;
    std::fs::write(&seg, bytes).unwrap();
    let file_name = seg.file_name().unwrap().to_string_lossy().into_owned();

    // With the flag: the flipped collection is reported at open, the clean one serves.
    let server = Server::start(dir.path(), &["--verify-on-open"]);
    let mut c = server.clients().await;
    let e = c
        .collections
        .get_collection(pb::GetCollectionRequest {
            name: "flipped".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains(&file_name), "{}", e.message());
    let e = c.search.search(exact("flipped")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    let res = c.search.search(exact("clean")).await.unwrap().into_inner();
    assert_eq!(res.hits.len(), N);
    drop(server);

    // Without it: the collection opens; the first search over the block finds the flip.
    let server = Server::start(dir.path(), &[]);
    let mut c = server.clients().await;
    let info = c
        .collections
        .get_collection(pb::GetCollectionRequest {
            name: "flipped".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.live_docs, N as u64);
    let e = c.search.search(exact("flipped")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::DataLoss, "{e:?}");
    assert!(e.message().contains(&file_name), "{}", e.message());
}
