//! The CLI against a real server: load a .npy, search, flush, compact, snapshot, restore, stats;
//! then, with the server stopped, inspect and verify (including a damaged file).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::Server;

/// Runs the CLI against `addr`; its output, whatever the exit.
pub(crate) fn metavec(addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metavec"))
        .args(["--addr", addr])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// Stdout of a run that must succeed.
pub(crate) fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The real manpages-1k set when ../shared is beside the repo, else a small generated f32 file.
fn dataset(tmp: &Path) -> (PathBuf, PathBuf, u32, u32, u32, usize) {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/manpages-1k");
    if shared.join("docs.npy").is_file() {
        return (
            shared.join("docs.npy"),
            shared.join("queries.npy"),
            384,
            64,
            16,
            1024,
        );
    }
    eprintln!("../shared/data not found: using generated data");
    let spec = metavec_core::synth::SynthSpec::new(300, 10, 32, &[(1, 1), (2, 4), (4, 8)], 2);
    let d = metavec_core::synth::generate(&spec);
    crate::cli_npy::write_npy(&tmp.join("docs.npy"), &[300, 8, 32], &d.docs, false);
    crate::cli_npy::write_npy(&tmp.join("queries.npy"), &[10, 4, 32], &d.queries, false);
    (tmp.join("docs.npy"), tmp.join("queries.npy"), 32, 8, 4, 300)
}

/// (id, score) of every hit, per query, from `--json search` output.
pub(crate) fn hits(json_lines: &str) -> Vec<Vec<(String, f64)>> {
    json_lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h["id"].as_str().unwrap().to_string(),
                        h["score"].as_f64().unwrap(),
                    )
                })
                .collect()
        })
        .collect()
}

