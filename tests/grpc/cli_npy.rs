//! The CLI's `.npy` input and its stdout, against a running server (issue 16, defects 6 and 7):
//! a Fortran-order file loads and searches as its C-order twin does; a damaged file is refused
//! naming the file; a reader that closes stdout early (`| head`) ends the CLI quietly.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use metavec_core::synth::{generate, SynthSpec};

use crate::cli::{hits, metavec, ok};
use crate::support::*;

/// Writes `values` (the array in C order) as a little-endian f32 `.npy` file, its data laid out
/// in Fortran order (first index fastest) when `fortran`, as `np.asfortranarray(a)` saves it.
pub(crate) fn write_npy(path: &Path, shape: &[usize], values: &[f32], fortran: bool) {
    assert_eq!(shape.iter().product::<usize>(), values.len());
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': {}, 'shape': ({}), }}",
        if fortran { "True" } else { "False" },
        shape.iter().map(|d| format!("{d},")).collect::<String>()
    );
    let mut text = dict.into_bytes();
    while !(10 + text.len() + 1).is_multiple_of(64) {
        text.push(b' ');
    }
    text.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&u16::try_from(text.len()).unwrap().to_le_bytes());
    out.extend_from_slice(&text);
    let laid_out = if fortran {
        // Element (i0, .., ik) of the C-order array goes to offset i0 + d0 * (i1 + d1 * (..)).
        let mut f = vec![0f32; values.len()];
        for (c, &v) in values.iter().enumerate() {
            let (mut rest, mut off, mut stride) = (c, 0, 1);
            let mut idx = vec![0; shape.len()];
            for a in (0..shape.len()).rev() {
                idx[a] = rest % shape[a];
                rest /= shape[a];
            }
            for (a, &i) in idx.iter().enumerate() {
                off += i * stride;
                stride *= shape[a];
            }
            f[off] = v;
        }
        f
    } else {
        values.to_vec()
    };
    out.extend(laid_out.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, out).unwrap();
}

