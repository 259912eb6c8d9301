//! Runs examples/python/quickstart.py against a real server when Python with grpcio, grpcio-tools
//! and numpy is available (CI installs them); otherwise says so and passes.

use std::process::Command;

use crate::support::Server;

#[test]
fn python_example_creates_ingests_and_searches() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import grpc, grpc_tools, numpy"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: {python} lacks grpcio / grpcio-tools / numpy");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let npy = dir.path().join("docs.npy");
    let out = Command::new(&python)
        .arg(root.join("examples/python/quickstart.py"))
        .args(["--addr", &server.addr, "--make-npy"])
        .arg(&npy)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "quickstart failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("top hit: doc-0000"), "{stdout}");
}
