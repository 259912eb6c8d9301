//! The append side of the WAL, with group commit and fsync poisoning.
//!
//! Appends are serialised by the caller (the collection's write lock). Durability is separate:
//! [`Wal::sync`] makes everything up to a position durable; a writer that finds its position already
//! covered by another writer's fsync returns at once, so concurrent writers share one fsync.
//! If a write or an fsync fails, the WAL is poisoned (the page cache may have dropped the dirty
//! pages, so retrying the fsync could report a success that is not one): every later append fails
//! with `Error::Poisoned` until the collection is reopened and recovery decides what is durable.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, IoContext, Result};
use crate::format::{encode_preamble, FileKind};
use crate::io::fsync_dir;

/// A position in the WAL: generation and byte offset just past a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WalPos {
    pub gen: u64,
    pub offset: u64,
}

#[derive(Debug)]
struct Current {
    file: Arc<File>,
    gen: u64,
}

#[derive(Debug)]
struct Synced {
    pos: WalPos,
}

/// The WAL of one collection.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    /// Lock order: `current` is taken last, `synced` before it.
    current: Mutex<Current>,
    synced: Mutex<Synced>,
    /// Bytes written to the current generation's file.
    written: AtomicU64,
    /// Bytes in older, not yet deleted generations (for stats).
    older_bytes: AtomicU64,
    poisoned: Mutex<Option<String>>,
}

impl Wal {
    /// Starts a new WAL generation file in `dir` and returns the writer on it.
    pub fn create(dir: &Path, gen: u64, older_bytes: u64) -> Result<Wal> {
        let (file, len) = create_file(dir, gen)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            current: Mutex::new(Current {
                file: Arc::new(file),
                gen,
            }),
            synced: Mutex::new(Synced {
                pos: WalPos { gen, offset: len },
            }),
            written: AtomicU64::new(len),
            older_bytes: AtomicU64::new(older_bytes),
            poisoned: Mutex::new(None),
        })
    }

    pub fn gen(&self) -> u64 {
        self.current.lock().gen
    }

    /// Bytes of WAL on disk (all live generations).
    pub fn size_bytes(&self) -> u64 {
        self.written.load(Ordering::Acquire) + self.older_bytes.load(Ordering::Acquire)
    }

    pub fn check_poisoned(&self) -> Result<()> {
        match &*self.poisoned.lock() {
            Some(msg) => Err(Error::Poisoned(msg.clone())),
            None => Ok(()),
        }
    }

    fn poison(&self, what: &str, e: &std::io::Error) -> Error {
        let msg =
            format!("{what} failed ({e}); writes are refused until the collection is reopened");
        tracing::error!(dir = %self.dir.display(), "{msg}");
        *self.poisoned.lock() = Some(msg.clone());
        if e.raw_os_error() == Some(28) {
            return Error::ResourceExhausted(format!("disk full: {msg}"));
        }
        Error::Poisoned(msg)
    }

    /// Appends one framed record. Callers serialise appends. Not durable until [`Wal::sync`].
    pub fn append(&self, record: &[u8]) -> Result<WalPos> {
        self.check_poisoned()?;
        let cur = self.current.lock();
        if let Err(e) = (&*cur.file).write_all(record) {
            return Err(self.poison("WAL write", &e));
        }
        let offset = self
            .written
            .fetch_add(record.len() as u64, Ordering::AcqRel)
            + record.len() as u64;
        Ok(WalPos {
            gen: cur.gen,
            offset,
        })
    }

    /// Returns once everything up to `pos` is durable (group commit).
    pub fn sync(&self, pos: WalPos) -> Result<()> {
        let mut synced = self.synced.lock();
        self.check_poisoned()?;
        if synced.pos >= pos {
            return Ok(());
        }
        // We are the leader: fsync everything written so far, covering every waiter behind us.
        let (file, gen) = {
            let cur = self.current.lock();
            (cur.file.clone(), cur.gen)
        };
        let upto = self.written.load(Ordering::Acquire);
        if let Err(e) = file.sync_data() {
            return Err(self.poison("WAL fsync", &e));
        }
        synced.pos = WalPos { gen, offset: upto };
        Ok(())
    }

    /// Seals the current generation (fsynced) and starts the next; returns the new generation.
    /// Callers hold the collection's write lock, so no append races with this.
    pub fn rotate(&self) -> Result<u64> {
        self.check_poisoned()?;
        let mut synced = self.synced.lock();
        let mut cur = self.current.lock();
        if let Err(e) = cur.file.sync_data() {
            return Err(self.poison("WAL fsync", &e));
        }
        let next = cur.gen + 1;
        let (file, len) = create_file(&self.dir, next)?;
        let old_len = self.written.swap(len, Ordering::AcqRel);
        self.older_bytes.fetch_add(old_len, Ordering::AcqRel);
        *cur = Current {
            file: Arc::new(file),
            gen: next,
        };
        synced.pos = WalPos {
            gen: next,
            offset: len,
        };
        Ok(next)
    }

    /// Deletes the files of generations below `keep_from` (they are covered by a manifest).
    pub fn remove_below(&self, keep_from: u64) -> Result<()> {
        for gen in super::list_generations(&self.dir)? {
            if gen < keep_from {
                let path = super::file_path(&self.dir, gen);
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                crate::io::remove_if_exists(&path)?;
                let _ = self
                    .older_bytes
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                        Some(b.saturating_sub(len))
                    });
            }
        }
        fsync_dir(&self.dir)
    }
}

/// Header of a WAL file: its generation (so a renamed file is caught) and 8 reserved bytes.
pub(crate) fn wal_header(gen: u64) -> Vec<u8> {
    let mut h = gen.to_le_bytes().to_vec();
    h.extend_from_slice(&[0u8; 8]);
    encode_preamble(FileKind::Wal, 0, &h)
}

fn create_file(dir: &Path, gen: u64) -> Result<(File, u64)> {
    let path = super::file_path(dir, gen);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .at(&path)?;
    let header = wal_header(gen);
    file.write_all(&header).at(&path)?;
    file.sync_all().at(&path)?;
    drop(file);
    let file = OpenOptions::new().append(true).open(&path).at(&path)?;
    fsync_dir(dir)?;
    Ok((file, header.len() as u64))
}