const N: usize = 120;
const DIM: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fortran_order_npy_loads_and_searches_as_its_c_order_twin() {
    let tmp = tempfile::tempdir().unwrap();
    let data = generate(&SynthSpec::new(N, 6, DIM, &[(1, 1), (2, 4), (4, 8)], 5));
    let p = |name: &str| tmp.path().join(name);
    write_npy(&p("docs_c.npy"), &[N, 8, DIM], &data.docs, false);
    write_npy(&p("docs_f.npy"), &[N, 8, DIM], &data.docs, true);
    write_npy(&p("q_c.npy"), &[6, 4, DIM], &data.queries, false);
    write_npy(&p("q_f.npy"), &[6, 4, DIM], &data.queries, true);
    let server = Server::start(&tmp.path().join("data"), &[]);
    let a = &server.addr;
    for (name, file) in [("c", "docs_c.npy"), ("f", "docs_f.npy")] {
        ok(metavec(
            a,
            &[
                "collections",
                "create",
                name,
                "--dim",
                "16",
                "--doc-vectors",
                "8",
                "--query-vectors",
                "4",
            ],
        ));
        let out = ok(metavec(
            a,
            &[
                "load",
                "--collection",
                name,
                "--npy",
                p(file).to_str().unwrap(),
            ],
        ));
        assert!(out.contains(&format!("upserted {N} documents")), "{out}");
    }

    // Both collections hold the original documents (normalised), row by row.
    let mut c = server.clients().await;
    let ids: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    let from_c = stored(&mut c, "c", ids.clone()).await;
    let from_f = stored(&mut c, "f", ids).await;
    assert_eq!(from_c.len(), N);
    assert_eq!(from_f.len(), N);
    for i in 0..N {
        let mut want = data.doc(i).to_vec();
        metavec_core::document::normalize_rows(&mut want, DIM, "doc").unwrap();
        let id = i.to_string();
        assert_eq!(from_c[&id].0, want, "C order, document {i}");
        assert_eq!(from_f[&id].0, want, "Fortran order, document {i}");
    }

    // Fortran-order queries against the Fortran-loaded collection: the C-order answers.
    let search = |coll: &str, q: &str| {
        hits(&ok(metavec(
            a,
            &[
                "--json",
                "search",
                "--collection",
                coll,
                "--npy",
                p(q).to_str().unwrap(),
                "--budget",
                "4x8",
                "-k",
                "20",
                "--exact",
            ],
        )))
    };
    let want = search("c", "q_c.npy");
    assert_eq!(want.len(), 6);
    assert!(want.iter().all(|h| h.len() == 20));
    assert_eq!(search("f", "q_f.npy"), want);

    // A damaged file is refused before anything is sent, naming the file and what is wrong.
    let mut bytes = std::fs::read(p("docs_f.npy")).unwrap();
    bytes.truncate(bytes.len() - 4);
    std::fs::write(p("short.npy"), &bytes).unwrap();
    let extra = std::fs::read(p("docs_c.npy"))
        .unwrap()
        .windows(7)
        .position(|w| w == b"'shape'")
        .unwrap();
    let mut bytes = std::fs::read(p("docs_c.npy")).unwrap();
    bytes[extra..extra + 7].copy_from_slice(b"'shope'");
    std::fs::write(p("bad_key.npy"), &bytes).unwrap();
    for (file, why) in [
        ("short.npy", "data bytes, the file holds"),
        (
            "bad_key.npy",
            "expected exactly descr, fortran_order and shape",
        ),
    ] {
        let out = metavec(
            a,
            &[
                "load",
                "--collection",
                "c",
                "--npy",
                p(file).to_str().unwrap(),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file}: {err}");
        assert!(
            err.contains(p(file).to_str().unwrap()) && err.contains(why),
            "{file}: {err}"
        );
    }
}

/// `metavec --json search ... | head -1`: the reader closes the pipe after one line while the CLI
/// still has megabytes to write (more than any pipe buffer holds), so its next write fails.
#[test]
fn a_closed_stdout_ends_the_cli_quietly() {
    const DOCS: usize = 300;
    let tmp = tempfile::tempdir().unwrap();
    let data = generate(&SynthSpec::new(
        DOCS,
        100,
        DIM,
        &[(1, 1), (2, 4), (4, 8)],
        7,
    ));
    let (docs, queries, payload) = (
        tmp.path().join("docs.npy"),
        tmp.path().join("q.npy"),
        tmp.path().join("payload.jsonl"),
    );
    write_npy(&docs, &[DOCS, 8, DIM], &data.docs, false);
    write_npy(&queries, &[100, 4, DIM], &data.queries, false);
    let filler = "x".repeat(100);
    std::fs::write(
        &payload,
        (0..DOCS)
            .map(|i| format!("{{\"i\":{i},\"text\":\"{filler}\"}}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    let a = &server.addr;
    ok(metavec(
        a,
        &[
            "collections",
            "create",
            "x",
            "--dim",
            "16",
            "--doc-vectors",
            "8",
            "--query-vectors",
            "4",
        ],
    ));
    ok(metavec(
        a,
        &[
            "load",
            "--collection",
            "x",
            "--npy",
            docs.to_str().unwrap(),
            "--payload",
            payload.to_str().unwrap(),
        ],
    ));
    // 100 lines of 300 hits with ~110-byte payloads: about 4 MB of output.
    let mut child = Command::new(env!("CARGO_BIN_EXE_metavec"))
        .args([
            "--addr",
            a,
            "--json",
            "search",
            "--collection",
            "x",
            "--npy",
        ])
        .arg(&queries)
        .args(["--budget", "1x1", "-k", "300", "--exact", "--with-payload"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    reader.read_line(&mut first).unwrap();
    let line: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(line["hits"].as_array().unwrap().len(), DOCS);
    drop(reader); // closes the read end, as `head` does when it has its lines
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
    assert!(out.status.success(), "{:?}: {err}", out.status);
}
