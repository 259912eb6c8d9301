//! Write-ahead log: one file per generation, `wal-<gen:016x>.log`, records framed with length + crc.
//!
//! A batch (an upsert of many documents, or a delete of many ids) is one record, so a torn batch is
//! dropped whole at recovery. A record is acknowledged only after the file is fsynced; concurrent
//! writers share fsyncs (group commit, see [`writer`]). After a flush seals the memtable into a
//! segment, the manifest names the first generation still needed and older files are deleted.

pub mod reader;
pub mod record;
pub mod writer;

use std::path::{Path, PathBuf};

pub use reader::{replay_dir, scan_file, ReplayReport, WalScan};
pub use record::{Record, RecordKind};
pub use writer::Wal;

/// File name of WAL generation `gen`.
pub fn file_name(gen: u64) -> String {
    format!("wal-{gen:016x}.log")
}

pub fn file_path(dir: &Path, gen: u64) -> PathBuf {
    dir.join(file_name(gen))
}

/// Parses a WAL file name back to its generation.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Generations of the WAL files in `dir`, ascending.
pub fn list_generations(dir: &Path) -> crate::Result<Vec<u64>> {
    use crate::error::IoContext;
    let mut gens = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if let Some(gen) = entry.file_name().to_str().and_then(parse_file_name) {
            gens.push(gen);
        }
    }
    gens.sort_unstable();
    Ok(gens)
}
