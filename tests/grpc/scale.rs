//! `metavec bench scale` end to end at a tiny size: stopped after its first checkpoint, then
//! resumed to the end; the rows, the state and the plot it leaves.

use std::process::Command;

use crate::cli::ok;

fn scale(dir: &std::path::Path, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_metavec"))
        .args(["bench", "scale", "--json", "--data-dir"])
        .arg(dir)
        .args([
            "--docs",
            "3000",
            "--dim",
            "64",
            "--doc-vectors",
            "8",
            "--query-vectors",
            "4",
            "--queries",
            "20",
            "--checkpoints",
            "2",
            "--memtable-mb",
            "1",
            "--batch",
            "100",
            "--disk-probe-mb",
            "16",
            "--server-arg=--compact-max-segments=64",
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    ok(out)
}

#[test]
fn scale_bench_stops_resumes_and_records_every_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let plot = tmp.path().join("scale");
    let first = scale(&dir, &["--stop-after", "1"]);
    assert_eq!(first.lines().count(), 1, "{first}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("scale-state.json")).unwrap()).unwrap();
    assert_eq!(state["acked"], 1500);
    // A different parameter is refused, not mixed into the run.
    let refused = Command::new(env!("CARGO_BIN_EXE_metavec"))
        .args(["bench", "scale", "--data-dir"])
        .arg(&dir)
        .args(["--docs", "4000", "--dim", "64", "--doc-vectors", "8"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("docs: 3000 in the state, 4000 given"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let plot_arg = format!("--plot={}", plot.display());
    let second = scale(&dir, &[&plot_arg]);
    // The resumed run prints the recorded row again, then the new one.
    assert_eq!(second.lines().count(), 2, "{second}");
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("scale-results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["docs"], 1500);
    assert_eq!(rows[1]["docs"], 3000);
    for r in &rows {
        assert_eq!(r["live_docs"], r["docs"]);
        assert!(r["write_amplification"].as_f64().unwrap() > 1.0, "{r}");
        assert!(r["docs_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["rss_anon_mb"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["recovery_s"].as_f64().unwrap() > 0.0, "{r}");
        let budgets: Vec<&str> = r["budgets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["budget"].as_str().unwrap())
            .collect();
        assert_eq!(budgets, ["1x1", "2x4", "4x8"]);
        for b in r["budgets"].as_array().unwrap() {
            assert!(b["recall_at_10"].as_f64().unwrap() >= 0.9, "{b}");
            // The incremental truth is the server's own exact scan.
            assert!(b["exact_agreement"].as_f64().unwrap() >= 0.95, "{b}");
        }
    }
    // 6 MB of documents through 1 MiB memtables: several flushes (the server argument keeps
    // compaction from merging them all).
    assert!(rows[1]["flushes"].as_u64().unwrap() >= 2, "{}", rows[1]);
    assert!(rows[1]["segments"].as_u64().unwrap() >= 1, "{}", rows[1]);
    assert!(rows[1]["clean_open_s"].as_f64().is_some());
    assert!(rows[0]["disk_mb_s"].as_f64().unwrap() > 0.0);
    // The second run went on from the first one's 1,500 acknowledged documents.
    assert_eq!(rows[1]["resumes"][0]["at_docs"], 1500);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("scale-state.json")).unwrap()).unwrap();
    assert_eq!(state["sent_docs"], 3000, "nothing was sent twice");
    assert!(std::fs::read_to_string(plot.with_extension("svg"))
        .unwrap()
        .contains("<svg"));
    let png = std::fs::read(plot.with_extension("png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // A finished run does nothing more.
    let third = scale(&dir, &[]);
    assert_eq!(third.lines().count(), 2);
}
