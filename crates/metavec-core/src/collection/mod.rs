//! A collection: its WAL, memtable, sealed segments and manifest, and the write path.
//!
//! Concurrency: one `RwLock<State>`. Writers hold it for the WAL append and the memtable update
//! only, then wait for the fsync outside it (group commit). Searches hold the read lock while they
//! score the memtable and take `Arc`s of the segments and copy-on-write tombstones, then release it:
//! the rest of a search runs on that point-in-time view. A flush freezes the memtable under the
//! lock, builds the segment outside it, and installs it under the lock.

mod state;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use parking_lot::{Mutex, RwLock};

use crate::config::CollectionConfig;
use crate::document::{prepare_batch, validate_id};
use crate::error::{Error, IoContext, Result};
use crate::io::{file_crc, remove_if_exists};
use crate::manifest::{FileCheck, Manifest, SegmentEntry};
use crate::segment::{self, Segment};
use crate::wal::{self, Record, Wal};
use crate::Document;

pub use state::Bitset;
#[cfg(test)]
pub(crate) use state::Run;
pub(crate) use state::{Loc, Slot, State};

/// Knobs of the write path.
#[derive(Debug, Clone)]
pub struct CollectionOptions {
    /// A memtable above this many bytes is flushed into a segment after the write that crossed it.
    pub memtable_max_bytes: usize,
    /// Check every vector block's crc when a segment is opened (otherwise: on first touch).
    pub verify_on_open: bool,
    /// Background compaction merges all segments when there are more than this many.
    pub compact_max_segments: usize,
    /// ... or when more than this fraction of sealed documents is tombstoned.
    pub compact_dead_ratio: f64,
    /// The file system the durable write paths go through (tests inject faults here); by
    /// default [`crate::io::default_storage`].
    pub storage: Arc<dyn crate::io::Storage>,
}

