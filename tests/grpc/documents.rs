//! Documents as a set, over gRPC and through the CLI: Scroll (paged, filtered, with and without
//! vectors and payloads), Count, DeleteByFilter, SetPayload; the CLI's get / delete / count /
//! scroll / export / set-payload and `load --id-field`; an export loaded back is the same
//! collection.

use std::collections::BTreeMap;

use metavec_api::pb;
use metavec_core::synth::{generate, SynthData, SynthSpec};
use tonic::Code;

use crate::cli::{metavec, ok};
use crate::cli_npy::write_npy;
use crate::support::{create_req, synth_doc, upsert, Server};

fn docs(data: &SynthData, n: usize) -> Vec<pb::Document> {
    (0..n)
        .map(|i| pb::Document {
            payload: format!(
                r#"{{"i":{i},"g":"g{}","meta":{{"odd":{}}}}}"#,
                i % 4,
                i % 2 == 1
            ),
            ..synth_doc(data, i)
        })
        .collect()
}

#[tokio::test]
async fn scroll_count_delete_by_filter_and_set_payload_over_grpc() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &["--memtable-mb", "1"]);
    let mut c = server.clients().await;
    let data = generate(&SynthSpec::new(400, 1, 16, &[(1, 1), (2, 4)], 11));
    let mut create = create_req("d", 16, 4, 2);
    create.dtype = "f32".into();
    c.collections.create_collection(create).await.unwrap();
    let all = docs(&data, 400);
    for chunk in all.chunks(100) {
        upsert(
            &mut c,
            vec![pb::UpsertRequest {
                collection: "d".into(),
                documents: chunk.to_vec(),
            }],
        )
        .await
        .unwrap();
    }
    let mut model: BTreeMap<String, pb::Document> =
        all.into_iter().map(|d| (d.id.clone(), d)).collect();

    let reader = c.documents.clone();
    let scroll_all = |filter: &str, limit: u32, vectors: bool| {
        let mut docs = reader.clone();
        let filter = filter.to_string();
        async move {
            let (mut out, mut cursor) = (Vec::new(), String::new());
            loop {
                let page = docs
                    .scroll(pb::ScrollRequest {
                        collection: "d".into(),
                        cursor: cursor.clone(),
                        limit,
                        filter: filter.clone(),
                        with_vectors: vectors,
                        with_payload: true,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert!(page.documents.len() <= limit as usize);
                out.extend(page.documents);
                if page.next_cursor.is_empty() {
                    return out;
                }
                cursor = page.next_cursor;
            }
        }
    };
    // Every document once, in id order, with its payload and vectors.
    let listed = scroll_all("", 37, true).await;
    assert_eq!(
        listed.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        model.keys().cloned().collect::<Vec<_>>()
    );
    // The stored vectors are Get's (normalised on the way in).
    let got = c
        .documents
        .get(pb::GetRequest {
            collection: "d".into(),
            ids: model.keys().cloned().collect(),
            ids_only: false,
        })
        .await
        .unwrap()
        .into_inner()
        .documents;
    assert_eq!(got.len(), 400);
    for (d, g) in listed.iter().zip(&got) {
        assert_eq!(d.payload, model[&d.id].payload);
        assert_eq!((&d.id, &d.vectors), (&g.id, &g.vectors));
    }
    for g in got {
        model.get_mut(&g.id).unwrap().vectors = g.vectors;
    }
    let odd = r#"{"eq": {"field": "meta.odd", "value": true}}"#;
    let odd_ids: Vec<String> = listed
        .iter()
        .filter(|d| d.payload.contains(r#""odd":true"#))
        .map(|d| d.id.clone())
        .collect();
    let got = scroll_all(odd, 1000, false).await;
    assert_eq!(
        got.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        odd_ids
    );
    assert!(got
        .iter()
        .all(|d| d.vectors.is_none() && !d.payload.is_empty()));
    let count = |filter: &str| {
        let mut docs = reader.clone();
        let filter = filter.to_string();
        async move {
            docs.count(pb::CountRequest {
                collection: "d".into(),
                filter,
            })
            .await
            .map(|r| r.into_inner().count)
        }
    };
    assert_eq!(count("").await.unwrap(), 400);
    assert_eq!(count(odd).await.unwrap(), 200);

    // SetPayload: merge into a sealed and a fresh document, then the filter sees it.
    let ids = vec![SynthData::id(0), SynthData::id(399)];
    let r = c
        .documents
        .set_payload(pb::SetPayloadRequest {
            collection: "d".into(),
            ids: ids.clone(),
            payload: r#"{"flag":"x"}"#.into(),
            merge: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.updated, 2);
    let flagged = scroll_all(r#"{"eq": {"field": "flag", "value": "x"}}"#, 10, true).await;
    assert_eq!(
        flagged.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        ids
    );
    for d in &flagged {
        let p: serde_json::Value = serde_json::from_str(&d.payload).unwrap();
        assert_eq!(p["flag"], "x");
        assert!(p["i"].is_number(), "merge keeps the other keys: {p}");
        assert_eq!(
            d.vectors.as_ref().unwrap().values,
            model[&d.id].vectors.as_ref().unwrap().values,
            "vectors unchanged"
        );
        model.get_mut(&d.id).unwrap().payload = d.payload.clone();
    }
    // Unknown id: NOT_FOUND naming it, nothing updated.
    let e = c
        .documents
        .set_payload(pb::SetPayloadRequest {
            collection: "d".into(),
            ids: vec![SynthData::id(1), "missing".into()],
            payload: r#"{"flag":"y"}"#.into(),
            merge: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("\"missing\""), "{}", e.message());
    assert_eq!(
        count(r#"{"eq": {"field": "flag", "value": "y"}}"#)
            .await
            .unwrap(),
        0
    );

    // DeleteByFilter removes exactly the matches.
    let g1 = r#"{"eq": {"field": "g", "value": "g1"}}"#;
    let r = c
        .documents
        .delete_by_filter(pb::DeleteByFilterRequest {
            collection: "d".into(),
            filter: g1.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.deleted, 100);
    assert_eq!(count(g1).await.unwrap(), 0);
    assert_eq!(count("").await.unwrap(), 300);
    model.retain(|_, d| !d.payload.contains(r#""g":"g1""#));
    let listed = scroll_all("", 1000, false).await;
    assert_eq!(
        listed.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        model.keys().cloned().collect::<Vec<_>>()
    );

    // Bad requests: the status and the field named.
    let bad_scroll = |limit: u32, filter: &str, collection: &str| pb::ScrollRequest {
        collection: collection.into(),
        limit,
        filter: filter.into(),
        ..Default::default()
    };
    for (req, code, what) in [
        (bad_scroll(10_001, "", "d"), Code::InvalidArgument, "limit"),
        (
            bad_scroll(5, "{\"eq\": 1}", "d"),
            Code::InvalidArgument,
            "filter",
        ),
        (bad_scroll(5, "", "nope"), Code::NotFound, "nope"),
    ] {
        let e = c.documents.scroll(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().contains(what), "{}", e.message());
    }
    let e = c
        .documents
        .delete_by_filter(pb::DeleteByFilterRequest {
            collection: "d".into(),
            filter: " ".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("filter is empty"), "{}", e.message());
    for (ids, payload, what) in [
        (vec![], "{}", "ids has 0 entries"),
        (vec![SynthData::id(2)], "[1]", "JSON object"),
        (
            vec![SynthData::id(2), SynthData::id(2)],
            "{}",
            "appears twice",
        ),
    ] {
        let e = c
            .documents
            .set_payload(pb::SetPayloadRequest {
                collection: "d".into(),
                ids,
                payload: payload.into(),
                merge: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(what), "{}", e.message());
    }
    // Nothing a refused request touched changed.
    assert_eq!(count("").await.unwrap(), 300);
}

#[test]
fn cli_document_commands_and_an_export_that_loads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    let a = server.addr.clone();
    // 60 documents of 4 x 8 f32, payloads carrying their ids in a nested field.
    let data = generate(&SynthSpec::new(60, 1, 8, &[(1, 1), (2, 4)], 3));
    let npy = tmp.path().join("docs.npy");
    write_npy(&npy, &[60, 4, 8], &data.docs[..60 * 32], false);
    let long = "x".repeat(300);
    let payloads: Vec<String> = (0..60)
        .map(|i| {
            format!(
                r#"{{"doc":{{"key":"doc-{i:03}"}},"lang":"{}","text":"{long}"}}"#,
                ["en", "de", "fr"][i % 3]
            )
        })
        .collect();
    let pfile = tmp.path().join("payloads.jsonl");
    std::fs::write(&pfile, payloads.join("\n")).unwrap();
    for name in ["src", "back"] {
        ok(metavec(
            &a,
            &[
                "collections",
                "create",
                name,
                "--dim",
                "8",
                "--doc-vectors",
                "4",
                "--query-vectors",
                "2",
                "--dtype",
                "f32",
            ],
        ));
    }
    let (npy_s, pfile_s) = (npy.to_str().unwrap(), pfile.to_str().unwrap());
    let out = ok(metavec(
        &a,
        &[
            "load",
            "--collection",
            "src",
            "--npy",
            npy_s,
            "--payload",
            pfile_s,
            "--id-field",
            "doc.key",
        ],
    ));
    assert!(out.contains("upserted 60 documents"), "{out}");
    ok(metavec(&a, &["flush", "src"]));

    // Tables show sizes and times for people (--json keeps the raw numbers).
    let out = ok(metavec(&a, &["stats", "src"]));
    assert!(out.contains(" KiB") && !out.contains(" B "), "{out}");
    let raw: serde_json::Value =
        serde_json::from_str(ok(metavec(&a, &["--json", "stats", "src"])).trim()).unwrap();
    assert!(raw["segment_bytes"].as_u64().unwrap() > 1024, "{raw}");
    ok(metavec(&a, &["snapshot", "create", "src"]));
    let out = ok(metavec(&a, &["snapshot", "list"]));
    let year = jiff::Timestamp::now().strftime("%Y-").to_string();
    assert!(out.contains(" UTC") && out.contains(&year), "{out}");

    // An untrained budget: the message names the CLI's flag, not the gRPC field.
    let qnpy = tmp.path().join("q.npy");
    write_npy(&qnpy, &[1, 2, 8], &data.queries[..16], false);
    let q = qnpy.to_str().unwrap();
    let bad = metavec(
        &a,
        &[
            "search",
            "--collection",
            "src",
            "--npy",
            q,
            "--budget",
            "1x4",
        ],
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success()
            && err.contains("pass --allow-untrained-budget")
            && !err.contains("allow_untrained"),
        "{err}"
    );
    ok(metavec(
        &a,
        &[
            "search",
            "--collection",
            "src",
            "--npy",
            q,
            "--budget",
            "1x4",
            "--allow-untrained-budget",
        ],
    ));

    // get: payloads as JSON objects in --json, cut in the table; a missing id fails naming it.
    let out = ok(metavec(&a, &["--json", "get", "src", "doc-007"]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["id"], "doc-007");
    assert_eq!(v["payload"]["lang"], "de", "payload is an object: {v}");
    let out = ok(metavec(&a, &["get", "src", "doc-007"]));
    assert!(
        out.contains("doc-007") && out.contains('…') && !out.contains(&long),
        "{out}"
    );
    let bad = metavec(&a, &["get", "src", "doc-007", "nope"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("1 of 2 ids not found") && err.contains("nope"),
        "{err}"
    );

    // count and scroll.
    let en = r#"{"eq": {"field": "lang", "value": "en"}}"#;
    assert_eq!(ok(metavec(&a, &["count", "src"])).trim(), "60");
    assert_eq!(
        ok(metavec(&a, &["count", "src", "--filter", en])).trim(),
        "20"
    );
    let out = ok(metavec(
        &a,
        &["--json", "scroll", "src", "--limit", "7", "--all"],
    ));
    let ids: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        ids,
        (0..60).map(|i| format!("doc-{i:03}")).collect::<Vec<_>>()
    );
    let out = ok(metavec(&a, &["scroll", "src", "--limit", "5"]));
    assert!(out.contains("next page: --cursor doc-004"), "{out}");

    // set-payload --merge, then delete --filter and by id.
    let out = ok(metavec(
        &a,
        &[
            "set-payload",
            "src",
            "doc-000",
            "doc-001",
            "--payload",
            r#"{"lang":"en","star":1}"#,
            "--merge",
        ],
    ));
    assert!(out.contains("updated the payload of 2 documents"), "{out}");
    assert_eq!(
        ok(metavec(&a, &["count", "src", "--filter", en])).trim(),
        "21"
    );
    let out = ok(metavec(&a, &["delete", "src", "--filter", en]));
    assert!(out.contains("deleted 21 documents"), "{out}");
    let out = ok(metavec(&a, &["delete", "src", "doc-002", "doc-999"]));
    assert!(out.contains("deleted 1 documents"), "{out}");
    assert_eq!(ok(metavec(&a, &["count", "src"])).trim(), "38");

    // export, then load the files into another collection: the same documents.
    let dir = tmp.path().join("export");
    let out = ok(metavec(
        &a,
        &[
            "export",
            "src",
            "--out",
            dir.to_str().unwrap(),
            "--page",
            "9",
        ],
    ));
    assert!(
        out.contains("exported 38 documents (4 x 8 vectors each)"),
        "{out}"
    );
    ok(metavec(
        &a,
        &[
            "load",
            "--collection",
            "back",
            "--npy",
            dir.join("docs.npy").to_str().unwrap(),
            "--ids",
            dir.join("ids.txt").to_str().unwrap(),
            "--payload",
            dir.join("payloads.jsonl").to_str().unwrap(),
        ],
    ));
    let dump = |name: &str| {
        let out = ok(metavec(
            &a,
            &[
                "--json",
                "scroll",
                name,
                "--all",
                "--with-payload",
                "--limit",
                "1000",
            ],
        ));
        let ids: Vec<String> = out
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let mut args = vec!["--json", "get", name, "--vectors"];
        args.extend(ids.iter().map(String::as_str));
        ok(metavec(&a, &args))
    };
    let (src, back) = (dump("src"), dump("back"));
    assert_eq!(src.lines().count(), 38);
    assert_eq!(src, back, "the export loaded back differs");
}
