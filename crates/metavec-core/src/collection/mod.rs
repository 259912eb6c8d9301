//! A collection: its WAL, memtable, sealed segments and manifest, and the write path.
//!
//! Concurrency: one `RwLock<State>`. Writers hold it for the WAL append and the memtable update
//! only, then wait for the fsync outside it (group commit). Searches hold the read lock while they
//! score the memtable and take `Arc`s of the segments and copy-on-write tombstones, then release it:
//! the rest of a search runs on that point-in-time view. A flush freezes the memtable under the
//! lock, builds the segment outside it, and installs it under the lock.
//!
//! Background work runs on two threads per collection: the flusher seals a memtable past its
//! threshold, and the compactor runs the merges the size-tiered policy asks for. A merge never
//! holds up a flush (see [`crate::compaction`]).

mod commit;
mod listing;
mod recover;
mod state;
mod view;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use parking_lot::{Mutex, RwLock};

use crate::config::CollectionConfig;
use crate::document::{prepare_batch, validate_id};
use crate::error::{Error, IoContext, Result};
use crate::manifest::Manifest;
use crate::segment::Segment;
use crate::wal::{self, Wal};
use crate::Document;

use crate::background::Lane;
pub use listing::{PayloadUpdate, ScrollPage, MAX_SCROLL_LIMIT, MAX_SET_PAYLOAD_IDS};
pub use state::Bitset;
#[cfg(test)]
pub(crate) use state::Run;
pub(crate) use state::Slot;
use state::{Loc, State};
pub use view::{SegmentView, View};

/// Knobs of the write path.
#[derive(Debug, Clone)]
pub struct CollectionOptions {
    /// A memtable above this many bytes is flushed into a segment after the write that crossed it.
    pub memtable_max_bytes: usize,
    /// Check every vector block's crc when a segment is opened (otherwise: on first touch).
    pub verify_on_open: bool,
    /// Size-tiered compaction: this many segments of one size tier (sizes within a factor of
    /// the fanout) are merged into one of the next tier (see [`crate::compaction::policy`]).
    pub compact_fanout: usize,
    /// More sealed segments than this after the tier rule: the smallest are merged.
    pub compact_max_segments: usize,
    /// A segment with more than this fraction of its documents deleted or overwritten is
    /// rewritten.
    pub compact_dead_ratio: f64,
    /// A merge reads its sources at most this fast, in MB/s of vectors (0: no limit).
    pub compact_max_mb_per_s: f64,
    /// The file system the durable write paths go through (tests inject faults here); by
    /// default [`crate::io::default_storage`].
    pub storage: Arc<dyn crate::io::Storage>,
}

impl Default for CollectionOptions {
    fn default() -> Self {
        CollectionOptions {
            memtable_max_bytes: 64 << 20,
            verify_on_open: false,
            compact_fanout: 4,
            compact_max_segments: 32,
            compact_dead_ratio: 0.3,
            compact_max_mb_per_s: 0.0,
            storage: crate::io::default_storage(),
        }
    }
}

/// Acknowledgement of a durable write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteAck {
    /// WAL sequence number of the batch.
    pub seq: u64,
    /// Documents written, or ids that existed and were deleted.
    pub count: usize,
}

/// One sealed segment, as reported by [`Collection::info`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub id: u64,
    pub docs: u64,
    pub live_docs: u64,
    pub file_bytes: u64,
    pub index_bytes: u64,
}

/// Background and operator work a collection has done since it was opened: how often and how
/// long (for monitoring; the `seconds` are wall time).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MaintenanceStats {
    pub flushes: u64,
    pub flush_seconds: f64,
    /// Documents and bytes (segment + index files) flushes wrote.
    pub flushed_docs: u64,
    pub flushed_bytes: u64,
    pub compactions: u64,
    pub compaction_seconds: f64,
    /// Documents and bytes compactions wrote: `compacted_docs / flushed_docs` is how many times
    /// a document was rewritten on average.
    pub compacted_docs: u64,
    pub compacted_bytes: u64,
    pub snapshots: u64,
    pub snapshot_seconds: f64,
}

/// What [`MaintenanceStats`] counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Work {
    Flush,
    Compaction,
    Snapshot,
}

/// A snapshot of a collection's shape and size.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionInfo {
    pub name: String,
    pub config: CollectionConfig,
    pub live_docs: u64,
    pub memtable_docs: u64,
    pub segments: Vec<SegmentInfo>,
    pub wal_bytes: u64,
    /// Vectors per document kept in sealed segments (M_c unless shrunk to a budget).
    pub stored_vectors: u32,
    pub maintenance: MaintenanceStats,
}

