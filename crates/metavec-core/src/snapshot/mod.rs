//! Snapshots: a consistent point-in-time copy of one collection, as a self-contained directory
//! that can be copied to another machine and restored there.
//!
//! ```text
//! <data>/snapshots/<name>/SNAPSHOT.json      what it is + crc32 and length of every file below
//! <data>/snapshots/<name>/MANIFEST           the collection's manifest at the snapshot point
//! <data>/snapshots/<name>/segments/...       hard links of the sealed files (copies across devices)
//! <data>/snapshots/<name>/wal/wal-<gen>.log  copies of the WAL generations the manifest needs
//! ```
//! Taking one holds the collection's `flush_lock` (no manifest commit can run) and the state write
//! lock just long enough to rotate the WAL: every write acknowledged before that point is in the
//! sealed segments or the copied WAL generations, none after it. Sealed files are immutable, so a
//! hard link is a copy; deleting or compacting the collection later unlinks only its own names.
//! `SNAPSHOT.json` is written last and the directory renamed into place, so a listed snapshot is
//! always complete. Restore checks every file's length and crc before it copies anything.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::collection::Collection;
use crate::config::CollectionConfig;
use crate::error::{Error, IoContext, Result};
use crate::io::{copy_durable_with, rename_durable_with, write_file_atomic_with, Storage};
use crate::manifest::{self, Manifest};
use crate::{segment, wal};

pub const INFO_FILE: &str = "SNAPSHOT.json";

/// One file of a snapshot, relative to its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    pub path: String,
    pub len: u64,
    pub crc32: u32,
}

/// What `SNAPSHOT.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub name: String,
    pub collection: String,
    pub created_unix_ms: u64,
    pub config: CollectionConfig,
    /// Every write with a sequence number up to this one is in the snapshot, none after.
    pub last_seq: u64,
    pub files: Vec<SnapshotFile>,
}

impl SnapshotInfo {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.len).sum()
    }

    pub fn load(dir: &Path) -> Result<SnapshotInfo> {
        let p = dir.join(INFO_FILE);
        let bytes = fs::read(&p).at(&p)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::corruption(&p, 0, format!("snapshot description does not parse: {e}"))
        })
    }

    /// Checks every listed file's length and crc32; the first mismatch is a corruption error.
    /// Paths must stay inside the snapshot (`NAME`, `segments/NAME` or `wal/NAME`).
    pub fn verify(&self, dir: &Path) -> Result<()> {
        for f in &self.files {
            let ok = match f.path.split_once('/') {
                None => safe_name(&f.path),
                Some((sub, n)) => (sub == "segments" || sub == "wal") && safe_name(n),
            };
            if !ok {
                return Err(Error::corruption(
                    dir.join(INFO_FILE),
                    0,
                    format!("snapshot lists a path outside itself: {:?}", f.path),
                ));
            }
            let p = dir.join(&f.path);
            let bytes = fs::read(&p).at(&p)?;
            if bytes.len() as u64 != f.len {
                return Err(Error::corruption(
                    &p,
                    bytes.len().min(f.len as usize) as u64,
                    format!("snapshot file is {} bytes, expected {}", bytes.len(), f.len),
                ));
            }
            if crc32fast::hash(&bytes) != f.crc32 {
                return Err(Error::corruption(&p, 0, "snapshot file fails its checksum"));
            }
        }
        Ok(())
    }
}

fn safe_name(n: &str) -> bool {
    !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\\', '\0'])
}

/// Hard-links `from` to `to`, copying (and fsyncing) when a link is not possible.
fn link_or_copy(storage: &dyn Storage, from: &Path, to: &Path) -> Result<()> {
    if storage.hard_link(from, to).is_ok() {
        return Ok(());
    }
    copy_durable_with(storage, from, to)
}

/// Lists every regular file under `root` as a relative path with its length and crc.
fn checksum_tree(root: &Path) -> Result<Vec<SnapshotFile>> {
    let mut out = Vec::new();
    for sub in ["", "segments", "wal"] {
        let dir = root.join(sub);
        let mut names: Vec<String> = fs::read_dir(&dir)
            .at(&dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n != INFO_FILE)
            .collect();
        names.sort();
        for n in names {
            let p = dir.join(&n);
            let bytes = fs::read(&p).at(&p)?;
            out.push(SnapshotFile {
                path: if sub.is_empty() {
                    n
                } else {
                    format!("{sub}/{n}")
                },
                len: bytes.len() as u64,
                crc32: crc32fast::hash(&bytes),
            });
        }
    }
    Ok(out)
}

