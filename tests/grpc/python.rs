//! Python against a real server: examples/python/quickstart.py (when Python has grpcio,
//! grpcio-tools and numpy) and the client package's own tests (when `clients/python` and pytest
//! are installed). CI installs them, and under `CI=true` a missing one fails the test; elsewhere
//! each test says SKIPPED and passes.

use std::process::Command;

use crate::support::{skip_or_fail, Server};

#[test]
fn python_example_creates_ingests_and_searches() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import grpc, grpc_tools, numpy"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        skip_or_fail(&format!("{python} lacks grpcio / grpcio-tools / numpy"));
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

/// The installable Python client (`clients/python`, `pip install ./clients/python`) runs its own
/// pytest suite against this build's binary, when the package and pytest are installed (CI
/// installs both into .venv); otherwise fails under `CI=true`, or says so and passes.
#[test]
fn python_client_package_passes_its_tests() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import metavec.v1.metavec_pb2, pytest"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        skip_or_fail(&format!(
            "{python} lacks the metavec client or pytest (pip install ./clients/python pytest)"
        ));
        return;
    }
    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(root.join("clients/python/tests"))
        .env("METAVEC_BIN", env!("CARGO_BIN_EXE_metavec"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python client's tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed"), "{stdout}");
    assert!(!stdout.contains("skipped"), "{stdout}");
}
