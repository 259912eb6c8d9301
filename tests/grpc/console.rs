//! The web console in headless Chromium: tests/console/drive.py (selenium with Debian's chromium
//! and chromium-driver) enters the API key, finds the collection, searches by a document id at
//! two budgets of the slider and sees the bench plot; the screenshots it saves are checked here.
//! Without chromium, chromedriver or selenium the test says SKIPPED and passes, except under
//! `CI=true` (`.ci/run` installs them), where it fails.

use std::path::Path;
use std::process::Command;

use metavec_api::pb;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        if !Path::new(tool).exists() {
            skip_or_fail(&format!(
                "{tool} is missing (apt-get install chromium chromium-driver)"
            ));
            return;
        }
    }
    let probe = Command::new(&python)
        .args(["-c", "import selenium"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        skip_or_fail(&format!("{python} lacks selenium (pip install selenium)"));
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("plot.svg");
    std::fs::write(
        &plot,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="400" height="200"><rect width="400" height="200" fill="#fff"/><polyline points="20,180 120,90 250,40 380,20" fill="none" stroke="#1f77b4" stroke-width="4"/></svg>"##,
    )
    .unwrap();
    let data_dir = dir.path().join("data");
    let plot_arg = plot.display().to_string();
    let mut server = Server::start(
        &data_dir,
        &[
            "--http-listen",
            "127.0.0.1:0",
            "--api-key",
            "console-key",
            "--bench-plot",
            &plot_arg,
        ],
    );
    let ch = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let key: tonic::metadata::MetadataValue<_> = "Bearer console-key".parse().unwrap();
    let auth = move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", key.clone());
        Ok(req)
    };
    let mut collections =
        pb::collections_client::CollectionsClient::with_interceptor(ch.clone(), auth.clone());
    let mut documents = pb::documents_client::DocumentsClient::with_interceptor(ch, auth);
    let data = metavec_core::synth::generate(&metavec_core::synth::SynthSpec::new(
        200,
        1,
        16,
        &[(1, 1), (2, 4), (4, 8)],
        3,
    ));
    collections
        .create_collection(create_req("console", 16, 8, 4))
        .await
        .unwrap();
    let batch = pb::UpsertRequest {
        collection: "console".into(),
        documents: (0..200).map(|i| synth_doc(&data, i)).collect(),
    };
    documents.upsert(tokio_stream::iter([batch])).await.unwrap();

    let shots = dir.path().join("shots");
    std::fs::create_dir(&shots).unwrap();
    let doc = metavec_core::synth::SynthData::id(17);
    let out = Command::new(&python)
        .arg(root.join("tests/console/drive.py"))
        .args([
            "--url",
            &format!("http://{}", server.http_addr.as_ref().unwrap()),
        ])
        .args([
            "--key",
            "console-key",
            "--collection",
            "console",
            "--doc-id",
            &doc,
        ])
        .arg("--out")
        .arg(&shots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the console check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert_eq!(seen["budgets"], serde_json::json!(["1x1", "4x8"]), "{seen}");
    // The query is the document itself: at (4, 8) it is its own best match.
    assert_eq!(seen["first_hit"][1], doc.as_str(), "{seen}");
    assert_eq!(seen["hits"], serde_json::json!([10, 10]), "{seen}");
    assert_eq!(seen["plot"], true);
    assert_eq!(seen["cookies"], 0, "the key must not become a cookie");
    let names = [
        "1-key.png",
        "2-collections.png",
        "3-first-budget.png",
        "4-last-budget.png",
        "5-plot.png",
    ];
    for name in names {
        let png = std::fs::read(shots.join(name)).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name} is not a PNG");
        // A blank 1280x1100 page compresses to a few KB; a page with tables and text does not.
        assert!(
            png.len() > 20_000,
            "{name}: {} bytes, looks blank",
            png.len()
        );
    }
    // The two searches drew different pages.
    assert_ne!(
        std::fs::read(shots.join(names[2])).unwrap(),
        std::fs::read(shots.join(names[3])).unwrap()
    );
    assert!(server.terminate());
}
