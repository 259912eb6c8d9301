//! The append side of the WAL, with group commit and fsync poisoning.
//!
//! Appends are serialised by the caller (the collection's write lock). Durability is separate:
//! [`Wal::sync`] makes everything up to a position durable; a writer that finds its position already
//! covered by another writer's fsync returns at once, so concurrent writers share one fsync.
//! If an fsync fails, the WAL is poisoned (the page cache may have dropped the dirty pages, so
//! retrying the fsync could report a success that is not one): every later append fails with
//! `Error::Poisoned` until the collection is reopened and recovery decides what is durable.
//! A failed write is not an fsync failure: the file is rewound to the end of the last whole record
//! (so a torn record never sits before later good ones) and the append fails — with
//! `ResourceExhausted` on ENOSPC, so the caller can retry once space is back. Only if the rewind
//! itself fails is the WAL poisoned.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, IoContext, Result};
use crate::format::{encode_preamble, FileKind};
use crate::io::{Storage, StorageFile};

/// A position in the WAL: generation and byte offset just past a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WalPos {
    pub gen: u64,
    pub offset: u64,
}

#[derive(Debug)]
struct Current {
    file: Arc<dyn StorageFile>,
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
    storage: Arc<dyn Storage>,
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
        Wal::create_with(crate::io::RealFs::shared(), dir, gen, older_bytes)
    }

    /// [`Wal::create`] writing through `storage`.
    pub fn create_with(
        storage: Arc<dyn Storage>,
        dir: &Path,
        gen: u64,
        older_bytes: u64,
    ) -> Result<Wal> {
        let (file, len) = create_file(&*storage, dir, gen)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            storage,
            current: Mutex::new(Current {
                file: file.into(),
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
        Error::Poisoned(msg)
    }

    /// Appends one framed record. Callers serialise appends. Not durable until [`Wal::sync`].
    pub fn append(&self, record: &[u8]) -> Result<WalPos> {
        self.check_poisoned()?;
        let cur = self.current.lock();
        if let Err(e) = cur.file.write_all(record) {
            // Rewind over the torn prefix so that later records follow the last whole one.
            let good = self.written.load(Ordering::Acquire);
            if let Err(e2) = cur.file.set_len(good) {
                return Err(self.poison(&format!("WAL rewind after a failed write ({e})"), &e2));
            }
            let path = super::file_path(&self.dir, cur.gen);
            return Err(Error::io(path, e));
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
        let (file, len) = create_file(&*self.storage, &self.dir, next)?;
        let old_len = self.written.swap(len, Ordering::AcqRel);
        self.older_bytes.fetch_add(old_len, Ordering::AcqRel);
        *cur = Current {
            file: file.into(),
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
                match self.storage.remove(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io(&path, e))
                    }
                    _ => {}
                }
                let _ = self
                    .older_bytes
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                        Some(b.saturating_sub(len))
                    });
            }
        }
        self.storage.sync_dir(&self.dir).at(&self.dir)
    }
}

/// Header of a WAL file: its generation (so a renamed file is caught) and 8 reserved bytes.
pub(crate) fn wal_header(gen: u64) -> Vec<u8> {
    let mut h = gen.to_le_bytes().to_vec();
    h.extend_from_slice(&[0u8; 8]);
    encode_preamble(FileKind::Wal, 0, &h)
}

fn create_file(storage: &dyn Storage, dir: &Path, gen: u64) -> Result<(Box<dyn StorageFile>, u64)> {
    let path = super::file_path(dir, gen);
    let res = (|| {
        let file = storage.create(&path).at(&path)?;
        let header = wal_header(gen);
        file.write_all(&header).at(&path)?;
        file.sync_data().at(&path)?;
        drop(file);
        let file = storage.open_append(&path).at(&path)?;
        storage.sync_dir(dir).at(dir)?;
        Ok((file, header.len() as u64))
    })();
    if res.is_err() {
        // A half-written header would read as corruption at the next open.
        let _ = storage.remove(&path);
    }
    res
}
