//! Fault injection for tests (feature `fault-injection`): a [`Storage`] that fails on demand.
//!
//! [`FaultyFs`] wraps the real file system. Its [`FaultPlan`] applies to paths containing
//! `path_contains` (all paths when empty) and can be changed while the engine runs:
//! - `quota`: bytes that may still be written; a write past it writes the prefix that fits
//!   (a torn write) and fails with ENOSPC. Raising it again models freed space.
//! - `fail_write_after`: like the quota but fails with EIO (a failed write after N bytes).
//! - `fail_fsync`: every `sync_data`/`sync_file`/`sync_dir` fails with EIO.
//!
//! Files written outside the seam (hnsw_rs's dump) are charged against the quota when they are
//! fsynced through it, the way delayed allocation reports a full disk at fsync; a hard link
//! fails with ENOSPC while the quota is exhausted.

use std::io;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::io::{RealFs, Storage, StorageFile};

const ENOSPC: i32 = 28;
const EIO: i32 = 5;

/// What [`FaultyFs`] does wrong.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    pub path_contains: String,
    pub quota: Option<u64>,
    pub fail_write_after: Option<u64>,
    pub fail_fsync: bool,
}

/// A [`Storage`] that injects the faults of its [`FaultPlan`].
#[derive(Debug, Clone, Default)]
pub struct FaultyFs {
    plan: Arc<Mutex<FaultPlan>>,
}

impl FaultyFs {
    pub fn new() -> FaultyFs {
        FaultyFs::default()
    }

    /// Replaces the plan (takes effect on the next operation).
    pub fn set(&self, plan: FaultPlan) {
        *self.plan.lock() = plan;
    }

    /// Clears every fault.
    pub fn heal(&self) {
        self.set(FaultPlan::default());
    }

    /// This file system as the engine's storage.
    pub fn storage(&self) -> Arc<dyn Storage> {
        Arc::new(self.clone())
    }

    fn applies(&self, path: &Path) -> bool {
        let p = self.plan.lock();
        p.path_contains.is_empty() || path.to_string_lossy().contains(&p.path_contains)
    }

    fn check_sync(&self, path: &Path) -> io::Result<()> {
        if self.applies(path) && self.plan.lock().fail_fsync {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        Ok(())
    }

    fn wrap(&self, path: &Path, inner: Box<dyn StorageFile>) -> Box<dyn StorageFile> {
        Box::new(FaultyFile {
            fs: self.clone(),
            path: path.to_path_buf(),
            inner,
        })
    }
}

#[derive(Debug)]
struct FaultyFile {
    fs: FaultyFs,
    path: std::path::PathBuf,
    inner: Box<dyn StorageFile>,
}

impl StorageFile for FaultyFile {
    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        if !self.fs.applies(&self.path) {
            return self.inner.write_all(buf);
        }
        let (allowed, errno) = {
            let mut p = self.fs.plan.lock();
            let mut allowed = buf.len() as u64;
            let mut errno = None;
            if let Some(q) = p.quota {
                if q < allowed {
                    allowed = q;
                    errno = Some(ENOSPC);
                }
            }
            if let Some(n) = p.fail_write_after {
                if n < allowed {
                    allowed = n;
                    errno = Some(EIO);
                }
            }
            if let Some(q) = p.quota.as_mut() {
                *q -= allowed;
            }
            if let Some(n) = p.fail_write_after.as_mut() {
                *n -= allowed;
            }
            (allowed as usize, errno)
        };
        self.inner.write_all(&buf[..allowed])?;
        match errno {
            Some(e) => Err(io::Error::from_raw_os_error(e)),
            None => Ok(()),
        }
    }
    fn sync_data(&self) -> io::Result<()> {
        self.fs.check_sync(&self.path)?;
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

impl Storage for FaultyFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(self.wrap(path, RealFs.create(path)?))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(self.wrap(path, RealFs.open_append(path)?))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check_sync(dir)?;
        RealFs.sync_dir(dir)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        RealFs.remove(path)
    }
    fn sync_file(&self, path: &Path) -> io::Result<()> {
        self.check_sync(path)?;
        if self.applies(path) {
            let len = std::fs::metadata(path)?.len();
            let mut p = self.plan.lock();
            if let Some(q) = p.quota.as_mut() {
                if len > *q {
                    *q = 0;
                    return Err(io::Error::from_raw_os_error(ENOSPC));
                }
                *q -= len;
            }
        }
        RealFs.sync_file(path)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.applies(to) && self.plan.lock().quota == Some(0) {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        RealFs.hard_link(from, to)
    }
}