impl Collection {
    /// Writes a consistent copy of this collection into `dest` (which must not exist).
    pub(crate) fn snapshot_into(
        &self,
        dest: &Path,
        name: &str,
        created_unix_ms: u64,
    ) -> Result<SnapshotInfo> {
        self.check_live()?;
        let _guard = self.flush_lock.lock();
        self.check_live()?;
        let pin = self.pin_wal()?;
        let mpath = self.dir().join(manifest::FILE_NAME);
        let manifest_bytes = fs::read(&mpath).at(&mpath)?;
        let gens: Vec<u64> = wal::list_generations(&Self::wal_dir(self.dir()))?
            .into_iter()
            .filter(|&g| g >= pin.wal_start && g < pin.wal_end)
            .collect();
        let last_seq = pin.last_seq;
        let manifest = Manifest::decode(&manifest_bytes, &self.dir().join(manifest::FILE_NAME))?;
        let tmp = crate::io::tmp_path(dest);
        if tmp.exists() {
            fs::remove_dir_all(&tmp).at(&tmp)?;
        }
        fs::create_dir_all(tmp.join("segments")).at(&tmp)?;
        fs::create_dir_all(tmp.join("wal")).at(&tmp)?;
        let storage = &*self.opts.storage;
        let seg_dir = Self::segments_dir(self.dir());
        for e in &manifest.segments {
            let mut names = vec![segment::file_name(e.id)];
            names.extend(e.index_files.iter().map(|f| f.name.clone()));
            for n in names {
                link_or_copy(storage, &seg_dir.join(&n), &tmp.join("segments").join(&n))?;
            }
        }
        let wal_dir = Self::wal_dir(self.dir());
        for g in gens {
            copy_durable_with(
                storage,
                &wal::file_path(&wal_dir, g),
                &wal::file_path(&tmp.join("wal"), g),
            )?;
        }
        write_file_atomic_with(storage, &tmp.join(manifest::FILE_NAME), &manifest_bytes)?;
        let info = SnapshotInfo {
            name: name.to_string(),
            collection: self.name().to_string(),
            created_unix_ms,
            config: self.config().clone(),
            last_seq,
            files: checksum_tree(&tmp)?,
        };
        let json = serde_json::to_vec_pretty(&info)
            .map_err(|e| Error::io(&tmp, std::io::Error::other(e)))?;
        write_file_atomic_with(storage, &tmp.join(INFO_FILE), &json)?;
        for sub in ["segments", "wal"] {
            let d = tmp.join(sub);
            storage.sync_dir(&d).at(&d)?;
        }
        storage.sync_dir(&tmp).at(&tmp)?;
        rename_durable_with(storage, &tmp, dest)?;
        Ok(info)
    }
}

/// Copies a verified snapshot's collection files into `dest` (a new collection directory).
pub(crate) fn restore_files(
    storage: &dyn Storage,
    src: &Path,
    info: &SnapshotInfo,
    dest: &Path,
) -> Result<()> {
    info.verify(src)?;
    let tmp: PathBuf = crate::io::tmp_path(dest);
    if tmp.exists() {
        fs::remove_dir_all(&tmp).at(&tmp)?;
    }
    fs::create_dir_all(tmp.join("segments")).at(&tmp)?;
    fs::create_dir_all(tmp.join("wal")).at(&tmp)?;
    for f in &info.files {
        let from = src.join(&f.path);
        let to = tmp.join(&f.path);
        if f.path.starts_with("segments/") {
            link_or_copy(storage, &from, &to)?;
        } else {
            copy_durable_with(storage, &from, &to)?;
        }
    }
    for sub in ["segments", "wal"] {
        let d = tmp.join(sub);
        storage.sync_dir(&d).at(&d)?;
    }
    storage.sync_dir(&tmp).at(&tmp)?;
    rename_durable_with(storage, &tmp, dest)
}

#[cfg(test)]
mod tests;
