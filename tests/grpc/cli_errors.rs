//! Errors a person can act on: a server that is not there, a port in use (nothing created), a
//! host name to listen on, a payload file that does not match the vectors.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::cli::metavec;
use crate::support::Server;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn connection_refused_says_what_to_check() {
    // Port 1 on loopback: nothing listens there.
    let out = metavec("127.0.0.1:1", &["count", "docs"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot connect to http://127.0.0.1:1")
            && err.to_lowercase().contains("connection refused")
            && err.contains("metavec serve"),
        "{err}"
    );
}

#[test]
fn a_port_in_use_names_the_address_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("first"), &[]);
    let fresh = tmp.path().join("second");
    let out = Command::new(env!("CARGO_BIN_EXE_metavec"))
        .args(["serve", "--listen", &server.addr, "--data-dir"])
        .arg(&fresh)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("cannot listen on {}", server.addr)) && err.contains("--listen"),
        "{err}"
    );
    assert!(
        !fresh.exists(),
        "a refused start created {}",
        fresh.display()
    );
}

#[test]
fn listen_takes_a_host_name() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_metavec"))
        .args(["serve", "--listen", "localhost:0", "--data-dir"])
        .arg(tmp.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("metavec listening on "))
        .unwrap_or_default();
    child.kill().unwrap();
    child.wait().unwrap();
    let addr = line.trim_start_matches("metavec listening on ");
    assert!(
        addr.starts_with("127.0.0.1:") || addr.starts_with("[::1]:"),
        "{line}"
    );
}

#[test]
fn a_payload_file_that_does_not_match_says_the_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let npy = tmp.path().join("docs.npy");
    crate::cli_npy::write_npy(
        &npy,
        &[3, 1, 4],
        &(0..12).map(|i| 1.0 + i as f32).collect::<Vec<_>>(),
        false,
    );
    let payloads = tmp.path().join("p.jsonl");
    std::fs::write(&payloads, "{}\n{}\n").unwrap();
    // The file is checked before any connection is made.
    let out = metavec(
        "127.0.0.1:1",
        &[
            "load",
            "--collection",
            "c",
            "--npy",
            npy.to_str().unwrap(),
            "--payload",
            payloads.to_str().unwrap(),
        ],
    );
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("3 documents") && err.contains("2 payload lines"),
        "{err}"
    );
}
