//! Recovery: read every WAL generation at or above the manifest's start, in order, truncating each
//! file at its first bad record — unless a whole good record follows it. A crash can only tear the
//! last record (a failed append is rewound before the next one), so a bad record with a good one
//! after it is corruption of acknowledged data: recovery refuses with an error naming the file and
//! offset instead of silently dropping the later records.

use std::fs::OpenOptions;
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::format::{decode_preamble, u64_at, FileKind, PREAMBLE_LEN};

use super::record::{decode, DecodeError, Record, RECORD_HEADER_LEN};

/// Whether a whole good record starts anywhere after the (undecodable) frame at the start of
/// `rest`. A crash can only tear the last record, so such a record means the bad one is
/// corruption. The search does not trust the bad frame's length field (a flipped length would
/// hide the records after it): it tries every later offset, which is cheap in practice (most
/// offsets fail the length check, the rest the crc) and only runs on recovery's error path.
/// A record found there must carry a larger sequence number than `last_seq`.
fn followed_by_good_record(rest: &[u8], floats_per_doc: usize, last_seq: Option<u64>) -> bool {
    (1..rest.len().saturating_sub(RECORD_HEADER_LEN - 1)).any(|off| {
        matches!(decode(&rest[off..], floats_per_doc),
            Ok((rec, _)) if last_seq.is_none_or(|s| rec.seq() > s))
    })
}

/// What recovery found.
#[derive(Debug, Default, Clone)]
pub struct ReplayReport {
    pub files: usize,
    pub records: usize,
    /// Bytes cut off torn or corrupt tails.
    pub truncated_bytes: u64,
    /// Bytes of WAL kept.
    pub bytes: u64,
    pub last_gen: Option<u64>,
}

/// Replays the WAL files of `dir` with generation >= `from_gen`, calling `apply` per record in order.
/// A torn or corrupt tail is cut off (and the file fsynced); the drop is logged and reported.
pub fn replay_dir(
    dir: &Path,
    from_gen: u64,
    floats_per_doc: usize,
    mut apply: impl FnMut(Record) -> Result<()>,
) -> Result<ReplayReport> {
    let mut report = ReplayReport::default();
    for gen in super::list_generations(dir)? {
        if gen < from_gen {
            continue;
        }
        let path = super::file_path(dir, gen);
        let bytes = std::fs::read(&path).at(&path)?;
        report.files += 1;
        report.last_gen = Some(gen);
        // A file whose preamble never reached the disk whole was created by a crashed rotation
        // and holds nothing acknowledged.
        let start = match decode_preamble(&bytes, FileKind::Wal, &path) {
            Ok((_, header)) if header.len() >= 8 && u64_at(header, 0) == gen => {
                PREAMBLE_LEN + header.len()
            }
            Ok(_) => {
                return Err(crate::Error::corruption(
                    &path,
                    PREAMBLE_LEN as u64,
                    format!("WAL header does not name generation {gen}"),
                ))
            }
            Err(e) if bytes.len() < 64 => {
                tracing::warn!(path = %path.display(), error = %e, "WAL file with a torn header: removing");
                crate::io::remove_if_exists(&path)?;
                report.truncated_bytes += bytes.len() as u64;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut at = start;
        let mut last_seq = None;
        while at < bytes.len() {
            match decode(&bytes[at..], floats_per_doc) {
                Ok((record, used)) => {
                    last_seq = Some(record.seq());
                    apply(record)?;
                    report.records += 1;
                    at += used;
                }
                Err(err) => {
                    let dropped = (bytes.len() - at) as u64;
                    let why = match err {
                        DecodeError::Truncated => "torn record".to_string(),
                        DecodeError::Corrupt(m) => m,
                    };
                    if followed_by_good_record(&bytes[at..], floats_per_doc, last_seq) {
                        return Err(crate::Error::corruption(
                            &path,
                            at as u64,
                            format!(
                                "WAL record does not decode ({why}) but good records follow it: \
                                 not a torn tail; refusing to drop acknowledged writes"
                            ),
                        ));
                    }
                    tracing::warn!(
                        path = %path.display(),
                        offset = at,
                        dropped_bytes = dropped,
                        reason = %why,
                        "WAL recovery: truncating at the first bad record"
                    );
                    let f = OpenOptions::new().write(true).open(&path).at(&path)?;
                    f.set_len(at as u64).at(&path)?;
                    f.sync_all().at(&path)?;
                    report.truncated_bytes += dropped;
                    break;
                }
            }
        }
        report.bytes += at as u64;
    }
    Ok(report)
}

/// What a read-only scan of one WAL file found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WalScan {
    pub records: usize,
    pub upserted_docs: usize,
    pub deleted_ids: usize,
    pub bytes: u64,
    /// Offset and reason of the first record that does not decode (recovery would cut here).
    pub bad: Option<(u64, String)>,
}

/// Reads a WAL file without changing it.
pub fn scan_file(path: &Path, gen: u64, floats_per_doc: usize) -> Result<WalScan> {
    let bytes = std::fs::read(path).at(path)?;
    let (_, header) = decode_preamble(&bytes, FileKind::Wal, path)?;
    if header.len() < 8 || u64_at(header, 0) != gen {
        return Err(crate::Error::corruption(
            path,
            PREAMBLE_LEN as u64,
            format!("WAL header does not name generation {gen}"),
        ));
    }
    let mut scan = WalScan {
        bytes: bytes.len() as u64,
        ..Default::default()
    };
    let mut at = PREAMBLE_LEN + header.len();
    while at < bytes.len() {
        match decode(&bytes[at..], floats_per_doc) {
            Ok((rec, used)) => {
                scan.records += 1;
                match rec {
                    Record::Upsert { docs, .. } => scan.upserted_docs += docs.len(),
                    Record::Delete { ids, .. } => scan.deleted_ids += ids.len(),
                }
                at += used;
            }
            Err(e) => {
                scan.bad = Some((
                    at as u64,
                    match e {
                        DecodeError::Truncated => "torn record".into(),
                        DecodeError::Corrupt(m) => m,
                    },
                ));
                break;
            }
        }
    }
    Ok(scan)
}
