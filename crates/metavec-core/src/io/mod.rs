//! File-system helpers: durable writes (tmp + fsync + rename + dir fsync) and read-only maps.

mod mmap;
mod storage;

use std::fs::{self, File};
use std::path::{Path, PathBuf};

pub use mmap::MappedFile;
pub use storage::{default_storage, RealFs, Storage, StorageFile, StorageWriter};

use crate::error::{IoContext, Result};

/// fsyncs a directory so that renames and creations inside it are durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).at(dir)
}

/// Path of the temporary sibling used while `path` is being written.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically: a crash leaves either the old file or the new one.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file_atomic_with(&RealFs, path, bytes)
}

/// [`write_file_atomic`] through `storage`. On failure the temporary file is removed and the
/// old file at `path` is untouched.
pub fn write_file_atomic_with(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let res = (|| {
        let f = storage.create(&tmp).at(&tmp)?;
        f.write_all(bytes).at(&tmp)?;
        f.sync_data().at(&tmp)?;
        drop(f);
        storage.rename(&tmp, path).at(path)
    })();
    if res.is_err() {
        let _ = storage.remove(&tmp);
        return res;
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    storage.sync_dir(dir).at(dir)
}

/// Renames `from` to `to` and fsyncs the parent directory.
pub fn rename_durable(from: &Path, to: &Path) -> Result<()> {
    rename_durable_with(&RealFs, from, to)
}

/// [`rename_durable`] through `storage`.
pub fn rename_durable_with(storage: &dyn Storage, from: &Path, to: &Path) -> Result<()> {
    storage.rename(from, to).at(to)?;
    let dir = to.parent().unwrap_or(Path::new("."));
    storage.sync_dir(dir).at(dir)
}

/// Copies `from` (read directly) to a new file `to` written and fsynced through `storage`.
pub fn copy_durable_with(storage: &dyn Storage, from: &Path, to: &Path) -> Result<()> {
    use std::io::Read;
    let mut src = File::open(from).at(from)?;
    let dst = storage.create(to).at(to)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf).at(from)?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n]).at(to)?;
    }
    dst.sync_data().at(to)
}

/// Removes a file if it exists.
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(crate::Error::io(path, e)),
        _ => Ok(()),
    }
}

/// crc32 of a whole file and its length.
pub fn file_crc(path: &Path) -> Result<(u32, u64)> {
    let bytes = fs::read(path).at(path)?;
    Ok((crc32fast::hash(&bytes), bytes.len() as u64))
}