#[test]
fn cli_round_trip_and_offline_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let (docs, queries, dim, mc, mq, n) = dataset(tmp.path());
    // No background merges: the `compact` below must find the segments the test made.
    let mut server = Server::start(&data_dir, &["--compact-fanout", "64"]);
    let a = server.addr.clone();
    let (dim_s, mc_s, mq_s) = (dim.to_string(), mc.to_string(), mq.to_string());
    ok(metavec(
        &a,
        &[
            "collections",
            "create",
            "docs",
            "--dim",
            &dim_s,
            "--doc-vectors",
            &mc_s,
            "--query-vectors",
            &mq_s,
        ],
    ));
    let out = ok(metavec(&a, &["--json", "collections", "list"]));
    assert!(out.contains("\"name\":\"docs\""), "{out}");

    let out = ok(metavec(
        &a,
        &[
            "load",
            "--collection",
            "docs",
            "--npy",
            docs.to_str().unwrap(),
            "--batch",
            "100",
        ],
    ));
    assert!(out.contains(&format!("upserted {n} documents")), "{out}");
    ok(metavec(&a, &["flush", "docs"]));
    let out = ok(metavec(
        &a,
        &[
            "load",
            "--collection",
            "docs",
            "--npy",
            docs.to_str().unwrap(),
            "--resume",
        ],
    ));
    assert!(
        out.contains("upserted 0 documents") && out.contains(&format!("{n} already present")),
        "{out}"
    );

    // Real-data recall: default search vs exact at every trained budget, through the CLI.
    let info: serde_json::Value = serde_json::from_str(
        ok(metavec(&a, &["--json", "collections", "info", "docs"]))
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    for b in info["budgets"].as_array().unwrap() {
        let b = b.as_str().unwrap();
        let q = queries.to_str().unwrap();
        let fast = hits(&ok(metavec(
            &a,
            &[
                "--json",
                "search",
                "--collection",
                "docs",
                "--npy",
                q,
                "--budget",
                b,
                "-k",
                "10",
            ],
        )));
        let exact = hits(&ok(metavec(
            &a,
            &[
                "--json",
                "search",
                "--collection",
                "docs",
                "--npy",
                q,
                "--budget",
                b,
                "-k",
                "10",
                "--exact",
            ],
        )));
        let found: usize = fast
            .iter()
            .zip(&exact)
            .map(|(f, e)| e.iter().filter(|x| f.iter().any(|y| y.0 == x.0)).count())
            .sum();
        let recall = found as f64 / exact.iter().map(Vec::len).sum::<usize>() as f64;
        eprintln!("CLI recall@10 at {b}: {recall:.3}");
        assert!(recall >= 0.95, "recall {recall} at {b}");
    }
    let cascade = ok(metavec(
        &a,
        &[
            "--json",
            "search",
            "--collection",
            "docs",
            "--npy",
            queries.to_str().unwrap(),
            "--budget",
            "4x8",
            "--stages",
            "1x1:100,2x4:30",
        ],
    ));
    assert!(hits(&cascade).iter().all(|h| h.len() == 10));
    let table = ok(metavec(
        &a,
        &[
            "search",
            "--collection",
            "docs",
            "--npy",
            queries.to_str().unwrap(),
            "--budget",
            "1x1",
            "-k",
            "3",
        ],
    ));
    assert!(table.starts_with("query"), "{table}");

    // A second segment, then compaction merges the two.
    let ids = tmp.path().join("ids.txt");
    std::fs::write(
        &ids,
        (0..n).map(|i| format!("again-{i}\n")).collect::<String>(),
    )
    .unwrap();
    ok(metavec(
        &a,
        &[
            "load",
            "--collection",
            "docs",
            "--npy",
            docs.to_str().unwrap(),
            "--ids",
            ids.to_str().unwrap(),
        ],
    ));
    ok(metavec(&a, &["flush"]));
    let out = ok(metavec(&a, &["compact", "docs"]));
    assert!(out.contains("merged segments"), "{out}");
    let stats = ok(metavec(&a, &["--json", "stats", "docs"]));
    let v: serde_json::Value = serde_json::from_str(stats.trim()).unwrap();
    assert_eq!(v["segments"], 1);
    assert_eq!(v["live_docs"], 2 * n);

    // Snapshot, restore under another name, same results.
    let snap: serde_json::Value =
        serde_json::from_str(ok(metavec(&a, &["--json", "snapshot", "create", "docs"])).trim())
            .unwrap();
    let name = snap["name"].as_str().unwrap().to_string();
    assert!(ok(metavec(&a, &["snapshot", "list"])).contains(&name));
    ok(metavec(&a, &["snapshot", "restore", &name, "--as", "copy"]));
    let q = queries.to_str().unwrap();
    let orig = ok(metavec(
        &a,
        &[
            "--json",
            "search",
            "--collection",
            "docs",
            "--npy",
            q,
            "--budget",
            "2x4",
        ],
    ));
    let copy = ok(metavec(
        &a,
        &[
            "--json",
            "search",
            "--collection",
            "copy",
            "--npy",
            q,
            "--budget",
            "2x4",
        ],
    ));
    assert_eq!(hits(&orig), hits(&copy));
    ok(metavec(&a, &["snapshot", "delete", &name]));
    // Shrink the copy to budget r_c = 4: deeper budgets are refused, kept ones still answer.
    let out = ok(metavec(&a, &["compact", "copy", "--keep-r-c", "4"]));
    assert!(out.contains("4 vectors per document stored"), "{out}");
    let deep = metavec(
        &a,
        &[
            "search",
            "--collection",
            "copy",
            "--npy",
            q,
            "--budget",
            "4x8",
        ],
    );
    assert!(!deep.status.success());
    assert!(String::from_utf8_lossy(&deep.stderr).contains("failed precondition: budget"));
    // The shrunk copy's segment (and its token index) is new: its exact answers at a kept
    // budget are the original's exact ones.
    let exact_at = |coll: &str| {
        ok(metavec(
            &a,
            &[
                "--json",
                "search",
                "--collection",
                coll,
                "--npy",
                q,
                "--budget",
                "2x4",
                "--exact",
            ],
        ))
    };
    assert_eq!(hits(&exact_at("copy")), hits(&exact_at("docs")));
    // Errors reach the user with the status and a non-zero exit.
    let bad = metavec(
        &a,
        &[
            "search",
            "--collection",
            "nope",
            "--npy",
            q,
            "--budget",
            "1x1",
        ],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not found: "));

    assert!(server.terminate());
    let out = ok(metavec(
        &a,
        &["inspect", "--data-dir", data_dir.to_str().unwrap()],
    ));
    assert!(
        out.contains("collection docs")
            && out.contains("collection copy")
            && out.contains("vectors 0..1"),
        "{out}"
    );
    let out = ok(metavec(
        &a,
        &["verify", "--data-dir", data_dir.to_str().unwrap()],
    ));
    assert!(out.contains("every checksum"), "{out}");
    // Damage one byte in the middle of a segment of "copy": verify names the file and fails.
    let seg_dir = std::fs::read_dir(data_dir.join("collections"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("copy.")
        })
        .expect("the directory of collection copy")
        .join("segments");
    let seg = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "mvs"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::remove_file(&seg).unwrap(); // a hard link shared with "docs"
    std::fs::write(&seg, &bytes).unwrap();
    let out = metavec(&a, &["verify", "--data-dir", data_dir.to_str().unwrap()]);
    assert!(!out.status.success(), "verify must fail on damage");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(seg.to_str().unwrap()) && text.contains("offset"),
        "{text}"
    );
}

