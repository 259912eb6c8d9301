//! `metavec-api` as a client library from another crate: its example (crates/metavec-api/
//! examples/client.rs, built by `cargo test --workspace`) runs against a real server.

use std::process::Command;

use crate::support::{skip_or_fail, Server};

#[test]
fn rust_client_example_round_trips() {
    // target/<profile>/deps/grpc-<hash> -> target/<profile>/examples/client
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("client"))
        .unwrap();
    if !example.is_file() {
        skip_or_fail(&format!(
            "{} not built (cargo test --workspace builds it)",
            example.display()
        ));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let out = Command::new(&example)
        .arg(format!("http://{}", server.addr))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "upserted 200 documents in 2 batches",
        r#"budget (1, 1): top ["doc-042""#,
        r#"budget (2, 4): top ["doc-042""#,
        r#"got doc-042 with payload {"n": 42}"#,
        "deleted rust-example",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
}