#[derive(Debug)]
pub struct Collection {
    name: String,
    config: CollectionConfig,
    dir: PathBuf,
    pub(crate) opts: CollectionOptions,
    pub(crate) wal: Wal,
    state: RwLock<State>,
    /// Serialises flushes and snapshots, and the commit of a merge with them.
    pub(crate) flush_lock: Mutex<()>,
    /// One merge at a time (held for the whole merge; flushes do not wait for it).
    pub(crate) merge_lock: Mutex<()>,
    dropped: AtomicBool,
    /// Set by `shutdown`: a merge in progress stops.
    closing: AtomicBool,
    /// Wake the background flusher and compactor; `None` once the collection is shut down.
    flush_signal: Mutex<Option<mpsc::SyncSender<()>>>,
    compact_signal: Mutex<Option<mpsc::SyncSender<()>>>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Moving average of search latency (ms) per budget, for auto budget.
    pub(crate) latency: Mutex<std::collections::HashMap<crate::config::Budget, f64>>,
    maintenance: Mutex<MaintenanceStats>,
}

impl Collection {
    pub fn segments_dir(dir: &Path) -> PathBuf {
        dir.join("segments")
    }

    pub fn wal_dir(dir: &Path) -> PathBuf {
        dir.join("wal")
    }

    /// Lays out an empty collection directory with its first manifest.
    pub(crate) fn create_dir(dir: &Path) -> Result<()> {
        std::fs::create_dir_all(Self::segments_dir(dir)).at(dir)?;
        std::fs::create_dir_all(Self::wal_dir(dir)).at(dir)?;
        Manifest {
            version: 1,
            next_segment_id: 1,
            wal_start: 1,
            last_seq: 0,
            segments: Vec::new(),
            stored_vectors: 0,
        }
        .store(dir)?;
        crate::io::fsync_dir(dir)?;
        crate::io::fsync_dir(dir.parent().unwrap_or(Path::new(".")))
    }

    /// Opens a collection and starts its background flusher thread, which seals the memtable when
    /// a write pushes it past `memtable_max_bytes`.
    pub(crate) fn open(
        name: &str,
        dir: &Path,
        config: CollectionConfig,
        opts: CollectionOptions,
    ) -> Result<Arc<Collection>> {
        let coll = Arc::new(Self::recover(name, dir, config, opts)?);
        let (flush_tx, flush_rx) = mpsc::sync_channel::<()>(1);
        let (compact_tx, compact_rx) = mpsc::sync_channel::<()>(1);
        let flusher = Self::worker(&coll, format!("flush-{name}"), Lane::Flush, flush_rx, |c| {
            c.background_flush()
        })?;
        let compactor = Self::worker(
            &coll,
            format!("compact-{name}"),
            Lane::Merge,
            compact_rx,
            |c| {
                while c.compact_step()?.is_some() {}
                Ok(())
            },
        )?;
        *coll.flush_signal.lock() = Some(flush_tx);
        *coll.compact_signal.lock() = Some(compact_tx);
        *coll.workers.lock() = vec![flusher, compactor];
        coll.nudge_compactor();
        Ok(coll)
    }

