//! The write side that commits manifests: a flush seals the frozen memtable into a segment, a
//! merge swaps segments for their compaction; both change the in-memory state only after the
//! manifest that lists the change is durable.

use std::sync::Arc;

use super::{recover::open_segment, Bitset, Collection, Slot, State, Work};
use crate::error::Result;
use crate::manifest::{FileCheck, Manifest, SegmentEntry};
use crate::segment::{self, Segment};

impl Collection {
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
            // Taken now, so that a merge committing meanwhile cannot use the same id.
            let seg_id = st.next_segment_id;
            st.next_segment_id += 1;
            (
                st.frozen.clone().expect("frozen above"),
                st.frozen_wal_end,
                seg_id,
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
            st.segments.push(slot);
            st.frozen = None;
            st.frozen_dead = Arc::new(Bitset::default());
        }
        if let Err(e) = self.wal.remove_below(wal_end) {
            tracing::warn!(collection = %self.name, error = %e, "could not remove checkpointed WAL files; they go at next open");
        }
        let written = entry_bytes(&self.state.read(), seg_id);
        self.record_work(
            Work::Flush,
            started.elapsed(),
            run.docs.len() as u64,
            written,
        );
        tracing::info!(collection = %self.name, segment = seg_id, docs = run.docs.len(), "flushed memtable");
        // A new segment may fill a size tier.
        self.nudge_compactor();
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
}

/// Bytes of segment `id`'s files (0 if it is gone already).
fn entry_bytes(st: &State, id: u64) -> u64 {
    st.segments
        .iter()
        .find(|s| s.seg.id() == id)
        .map_or(0, |s| {
            s.entry.file_len + s.entry.index_files.iter().map(|f| f.len).sum::<u64>()
        })
}

pub(crate) fn entry_with_tombstones(slot: &Slot) -> SegmentEntry {
    let mut e = slot.entry.clone();
    e.dead = slot.dead.words().to_vec();
    e
}

/// What a snapshot copies, read while writers are held off: the WAL generation the next write
/// goes to after the rotation (generations below it and from `wal_start` on are the snapshot's),
/// and the last sequence number they hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pin {
    pub wal_start: u64,
    pub wal_end: u64,
    pub last_seq: u64,
}

impl Collection {
    /// The sealed segments (oldest first) with their tombstones and manifest entries, the id
    /// the next segment gets, and the stored depth, at one instant.
    pub(crate) fn sealed(&self) -> (Vec<Slot>, u64, u32) {
        let st = self.state.read();
        (st.segments.clone(), st.next_segment_id, st.depth)
    }

    /// Rotates the WAL with writers held off and returns what a snapshot of this instant
    /// copies. The caller holds `flush_lock`, so the manifest on disk matches the pin.
    pub(crate) fn pin_wal(&self) -> Result<Pin> {
        let st = self.state.write();
        self.wal.check_poisoned()?;
        let wal_end = self.wal.rotate()?;
        Ok(Pin {
            wal_start: st.wal_start,
            wal_end,
            last_seq: st.next_seq - 1,
        })
    }

    /// Swaps the segments `merged` (ids) for `sealed`, their merge, whose document `i` was
    /// ordinal `items[i].1` of segment `items[i].0`; commits the manifest at `depth` first.
    /// Tombstones set on a source while the merge ran carry over. Returns the merged segment's slot. The caller holds
    /// `flush_lock`.
    pub(crate) fn install_merge(
        &self,
        merged: &[u64],
        sealed: Option<(Arc<Segment>, SegmentEntry)>,
        items: &[(u64, u32)],
        depth: u32,
    ) -> Result<Option<Slot>> {
        let mut st = self.state.write();
        let new_slot = sealed.map(|(seg, entry)| {
            let mut dead = Bitset::new(items.len());
            for (i, &(src, o)) in items.iter().enumerate() {
                if st
                    .segments
                    .iter()
                    .find(|x| x.seg.id() == src)
                    .is_some_and(|x| x.dead.get(o as usize))
                {
                    dead.set(i);
                }
            }
            Slot {
                seg,
                dead: Arc::new(dead),
                entry,
            }
        });
        let mut keep: Vec<Slot> = st
            .segments
            .iter()
            .filter(|s| !merged.contains(&s.seg.id()))
            .cloned()
            .collect();
        if let Some(slot) = &new_slot {
            // The merged segment takes the place of the oldest source (segments stay oldest first).
            keep.insert(0, slot.clone());
        }
        let entries = keep.iter().map(entry_with_tombstones).collect();
        let wal_start = st.wal_start;
        self.commit(&mut st, entries, wal_start, depth)?;
        st.segments = keep;
        Ok(new_slot)
    }
}