#[test]
fn bench_subcommand_measures_every_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let svg = tmp.path().join("curve.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_metavec"))
        .args([
            "bench",
            "--docs",
            "600",
            "--dim",
            "16",
            "--doc-vectors",
            "8",
            "--query-vectors",
            "4",
            "--queries",
            "10",
            "--json",
            "--cascade",
            "100",
            // f32 rows, whose bytes per document the checks below count.
            "--dtype",
            "f32",
            "--plot",
        ])
        .arg(&svg)
        .arg("--write-npy")
        .arg(tmp.path())
        .output()
        .unwrap();
    let stdout = ok(out);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["docs"], 600);
    let rows: Vec<(&str, &str, Option<&str>)> = lines[1..]
        .iter()
        .map(|l| {
            (
                l["layout"].as_str().unwrap(),
                l["budget"].as_str().unwrap(),
                l["stage"].as_str(),
            )
        })
        .collect();
    // Every budget on metavec's grouped layout, then as a cascade after the trained budget below
    // it, then on the per-document contiguous baseline.
    assert_eq!(
        rows,
        [
            ("grouped", "1x1", None),
            ("grouped", "2x4", None),
            ("grouped", "4x8", None),
            ("grouped", "2x4", Some("1x1:100")),
            ("grouped", "4x8", Some("2x4:100")),
            ("contiguous", "1x1", None),
            ("contiguous", "2x4", None),
            ("contiguous", "4x8", None)
        ]
    );
    // The cascade to 4x8 scores every candidate at 2x4, then at most its 100 survivors' new
    // pairs (32 - 8 each; the bound may prune some, never the top 10).
    let plain_dots = lines[3]["dot_products_per_query"].as_u64().unwrap();
    let cascade_dots = lines[5]["dot_products_per_query"].as_u64().unwrap();
    let first = plain_dots / 32 * 8;
    assert!(
        (first + 10 * 24..=first + 100 * 24).contains(&cascade_dots),
        "{cascade_dots} dots after {first}"
    );
    for l in &lines[1..] {
        assert!(l["recall_at_10"].as_f64().unwrap() > 0.5);
        assert!(l["qps_1_thread"].as_f64().unwrap() > 0.0);
        assert!(l["vector_pages_per_query"].as_u64().unwrap() > 0);
    }
    // Bytes read per scored document grow with r_c: r_c rows of 16 f32. (At 1x1 the walk's
    // bound skips candidates, so fewer documents are scored there.)
    for (l, (r_q, r_c)) in lines[1..4].iter().zip([(1, 1), (2, 4), (4, 8)]) {
        let bytes = l["vector_bytes_per_query"].as_u64().unwrap();
        let docs = l["dot_products_per_query"].as_u64().unwrap() / (r_q * r_c);
        assert!(bytes.abs_diff(docs * r_c * 64) <= 64, "{l}");
    }
    assert_eq!(
        lines[3]["vector_bytes_per_query"].as_u64().unwrap(),
        2 * lines[2]["vector_bytes_per_query"].as_u64().unwrap(),
        "the same candidates at 2x4 and 4x8"
    );
    // An exact scan at r_c = 1 reads group 0 only: 600 rows x 64 B, about 10 pages. The
    // contiguous layout keeps 8 rows x 64 B = 512 B per document, 8 documents per page, and the
    // scan touches every page: 600 / 8 = 75.
    let exact_pages = |i: usize| lines[i]["exact_pages_per_query"].as_u64().unwrap();
    assert!(exact_pages(1) <= 11, "grouped: {}", exact_pages(1));
    assert!(exact_pages(6) >= 75, "contiguous: {}", exact_pages(6));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.contains("<svg") && text.contains("recall@10"),
        "{text}"
    );
    // The PNG beside it (rendered from the SVG).
    let png = std::fs::read(tmp.path().join("curve.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let (d, shape) = read_f32_npy(&tmp.path().join("docs.npy"));
    assert_eq!(shape, vec![600, 8, 16]);
    assert_eq!(d.len(), 600 * 8 * 16);
}

#[test]
fn bench_compact_dtype_quality_and_a_reused_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let (npy, db) = (tmp.path().join("npy"), tmp.path().join("db"));
    // Every query's first two documents are judged relevant (grades 2 and 1).
    let qrels = tmp.path().join("qrels.tsv");
    std::fs::write(
        &qrels,
        (0..8)
            .map(|q| format!("{q}\t{}\t2\n{q}\t{}\t1\n", q, q + 1))
            .collect::<String>(),
    )
    .unwrap();
    let bench = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_metavec"))
            .args(["bench", "--json", "--queries", "8", "--budgets", "1x1,4x8"])
            .args(extra)
            .output()
            .unwrap();
        let lines: Vec<serde_json::Value> = ok(out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        lines
    };
    let first = bench(&[
        "--docs",
        "400",
        "--dim",
        "32",
        "--doc-vectors",
        "8",
        "--query-vectors",
        "4",
        "--dtype",
        "int8",
        "--qrels",
        qrels.to_str().unwrap(),
        "--plot",
        tmp.path().join("quality.svg").to_str().unwrap(),
        "--write-npy",
        npy.to_str().unwrap(),
        "--data-dir",
        db.to_str().unwrap(),
    ]);
    assert_eq!(
        first.len(),
        3,
        "header and two budgets, no baseline with --data-dir"
    );
    for row in &first[1..] {
        assert_eq!(row["dtype"], "int8");
        for k in ["exact_recall_vs_f32", "search_recall_vs_f32"] {
            let r = row[k].as_f64().unwrap();
            assert!((0.8..=1.0).contains(&r), "{k}: {row}");
        }
        for k in ["ndcg_at_10", "ndcg_at_10_search", "ndcg_at_10_f32"] {
            let n = row[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&n), "{k}: {row}");
        }
    }
    // With qrels the plot has an nDCG@10 panel beside recall, and a PNG.
    let text = std::fs::read_to_string(tmp.path().join("quality.svg")).unwrap();
    assert!(
        text.contains("nDCG@10") && text.contains("recall@10"),
        "{text}"
    );
    assert!(tmp.path().join("quality.png").is_file());
    // Vector 0 stays f32: at (1,1) int8 ranks exactly as f32 does.
    assert_eq!(first[1]["exact_recall_vs_f32"], 1.0);
    assert_eq!(first[1]["ndcg_at_10"], first[1]["ndcg_at_10_f32"]);
    // The search's own top 10 at (1,1) is the exact one when its recall is 1.
    if first[1]["recall_at_10"] == 1.0 {
        assert_eq!(first[1]["search_recall_vs_f32"], 1.0);
        assert_eq!(first[1]["ndcg_at_10_search"], first[1]["ndcg_at_10"]);
    }
    // 4x8 reads one f32 row and 7 int8 rows (32 + 4 bytes) per scored document.
    let docs = first[2]["dot_products_per_query"].as_u64().unwrap() / 32;
    assert_eq!(
        first[2]["vector_bytes_per_query"].as_u64().unwrap(),
        docs * (128 + 7 * 36)
    );

    // The same directory again: nothing ingested, the stored collection measured.
    let again = bench(&[
        "--npy-dir",
        npy.to_str().unwrap(),
        "--data-dir",
        db.to_str().unwrap(),
    ]);
    assert_eq!(again[0]["docs"], 400);
    assert!(again[0]["ingest_docs_per_s"].is_null(), "{}", again[0]);
    assert_eq!(again[1]["dtype"], "int8");
    assert_eq!(
        again[2]["vector_bytes_per_query"],
        first[2]["vector_bytes_per_query"]
    );
    assert!(again[2]["recall_at_10"].as_f64().unwrap() > 0.5);
}

