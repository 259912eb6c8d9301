//! Fault injection for tests (feature `fault-injection`): a [`Storage`] that fails on demand.
//!
//! [`FaultyFs`] wraps the real file system. Its [`FaultPlan`] applies to paths containing
//! `path_contains` (all paths when empty) and can be changed while the engine runs:
//! - `quota`: bytes that may still be written; a write past it writes the prefix that fits
//!   (a torn write) and fails with ENOSPC. Raising it again models freed space.
//! - `fail_write_after`: like the quota but fails with EIO (a failed write after N bytes).
//! - `fail_fsync`: every `sync_data`/`sync_file`/`sync_dir` fails with EIO.
//!
//! A server built with the feature can be driven from outside the process: with
//! `METAVEC_FAULT_PLAN=<file>` set, [`crate::io::default_storage`] is a [`FaultyFs`] that re-reads
//! its plan from that file whenever the file's contents change (see [`FaultPlan::parse`]); an
//! absent or empty file means no faults. The gRPC tests use it to fail a running server's disk.
//!
//! Files written outside the seam (hnsw_rs's dump) are charged against the quota when they are
//! fsynced through it, the way delayed allocation reports a full disk at fsync; while the quota
//! is exhausted (`quota = 0`) such a file is created as a symlink to `/dev/full`, so that the
//! outside writer itself meets a real ENOSPC. A hard link fails with ENOSPC while the quota is
//! exhausted.
//!
//! Races are ordered with holds: a maintenance job passes named points
//! ([`crate::io::Storage::hold`]: `"flush"` before it writes the segment of the frozen run,
//! `"compaction"` before it writes the merged segment), and a plan that lists a point
//! (`hold = compaction`) stops every job there until the plan no longer lists it, or the job is
//! cancelled (its collection deleted). In-process, [`FaultyFs::wait_held`] waits for a job to
//! arrive; a server following a plan file announces it by creating the file
//! [`held_marker`]`(plan, point)`, removed again when the job moves on.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

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
    /// Points where maintenance jobs stop until the plan no longer lists them.
    pub hold: Vec<String>,
}

impl FaultPlan {
    /// Parses a plan file: one `key = value` per line (`#` starts a comment), keys
    /// `path_contains` (a string, quotes optional), `quota` and `fail_write_after` (bytes) and
    /// `fail_fsync` (`true`/`false`) and `hold` (point names, comma-separated). Unknown keys and
    /// bad values are errors.
    pub fn parse(text: &str) -> Result<FaultPlan, String> {
        let mut plan = FaultPlan::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("fault plan line {line:?} is not key = value"))?;
            let v = v.trim().trim_matches('"');
            let bytes = |v: &str| v.parse::<u64>().map_err(|e| format!("{k}: {e}"));
            match k.trim() {
                "path_contains" => plan.path_contains = v.to_string(),
                "quota" => plan.quota = Some(bytes(v)?),
                "fail_write_after" => plan.fail_write_after = Some(bytes(v)?),
                "fail_fsync" => plan.fail_fsync = v.parse().map_err(|e| format!("{k}: {e}"))?,
                "hold" => {
                    plan.hold = v
                        .split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(str::to_string)
                        .collect()
                }
                other => return Err(format!("unknown fault plan key {other:?}")),
            }
        }
        Ok(plan)
    }
}

/// A [`Storage`] that injects the faults of its [`FaultPlan`].
#[derive(Debug, Clone, Default)]
pub struct FaultyFs {
    plan: Arc<Mutex<FaultPlan>>,
    /// The plan file this file system follows, and the contents last applied.
    source: Option<Arc<(std::path::PathBuf, Mutex<String>)>>,
    /// The points where a job is held now, and the signal of every change to them or the plan.
    held: Arc<(Mutex<Vec<String>>, Condvar)>,
}