impl Default for CollectionOptions {
    fn default() -> Self {
        CollectionOptions {
            memtable_max_bytes: 64 << 20,
            verify_on_open: false,
            compact_max_segments: 8,
            compact_dead_ratio: 0.3,
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
    pub compactions: u64,
    pub compaction_seconds: f64,
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
    pub(crate) state: RwLock<State>,
    /// Serialises everything that commits a manifest: flush, compaction, snapshot.
    pub(crate) flush_lock: Mutex<()>,
    dropped: AtomicBool,
    /// Wakes the background flusher; `None` once the collection is shut down.
    flush_signal: Mutex<Option<mpsc::SyncSender<()>>>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
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
        let (tx, rx) = mpsc::sync_channel::<()>(1);
        let weak = Arc::downgrade(&coll);
        let handle = std::thread::Builder::new()
            .name(format!("flush-{name}"))
            .spawn(move || {
                while rx.recv().is_ok() {
                    let Some(c) = weak.upgrade() else { break };
                    if let Err(e) = c.background_tick() {
                        tracing::error!(
                            collection = %c.name,
                            error = %e,
                            "background flush or compaction failed; the next write retries it"
                        );
                    }
                }
            })
            .map_err(|e| Error::io(dir, e))?;
        *coll.flush_signal.lock() = Some(tx);
        *coll.flusher.lock() = Some(handle);
        Ok(coll)
    }

    /// One round of background work: flush a memtable past its threshold, then compact if the
    /// policy asks for it.
    fn background_tick(&self) -> Result<()> {
        if self.check_live().is_err() {
            return Ok(());
        }
        let over = self.state.read().mem.bytes >= self.opts.memtable_max_bytes;
        if over {
            self.flush()?;
        }
        if self.needs_compaction() {
            self.compact()?;
        }
        Ok(())
    }

    /// Wakes the background thread (a full channel means it is already due to run).
    fn nudge(&self) {
        if let Some(tx) = &*self.flush_signal.lock() {
            let _ = tx.try_send(());
        }
    }

    pub fn options(&self) -> &CollectionOptions {
        &self.opts
    }

    /// Stops the background flusher, waiting for a flush in progress. Later writes still work
    /// (they no longer trigger flushes); the engine calls this before it lets go of the directory.
    pub(crate) fn shutdown(&self) {
        self.flush_signal.lock().take();
        if let Some(h) = self.flusher.lock().take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    /// Loads the manifest and its segments, removes unlisted files, replays the WAL.
    fn recover(
        name: &str,
        dir: &Path,
        config: CollectionConfig,
        opts: CollectionOptions,
    ) -> Result<Collection> {
        let manifest = Manifest::load(dir)?;
        let depth = match manifest.stored_vectors {
            0 => config.doc_vectors,
            d => d.min(config.doc_vectors),
        };
        let stored = config.at_depth(depth);
        let seg_dir = Self::segments_dir(dir);
        let wal_dir = Self::wal_dir(dir);
        let mut state = State::default();
        for entry in &manifest.segments {
            let seg = open_segment(&seg_dir, entry, &stored, opts.verify_on_open)?;
            let dead = Bitset::from_words(entry.dead.clone());
            if dead.words().len() != (entry.n_docs as usize).div_ceil(64) {
                return Err(Error::corruption(
                    dir.join(crate::manifest::FILE_NAME),
                    0,
                    format!(
                        "tombstones of segment {} have the wrong length ({} words)",
                        entry.id,
                        dead.words().len()
                    ),
                ));
            }
            let mut entry = entry.clone();
            entry.dead.clear();
            state.add_segment(Slot {
                seg: Arc::new(seg),
                dead: Arc::new(dead),
                entry,
            });
        }
        remove_unlisted_segments(&seg_dir, &manifest)?;
        for gen in wal::list_generations(&wal_dir)? {
            if gen < manifest.wal_start {
                remove_if_exists(&wal::file_path(&wal_dir, gen))?;
            }
        }
        let mut last_seq = manifest.last_seq;
        let report = wal::replay_dir(&wal_dir, manifest.wal_start, config.doc_floats(), |rec| {
            last_seq = last_seq.max(rec.seq());
            match rec {
                Record::Upsert { docs, .. } => state.apply_upsert(docs),
                Record::Delete { ids, .. } => {
                    state.apply_delete(&ids);
                }
            }
            Ok(())
        })?;
        if report.records > 0 || report.truncated_bytes > 0 {
            tracing::info!(
                collection = name,
                records = report.records,
                files = report.files,
                truncated_bytes = report.truncated_bytes,
                "WAL replayed"
            );
        }
        state.next_seq = last_seq + 1;
        state.manifest_version = manifest.version;
        state.wal_start = manifest.wal_start;
        state.depth = depth;
        state.next_segment_id = manifest.next_segment_id;
        let gen = report
            .last_gen
            .map_or(manifest.wal_start, |g| g + 1)
            .max(manifest.wal_start);
        let wal = Wal::create_with(opts.storage.clone(), &wal_dir, gen, report.bytes)?;
        Ok(Collection {
            name: name.to_string(),
            config,
            dir: dir.to_path_buf(),
            opts,
            wal,
            state: RwLock::new(state),
            flush_lock: Mutex::new(()),
            dropped: AtomicBool::new(false),
            flush_signal: Mutex::new(None),
            flusher: Mutex::new(None),
            latency: Mutex::default(),
            maintenance: Mutex::default(),
        })
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
            self.nudge();
        }
        Ok(WriteAck { seq, count })
    }

    /// The stored documents for `ids` (normalised vectors, payload), `None` where an id is absent.
    /// After a shrink-to-budget compaction only the stored prefix of each document comes back.
    pub fn get(&self, ids: &[String]) -> Result<Vec<Option<Document>>> {
        self.check_live()?;
        for (i, id) in ids.iter().enumerate() {
            validate_id(id, &format!("ids[{i}]"))?;
        }
        let st = self.state.read();
        ids.iter()
            .map(|id| {
                let Some(loc) = st.ids.get(id) else {
                    return Ok(None);
                };
                Ok(Some(match *loc {
                    Loc::Mem(i) => st
                        .mem
                        .get(i)
                        .map(|d| (**d).clone())
                        .ok_or_else(|| lost(id))?,
                    Loc::Frozen(i) => st
                        .frozen
                        .as_ref()
                        .and_then(|r| r.docs.get(i as usize))
                        .map(|d| (**d).clone())
                        .ok_or_else(|| lost(id))?,
                    Loc::Seg(seg, ord) => {
                        let slot = st
                            .segments
                            .iter()
                            .find(|s| s.seg.id() == seg)
                            .ok_or_else(|| lost(id))?;
                        Document {
                            id: id.clone(),
                            vectors: slot.seg.vectors(ord as usize)?,
                            payload: slot.seg.payload(ord as usize).map(str::to_string),
                        }
                    }
                }))
                .map(|d| {
                    d.map(|mut d| {
                        d.vectors
                            .truncate(st.depth as usize * self.config.dim as usize);
                        d
                    })
                })
            })
            .collect()
    }

    /// Number of live documents.
    pub fn len(&self) -> usize {
        self.state.read().ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn info(&self) -> CollectionInfo {
        let st = self.state.read();
        CollectionInfo {
            name: self.name.clone(),
            config: self.config.clone(),
            live_docs: st.ids.len() as u64,
            memtable_docs: (st.mem.live
                + st.frozen
                    .as_ref()
                    .map_or(0, |r| r.docs.len() - st.frozen_dead.count()))
                as u64,
            segments: st
                .segments
                .iter()
                .map(|s| SegmentInfo {
                    id: s.seg.id(),
                    docs: s.seg.len() as u64,
                    live_docs: (s.seg.len() - s.dead.count()) as u64,
                    file_bytes: s.entry.file_len,
                    index_bytes: s.entry.index_files.iter().map(|f| f.len).sum(),
                })
                .collect(),
            wal_bytes: self.wal.size_bytes(),
            stored_vectors: st.depth,
            maintenance: *self.maintenance.lock(),
        }
    }

    /// Counts one finished flush, compaction or snapshot and its duration.
    pub(crate) fn record_work(&self, work: Work, took: std::time::Duration) {
        let mut m = self.maintenance.lock();
        let secs = took.as_secs_f64();
        match work {
            Work::Flush => (m.flushes += 1, m.flush_seconds += secs),
            Work::Compaction => (m.compactions += 1, m.compaction_seconds += secs),
            Work::Snapshot => (m.snapshots += 1, m.snapshot_seconds += secs),
        };
    }

    /// Seals the memtable into a segment and commits it in the manifest; WAL generations it
    /// covers are deleted. Returns the new segment's id, or `None` when there was nothing to flush.
    pub fn flush(&self) -> Result<Option<u64>> {
        self.check_live()?;
        let guard = self.flush_lock.lock();
        // Deleted while this waited: its directory may be gone.
        self.check_live()?;
        self.flush_locked(guard)
    }

    fn flush_locked(&self, _guard: parking_lot::MutexGuard<'_, ()>) -> Result<Option<u64>> {
        self.flush_held()
    }

    /// Flush body; the caller holds `flush_lock`. A run frozen by an earlier flush that failed
    /// (disk full, say) is written first, then whatever the memtable took in since: a flush that
    /// returns Ok has made everything acknowledged before it durable in segments.
    pub(crate) fn flush_held(&self) -> Result<Option<u64>> {
        let leftover = self.state.read().frozen.is_some();
        let first = self.flush_one()?;
        if !leftover {
            return Ok(first);
        }
        Ok(self.flush_one()?.or(first))
    }

    /// Writes the frozen run, freezing the memtable first if there is none.
    fn flush_one(&self) -> Result<Option<u64>> {
        let started = std::time::Instant::now();
        let (run, wal_end, seg_id) = {
            let mut st = self.state.write();
            if st.frozen.is_none() {
                if st.mem.live == 0 {
                    return Ok(None);
                }
                let next_gen = self.wal.rotate()?;
                st.freeze(next_gen, self.config.dim as usize);
            }
            (
                st.frozen.clone().expect("frozen above"),
                st.frozen_wal_end,
                st.next_segment_id,
            )
        };
        self.opts
            .storage
            .hold("flush", &|| self.check_live().is_err());
        self.check_live()?;
        let depth = self.state.read().depth;
        let (seg, entry) = self.seal(seg_id, &*run, depth)?;
        {
            let mut st = self.state.write();
            let slot = Slot {
                seg,
                dead: st.frozen_dead.clone(),
                entry,
            };
            // Commit first: if the manifest cannot be written, memory still matches disk.
            let entries = st
                .segments
                .iter()
                .chain(std::iter::once(&slot))
                .map(entry_with_tombstones)
                .collect();
            let depth = st.depth;
            self.commit(&mut st, entries, wal_end, depth)?;
            for (i, d) in run.docs.iter().enumerate() {
                if let Some(loc) = st.ids.get_mut(&d.id) {
                    if *loc == Loc::Frozen(i as u32) {
                        *loc = Loc::Seg(seg_id, i as u32);
                    }
                }
            }
            st.segments.push(slot);
            st.frozen = None;
            st.frozen_dead = Arc::new(Bitset::default());
        }
        if let Err(e) = self.wal.remove_below(wal_end) {
            tracing::warn!(collection = %self.name, error = %e, "could not remove checkpointed WAL files; they go at next open");
        }
        self.record_work(Work::Flush, started.elapsed());
        tracing::info!(collection = %self.name, segment = seg_id, docs = run.docs.len(), "flushed memtable");
        Ok(Some(seg_id))
    }

    /// Writes segment `seg_id` of `docs` (and its HNSW), opens it, and returns it with its
    /// manifest entry (no tombstones yet).
    pub(crate) fn seal(
        &self,
        seg_id: u64,
        docs: &dyn segment::builder::DocSource,
        depth: u32,
    ) -> Result<(Arc<Segment>, SegmentEntry)> {
        let seg_dir = Self::segments_dir(&self.dir);
        let stored = self.config.at_depth(depth);
        let built = segment::builder::build_segment_with(
            &*self.opts.storage,
            &seg_dir,
            seg_id,
            &stored,
            docs,
        )?;
        let entry = SegmentEntry {
            id: seg_id,
            n_docs: built.n_docs,
            file_len: built.file_len,
            index_files: built
                .index_files
                .iter()
                .map(|(name, len, crc)| FileCheck {
                    name: name.clone(),
                    len: *len,
                    crc: *crc,
                })
                .collect(),
            dead: Vec::new(),
        };
        let seg = Arc::new(open_segment(&seg_dir, &entry, &stored, false)?);
        Ok((seg, entry))
    }

    /// Writes the manifest listing `segments` (entries with tombstones) and records the
    /// commit in `st`. Callers hold `flush_lock` and the state write lock, and change the
    /// in-memory segment list only after this succeeds.
    pub(crate) fn commit(
        &self,
        st: &mut State,
        segments: Vec<SegmentEntry>,
        wal_start: u64,
        depth: u32,
    ) -> Result<()> {
        let next_segment_id = segments
            .iter()
            .map(|s| s.id + 1)
            .max()
            .unwrap_or(0)
            .max(st.next_segment_id);
        let manifest = Manifest {
            version: st.manifest_version + 1,
            next_segment_id,
            wal_start,
            last_seq: st.next_seq - 1,
            segments,
            stored_vectors: if depth >= self.config.doc_vectors {
                0
            } else {
                depth
            },
        };
        manifest.store_with(&*self.opts.storage, &self.dir)?;
        st.depth = depth;
        st.manifest_version = manifest.version;
        st.next_segment_id = manifest.next_segment_id;
        st.wal_start = wal_start;
        Ok(())
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

pub(crate) fn entry_with_tombstones(slot: &Slot) -> SegmentEntry {
    let mut e = slot.entry.clone();
    e.dead = slot.dead.words().to_vec();
    e
}

/// Opens a segment listed in the manifest after checking its file length and index crcs.
pub(crate) fn open_segment(
    seg_dir: &Path,
    entry: &SegmentEntry,
    cfg: &CollectionConfig,
    verify: bool,
) -> Result<Segment> {
    let path = seg_dir.join(segment::file_name(entry.id));
    let len = std::fs::metadata(&path).at(&path)?.len();
    if len != entry.file_len {
        return Err(Error::corruption(
            &path,
            len.min(entry.file_len),
            format!(
                "segment file is {len} bytes, the manifest says {}",
                entry.file_len
            ),
        ));
    }
    for f in &entry.index_files {
        let p = seg_dir.join(&f.name);
        let (crc, len) = file_crc(&p)?;
        if (crc, len) != (f.crc, f.len) {
            return Err(Error::corruption(
                &p,
                0,
                format!(
                    "index file checksum mismatch ({len} bytes, manifest says {})",
                    f.len
                ),
            ));
        }
    }
    let seg = Segment::open(seg_dir, entry.id, cfg)?;
    if seg.len() as u64 != entry.n_docs {
        return Err(Error::corruption(
            &path,
            0,
            format!(
                "segment holds {} docs, the manifest says {}",
                seg.len(),
                entry.n_docs
            ),
        ));
    }
    if verify {
        seg.verify()?;
    }
    Ok(seg)
}

/// Deletes segment and index files no manifest entry lists (left by a crashed flush) and `.tmp` files.
fn remove_unlisted_segments(seg_dir: &Path, manifest: &Manifest) -> Result<()> {
    for entry in std::fs::read_dir(seg_dir).at(seg_dir)? {
        let entry = entry.at(seg_dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let listed = segment::parse_file_name(name)
            .is_some_and(|id| manifest.segments.iter().any(|s| s.id == id));
        if !listed && (name.starts_with("seg-") || name.ends_with(".tmp")) {
            tracing::info!(file = %name, "removing a file no manifest lists");
            remove_if_exists(&entry.path())?;
        }
    }
    Ok(())
}