    /// A background thread that runs `job` each time `rx` is signalled, until the channel closes
    /// or the collection is gone.
    fn worker(
        coll: &Arc<Collection>,
        name: String,
        lane: crate::background::Lane,
        rx: mpsc::Receiver<()>,
        job: fn(&Collection) -> Result<()>,
    ) -> Result<std::thread::JoinHandle<()>> {
        let weak = Arc::downgrade(coll);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                crate::background::lower_priority(lane);
                while rx.recv().is_ok() {
                    let Some(c) = weak.upgrade() else { break };
                    if c.check_live().is_err() || c.check_open().is_err() {
                        continue;
                    }
                    if let Err(e) = job(&c) {
                        if c.check_live().is_ok() && c.check_open().is_ok() {
                            tracing::error!(
                                collection = %c.name,
                                error = %e,
                                "background flush or compaction failed; the next write retries it"
                            );
                        }
                    }
                }
            })
            .map_err(|e| Error::io(&coll.dir, e))
    }

    /// The flusher's round: flush a memtable past its threshold, then wake the compactor.
    fn background_flush(&self) -> Result<()> {
        let over = self.state.read().mem.bytes >= self.opts.memtable_max_bytes;
        if over {
            self.flush()?;
        }
        Ok(())
    }

    /// Wakes the flusher (a full channel means it is already due to run).
    fn nudge(&self) {
        if let Some(tx) = &*self.flush_signal.lock() {
            let _ = tx.try_send(());
        }
    }

    /// Wakes the compactor, which merges while the policy asks for it.
    pub(crate) fn nudge_compactor(&self) {
        if let Some(tx) = &*self.compact_signal.lock() {
            let _ = tx.try_send(());
        }
    }

    pub fn options(&self) -> &CollectionOptions {
        &self.opts
    }

    /// Stops the background threads: a flush in progress finishes, a merge in progress is
    /// cancelled. Later writes still work (they no longer trigger flushes); the engine calls this
    /// before it lets go of the directory.
    pub(crate) fn shutdown(&self) {
        self.closing.store(true, Ordering::Release);
        self.flush_signal.lock().take();
        self.compact_signal.lock().take();
        let workers = std::mem::take(&mut *self.workers.lock());
        for h in workers {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    /// Fails once the collection is closing (how a merge in progress is cancelled).
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::FailedPrecondition(format!(
                "collection {:?} is closing: the compaction was cancelled",
                self.name
            )));
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &CollectionConfig {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::Release);
    }

    pub(crate) fn check_live(&self) -> Result<()> {
        if self.dropped.load(Ordering::Acquire) {
            return Err(Error::NotFound(format!(
                "collection {:?} was deleted",
                self.name
            )));
        }
        Ok(())
    }

    /// Inserts or replaces documents. Returns once the batch is durable in the WAL; the batch is
    /// visible to searches from then on. A batch that fails validation writes nothing.
    pub fn upsert(&self, mut docs: Vec<Document>) -> Result<WriteAck> {
        self.check_live()?;
        prepare_batch(&mut docs, &self.config)?;
        let count = docs.len();
        let (seq, pos, over) = {
            let mut st = self.state.write();
            let seq = st.next_seq;
            let pos = self.wal.append(&wal::record::encode_upsert(seq, &docs))?;
            st.next_seq += 1;
            st.apply_upsert(docs);
            (seq, pos, st.mem.bytes)
        };
        self.wal.sync(pos)?;
        if over >= self.opts.memtable_max_bytes {
            self.nudge();
            // Backpressure: at twice the threshold, wait for the flush in progress to finish.
            if over >= self.opts.memtable_max_bytes.saturating_mul(2) {
                drop(self.flush_lock.lock());
            }
        }
        Ok(WriteAck { seq, count })
    }

    /// Deletes documents by id; ids that do not exist are ignored. `count` is how many existed.
    pub fn delete(&self, ids: &[String]) -> Result<WriteAck> {
        self.check_live()?;
        if ids.is_empty() {
            return Err(Error::invalid(
                "ids is empty: a delete needs at least one id",
            ));
        }
        for (i, id) in ids.iter().enumerate() {
            validate_id(id, &format!("ids[{i}]"))?;
        }
        let (seq, pos, count) = {
            let mut st = self.state.write();
            let seq = st.next_seq;
            let pos = self.wal.append(&wal::record::encode_delete(seq, ids))?;
            st.next_seq += 1;
            (seq, pos, st.apply_delete(ids))
        };
        self.wal.sync(pos)?;
        if count > 0 {
            // Deletes raise the tombstone ratio the compaction policy watches.
            self.nudge_compactor();
        }
        Ok(WriteAck { seq, count })
    }

    /// Counts one finished flush, compaction or snapshot, its duration, and the documents and
    /// bytes it wrote.
    pub(crate) fn record_work(&self, work: Work, took: std::time::Duration, docs: u64, bytes: u64) {
        let mut m = self.maintenance.lock();
        let secs = took.as_secs_f64();
        match work {
            Work::Flush => {
                m.flushes += 1;
                m.flush_seconds += secs;
                m.flushed_docs += docs;
                m.flushed_bytes += bytes;
            }
            Work::Compaction => {
                m.compactions += 1;
                m.compaction_seconds += secs;
                m.compacted_docs += docs;
                m.compacted_bytes += bytes;
            }
            Work::Snapshot => {
                m.snapshots += 1;
                m.snapshot_seconds += secs;
            }
        }
        drop(m);
        if matches!(work, Work::Flush | Work::Compaction) {
            crate::background::release_memory();
        }
    }

    /// A fresh segment id (never handed out twice, even to a flush and a merge running at once).
    pub(crate) fn take_segment_id(&self) -> u64 {
        let mut st = self.state.write();
        let id = st.next_segment_id;
        st.next_segment_id += 1;
        id
    }

    /// Bytes of WAL on disk not yet covered by a segment.
    pub fn wal_bytes(&self) -> u64 {
        self.wal.size_bytes()
    }

    /// Checks every checksum of every sealed file of this collection.
    pub fn verify(&self) -> Result<()> {
        let segs: Vec<Arc<Segment>> = self
            .state
            .read()
            .segments
            .iter()
            .map(|s| s.seg.clone())
            .collect();
        for s in segs {
            s.verify()?;
        }
        Ok(())
    }
}

fn lost(id: &str) -> Error {
    Error::corruption(
        PathBuf::new(),
        0,
        format!("id map points at a missing document for {id:?}"),
    )
}
