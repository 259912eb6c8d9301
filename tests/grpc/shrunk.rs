//! After a shrink-to-budget compaction (issue 16, defect 4): Get reports the stored depth as the
//! vector count, for segment and memtable documents alike; `collections info` (gRPC and CLI)
//! shows the stored depth and the budgets it still serves; `inspect` shows the dtype.

use std::process::Command;

use metavec_api::pb;

use crate::support::*;

const DIM: u32 = 64;

fn doc(i: usize) -> pb::Document {
    pb::Document {
        id: format!("d{i}"),
        vectors: Some(vectors(
            4,
            DIM,
            (0..4 * DIM as usize)
                .map(|j| ((i + 1) * (j + 3) % 17) as f32 - 8.0)
                .collect(),
        )),
        payload: String::new(),
    }
}

fn cli(addr: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_metavec"))
        .args(["--addr", addr])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_info_report_the_stored_depth_after_a_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let mut c = server.clients().await;
    let mut create = create_req("shrunk", DIM, 4, 4);
    create.budgets = [(1, 1), (2, 2), (4, 4)]
        .into_iter()
        .map(|(r_q, r_c)| pb::Budget { r_q, r_c })
        .collect();
    create.dtype = "bf16".into();
    c.collections.create_collection(create).await.unwrap();
    let up = |docs: Vec<pb::Document>| {
        vec![pb::UpsertRequest {
            collection: "shrunk".into(),
            documents: docs,
        }]
    };
    upsert(&mut c, up((0..20).map(doc).collect()))
        .await
        .unwrap();
    let r = c
        .admin
        .compact(pb::CompactRequest {
            collection: "shrunk".into(),
            keep_r_c: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.stored_vectors, 2);
    // A document written after the shrink stays in the memtable.
    upsert(&mut c, up(vec![doc(100)])).await.unwrap();

    let got = c
        .documents
        .get(pb::GetRequest {
            collection: "shrunk".into(),
            ids: vec!["d3".into(), "d100".into()],
            ids_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.documents.len(), 2);
    for d in &got.documents {
        let v = d.vectors.as_ref().unwrap();
        assert_eq!(
            (v.count, v.dim, v.values.len()),
            (2, DIM, 2 * DIM as usize),
            "{}: count x dim must match the values",
            d.id
        );
    }

    let info = c
        .collections
        .get_collection(pb::GetCollectionRequest {
            name: "shrunk".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.stored_vectors, 2);
    let serves: Vec<(u32, u32)> = info
        .servable_budgets
        .iter()
        .map(|b| (b.r_q, b.r_c))
        .collect();
    assert_eq!(serves, [(1, 1), (2, 2)]);
    assert_eq!(info.config.unwrap().budgets.len(), 3);

    let text = cli(&server.addr, &["collections", "info", "shrunk"]);
    assert!(
        text.contains("stored 2 vectors/doc, serves (1,1) (2,2)"),
        "{text}"
    );
    let json = cli(&server.addr, &["--json", "collections", "info", "shrunk"]);
    let v: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(v["stored_vectors"], 2, "{json}");
    assert_eq!(
        v["servable_budgets"],
        serde_json::json!(["1x1", "2x2"]),
        "{json}"
    );

    assert!(server.terminate());
    let text = cli(
        &server.addr,
        &["inspect", "--data-dir", dir.path().to_str().unwrap()],
    );
    assert!(text.contains("dtype bf16"), "{text}");
}