/// Reads back the .npy the bench wrote: f32 values and the shape.
fn read_f32_npy(p: &Path) -> (Vec<f32>, Vec<usize>) {
    let npy = npyz::NpyFile::new(std::io::BufReader::new(std::fs::File::open(p).unwrap())).unwrap();
    assert_eq!(npy.dtype().descr(), "'<f4'");
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (npy.into_vec::<f32>().unwrap(), shape)
}

#[test]
fn config_file_then_env_then_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("metavec.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:7000\"\nmemtable_mb = 7\ncompact_dead_ratio = 0.5\napi_key = \"file-secret\"\n").unwrap();
    let print = |env: &[(&str, &str)], flags: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_metavec"));
        c.args(["serve", "--config", cfg.to_str().unwrap(), "--print-config"])
            .args(flags);
        for k in [
            "METAVEC_MEMTABLE_MB",
            "METAVEC_LISTEN",
            "METAVEC_API_KEY",
            "METAVEC_COMPACT_DEAD_RATIO",
        ] {
            c.env_remove(k);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        let t = ok(c.output().unwrap());
        let v: toml::Table = toml::from_str(&t).unwrap();
        v
    };
    let file_only = print(&[], &[]);
    assert_eq!(file_only["listen"].as_str(), Some("127.0.0.1:7000"));
    assert_eq!(file_only["memtable_mb"].as_integer(), Some(7));
    assert_eq!(file_only["compact_dead_ratio"].as_float(), Some(0.5));
    assert_eq!(
        file_only["compact_max_segments"].as_integer(),
        Some(32),
        "defaults fill the rest"
    );
    assert_eq!(
        file_only["api_key"].as_str(),
        Some("<redacted>"),
        "keys are never printed"
    );
    assert_eq!(
        print(&[("METAVEC_MEMTABLE_MB", "9")], &[])["memtable_mb"].as_integer(),
        Some(9)
    );
    assert_eq!(
        print(&[("METAVEC_MEMTABLE_MB", "9")], &["--memtable-mb", "11"])["memtable_mb"]
            .as_integer(),
        Some(11)
    );
    std::fs::write(&cfg, "no_such_knob = 1\n").unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_metavec"))
        .args(["serve", "--config", cfg.to_str().unwrap(), "--print-config"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no_such_knob"));
}
