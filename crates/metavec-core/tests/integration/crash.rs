//! A child process upserts and is killed with SIGKILL mid-stream; after reopen every acknowledged
//! id is there with bit-identical vectors, and the batch in flight is all there or all gone.

use metavec_core::Dtype;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use metavec_core::document::normalize_rows;
use metavec_core::{CollectionConfig, Document};

use crate::support::engine_with;

const DIM: usize = 16;
const MC: usize = 8;
const BATCH: usize = 10;
const ENV: &str = "METAVEC_CRASH_CHILD_DIR";

fn doc(batch: u64, i: usize) -> Document {
    let mut x = batch * 1_000_003 + i as u64 + 1;
    let vectors = (0..MC * DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2001) as f32 / 1000.0 - 1.0 + 1e-3
        })
        .collect();
    Document::new(format!("b{batch}-{i}"), vectors).with_payload(format!(r#"{{"batch":{batch}}}"#))
}

/// The child: writes batches forever, printing each acknowledged batch number.
#[test]
#[ignore = "run by crash_mid_stream_loses_no_acknowledged_write as a child process"]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(ENV) else { return };
    let start: u64 = std::env::var("METAVEC_CRASH_START")
        .unwrap()
        .parse()
        .unwrap();
    // Small memtable: flushes (segment build, manifest commit, WAL cleanup) happen mid-stream.
    let engine = engine_with(std::path::Path::new(&dir), 40 * MC * DIM * 4);
    let coll = match engine.collection("crash") {
        Ok(c) => c,
        Err(_) => engine
            .create_collection(
                "crash",
                CollectionConfig::new(DIM as u32, MC as u32, 4).with_dtype(Dtype::F32),
            )
            .unwrap(),
    };
    let mut out = std::io::stdout().lock();
    for batch in start.. {
        writeln!(out, "SEND {batch}").unwrap();
        out.flush().unwrap();
        coll.upsert((0..BATCH).map(|i| doc(batch, i)).collect())
            .unwrap();
        writeln!(out, "ACK {batch}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn crash_mid_stream_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<u64> = Vec::new();
    let mut next = 0u64;
    for (round, kill_after) in [23usize, 57, 5, 91].into_iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash::crash_child_writer",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV, dir.path())
            .env("METAVEC_CRASH_START", next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut this_round = 0;
        let mut in_flight = None;
        while let Some(Ok(line)) = lines.next() {
            if let Some(b) = line.strip_prefix("ACK ") {
                acked.push(b.parse().unwrap());
                this_round += 1;
                if this_round == kill_after {
                    break;
                }
            } else if let Some(b) = line.strip_prefix("SEND ") {
                in_flight = Some(b.parse::<u64>().unwrap());
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let last = *acked.last().unwrap();
        next = last + 2; // the batch after `last` may or may not have landed; never reuse it

        let engine = engine_with(dir.path(), 1 << 30);
        let coll = engine.collection("crash").unwrap();
        if round > 0 {
            // The small memtable made background flushes seal segments while the child ran.
            assert!(!coll.info().segments.is_empty());
        }
        for &b in &acked {
            let ids: Vec<String> = (0..BATCH).map(|i| format!("b{b}-{i}")).collect();
            for (i, got) in coll.get(&ids).unwrap().into_iter().enumerate() {
                let got =
                    got.unwrap_or_else(|| panic!("round {round}: acknowledged b{b}-{i} lost"));
                let mut want = doc(b, i);
                normalize_rows(&mut want.vectors, DIM, "want").unwrap();
                assert_eq!(got.vectors, want.vectors, "b{b}-{i} vectors differ");
                assert_eq!(got.payload, want.payload);
            }
        }
        // All or nothing for the batch that was in flight.
        if let Some(f) = in_flight.filter(|f| *f > last) {
            let ids: Vec<String> = (0..BATCH).map(|i| format!("b{f}-{i}")).collect();
            let present = coll
                .get(&ids)
                .unwrap()
                .iter()
                .filter(|d| d.is_some())
                .count();
            assert!(
                present == 0 || present == BATCH,
                "batch {f} half applied: {present}/{BATCH}"
            );
        }
    }
    assert!(acked.len() >= 23 + 57 + 5 + 91);
}
