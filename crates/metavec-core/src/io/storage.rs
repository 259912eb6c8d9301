//! The storage seam: the few file operations the durable write paths use, behind a trait so that
//! tests can inject failed writes, failed fsyncs, torn writes and a full disk
//! (see `metavec_core::testing::FaultyFs` with the `fault-injection` feature).

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

/// An open file written through a [`Storage`].
pub trait StorageFile: Send + Sync + Debug {
    /// Writes all of `buf` at the end of the file. On error a prefix may have been written.
    fn write_all(&self, buf: &[u8]) -> io::Result<()>;
    /// Makes the file's data durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates (or extends) the file to `len` bytes; used to rewind a torn append.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// The file-system operations of the write paths (WAL, manifest).
pub trait Storage: Send + Sync + Debug {
    /// Creates `path` (truncating it) for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing `path` for appending.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// fsyncs a directory so that renames and creations inside it are durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// fsyncs a whole file written outside the seam (hnsw_rs writes its dump itself). On a file
    /// system with delayed allocation this is also where a full disk shows.
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Hard-links `from` as `to` (snapshots share immutable segment files).
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Called just before code outside the seam (hnsw_rs's dump) creates and writes `path`
    /// itself. The real file system does nothing; a fault-injecting one can make that writer
    /// meet a real full disk.
    fn before_external_write(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
    /// A named point of a maintenance job (`"flush"`, `"compaction"`). The real file system
    /// goes on at once; a fault-injecting one may hold the job there until its plan releases it
    /// or `cancelled()` turns true (how tests order a race deterministically).
    fn hold(&self, _point: &str, _cancelled: &dyn Fn() -> bool) {}
    /// Bytes an unprivileged writer may still put in the file system holding `dir` (what a
    /// merge checks before it reserves its output).
    fn available_space(&self, dir: &Path) -> io::Result<u64> {
        let st = rustix::fs::statvfs(dir)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }
}

/// The storage engines use unless told otherwise: the real file system. In a build with the
/// `fault-injection` feature and `METAVEC_FAULT_PLAN` set, a `testing::FaultyFs` following that
/// plan file instead (how the gRPC tests fail a running server's disk).
pub fn default_storage() -> Arc<dyn Storage> {
    #[cfg(feature = "fault-injection")]
    if let Some(path) = std::env::var_os("METAVEC_FAULT_PLAN") {
        tracing::warn!(plan = ?path, "fault injection is on");
        return crate::testing::FaultyFs::following(path).storage();
    }
    RealFs::shared()
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl RealFs {
    /// A shared handle.
    pub fn shared() -> Arc<dyn Storage> {
        Arc::new(RealFs)
    }
}

#[derive(Debug)]
struct RealFile(File);

impl StorageFile for RealFile {
    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        (&self.0).write_all(buf)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Storage for RealFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(RealFile(f)))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(RealFile(
            OpenOptions::new().append(true).open(path)?,
        )))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn sync_file(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::hard_link(from, to)
    }
}

/// `std::io::Write` over a [`StorageFile`] (for a `BufWriter`).
#[derive(Debug)]
pub struct StorageWriter<'a>(pub &'a dyn StorageFile);

impl Write for StorageWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