/// The file a server following the plan file `plan` creates while a job is held at `point`.
pub fn held_marker(plan: &Path, point: &str) -> PathBuf {
    let mut name = plan
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".held-{point}"));
    plan.with_file_name(name)
}

impl FaultyFs {
    pub fn new() -> FaultyFs {
        FaultyFs::default()
    }

    /// A file system whose plan follows the file at `path` (see the module docs).
    pub fn following(path: impl Into<std::path::PathBuf>) -> FaultyFs {
        FaultyFs {
            source: Some(Arc::new((path.into(), Mutex::new(String::new())))),
            ..FaultyFs::default()
        }
    }

    /// Re-reads the plan file if it changed. A plan that does not parse is logged and ignored.
    fn refresh(&self) {
        let Some(src) = &self.source else { return };
        let text = std::fs::read_to_string(&src.0).unwrap_or_default();
        let mut last = src.1.lock();
        if *last == text {
            return;
        }
        match FaultPlan::parse(&text) {
            Ok(plan) => {
                tracing::warn!(file = %src.0.display(), ?plan, "fault injection: new plan");
                *self.plan.lock() = plan;
            }
            Err(e) => {
                tracing::error!(file = %src.0.display(), error = %e, "fault injection: bad plan")
            }
        }
        *last = text;
    }

    /// Replaces the plan (takes effect on the next operation; releases jobs held at points it
    /// no longer lists).
    pub fn set(&self, plan: FaultPlan) {
        *self.plan.lock() = plan;
        let _held = self.held.0.lock();
        self.held.1.notify_all();
    }

    /// Waits until a job is held at `point`; false if none arrived within `timeout`.
    pub fn wait_held(&self, point: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut held = self.held.0.lock();
        while !held.iter().any(|p| p == point) {
            if self.held.1.wait_until(&mut held, deadline).timed_out() {
                return held.iter().any(|p| p == point);
            }
        }
        true
    }

    fn holds(&self, point: &str) -> bool {
        self.refresh();
        self.plan.lock().hold.iter().any(|p| p == point)
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
        self.refresh();
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
    /// The real free space, or the quota when it is smaller.
    fn available_space(&self, dir: &Path) -> io::Result<u64> {
        let real = RealFs.available_space(dir)?;
        let quota = self.applies(dir).then(|| self.plan.lock().quota).flatten();
        Ok(quota.map_or(real, |q| q.min(real)))
    }
    fn before_external_write(&self, path: &Path) -> io::Result<()> {
        if self.applies(path) && self.plan.lock().quota == Some(0) {
            // The outside writer opens the path (create, truncate) and writes into /dev/full.
            let _ = std::fs::remove_file(path);
            #[cfg(unix)]
            std::os::unix::fs::symlink("/dev/full", path)?;
        }
        Ok(())
    }
    fn hold(&self, point: &str, cancelled: &dyn Fn() -> bool) {
        if !self.holds(point) {
            return;
        }
        tracing::warn!(point, "fault injection: holding a job");
        let marker = self.source.as_ref().map(|s| held_marker(&s.0, point));
        {
            let mut held = self.held.0.lock();
            held.push(point.to_string());
            self.held.1.notify_all();
        }
        if let Some(m) = &marker {
            if let Err(e) = std::fs::write(m, point) {
                tracing::error!(file = %m.display(), error = %e, "fault injection: cannot announce a hold");
            }
        }
        // Polls: a plan file changes outside the process, and cancellation has no signal here.
        while self.holds(point) && !cancelled() {
            let mut held = self.held.0.lock();
            self.held.1.wait_for(&mut held, Duration::from_millis(5));
        }
        if let Some(m) = &marker {
            let _ = std::fs::remove_file(m);
        }
        let mut held = self.held.0.lock();
        if let Some(i) = held.iter().position(|p| p == point) {
            held.remove(i);
        }
        self.held.1.notify_all();
        tracing::warn!(
            point,
            cancelled = cancelled(),
            "fault injection: job released"
        );
    }
}
