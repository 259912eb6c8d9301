//! Compaction: merge sealed segments, dropping deleted and overwritten documents, and swap the
//! result in through the manifest.
//!
//! **Policy** (background, on its own thread, after each flush and delete): size tiers, see
//! [`policy`]. Each document is rewritten O(log N) times and the segment count stays
//! logarithmic. An operator's `compact` merges everything into one segment.
//!
//! **Concurrency.** One merge runs at a time per collection (`merge_lock`). It reads its sources
//! through their `Arc`s without any lock, so writes, searches *and flushes* go on while it runs;
//! it takes `flush_lock` (which serialises manifest commits with flushes and snapshots) and the
//! state write lock only to commit. Tombstones set on a source while the merge ran are carried
//! over to the merged segment at commit, and segments flushed meanwhile stay. Searches that
//! started before the commit keep their view (the old segments stay mapped until the last such
//! search ends); the old files are unlinked after the commit. Shrink-to-budget seals the memtable
//! first and holds `flush_lock` throughout.
//!
//! **Disk and I/O.** A merge reserves the bytes it will write before it starts (process-wide,
//! against the file system's free space, keeping room for two memtable flushes) and fails with
//! RESOURCE_EXHAUSTED when they are not there; it can be throttled to `compact_max_mb_per_s` of
//! source vectors read (and so, about, of segment bytes written). Closing the collection cancels
//! a merge in progress; the half-made files go at once or at the next open.

pub mod policy;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::collection::{Collection, Slot, Work};
use crate::error::{Error, Result};
use crate::io::remove_if_exists;
use crate::segment::builder::DocSource;
use crate::segment::{self, Segment};
use policy::{SegmentStat, TieredPolicy};

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactionReport {
    /// Segments merged away.
    pub merged: Vec<u64>,
    /// The segment that replaced them (none when nothing was live or nothing to do).
    pub segment: Option<u64>,
    /// Documents in the merged segments, live or not.
    pub docs_in: u64,
    /// Live documents written to the new segment.
    pub docs_out: u64,
    /// Bytes of segment + index files before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub elapsed: Duration,
    /// Vectors per document kept on disk after this compaction.
    pub stored_vectors: u32,
}

/// Caps the rate a merge reads its sources at.
#[derive(Debug)]
struct Throttle {
    start: Instant,
    bytes: AtomicU64,
    bytes_per_s: f64,
}

impl Throttle {
    fn new(mb_per_s: f64) -> Option<Throttle> {
        (mb_per_s > 0.0 && mb_per_s.is_finite()).then(|| Throttle {
            start: Instant::now(),
            bytes: AtomicU64::new(0),
            bytes_per_s: mb_per_s * 1e6,
        })
    }

    /// Counts `n` bytes read and sleeps while the merge is ahead of its rate.
    fn charge(&self, n: u64) {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        let due = Duration::from_secs_f64(total as f64 / self.bytes_per_s);
        if let Some(ahead) = due.checked_sub(self.start.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

/// The live documents of several segments, read straight from their maps. Reading stops once
/// the collection is deleted (NotFound) or closing: that cancels the compaction.
struct MergeSource<'c> {
    coll: &'c Collection,
    segs: Vec<Arc<Segment>>,
    items: Vec<(usize, u32)>,
    throttle: Option<Throttle>,
}

impl DocSource for MergeSource<'_> {
    fn len(&self) -> usize {
        self.items.len()
    }
    fn id(&self, i: usize) -> &str {
        let (s, o) = self.items[i];
        self.segs[s].doc_id(o as usize)
    }
    fn payload(&self, i: usize) -> Option<&str> {
        let (s, o) = self.items[i];
        self.segs[s].payload(o as usize)
    }
    fn rows(&self, i: usize, start: usize, end: usize) -> Result<std::borrow::Cow<'_, [f32]>> {
        self.coll.check_live()?;
        self.coll.check_open()?;
        let (s, o) = self.items[i];
        let rows = self.segs[s].rows(o as usize, start, end)?;
        if let Some(t) = &self.throttle {
            t.charge(rows.len() as u64 * 4);
        }
        Ok(rows)
    }
}

fn slot_bytes(s: &Slot) -> u64 {
    s.entry.file_len + s.entry.index_files.iter().map(|f| f.len).sum::<u64>()
}

/// Bytes reserved by merges in progress, in this process.
static RESERVED: AtomicU64 = AtomicU64::new(0);

/// Disk space a merge has claimed; given back when it ends.
struct Reservation(u64);

impl Drop for Reservation {
    fn drop(&mut self) {
        RESERVED.fetch_sub(self.0, Ordering::AcqRel);
    }
}

impl Collection {
    /// Merges every sealed segment into one, dropping tombstoned documents. Flushes go on
    /// meanwhile; their segments stay beside the merged one.
    pub fn compact(&self) -> Result<CompactionReport> {
        self.compact_keep(None)
    }

    /// Compaction that can also **shrink to budget**: with `keep_r_c = Some(r)` (one of the trained
    /// r_c boundaries) the memtable is sealed first and every segment is rewritten with only the
    /// first r vectors of each document. Budgets with r_c > r are refused afterwards.
    pub fn compact_keep(&self, keep_r_c: Option<u32>) -> Result<CompactionReport> {
        self.check_live()?;
        let _merge = self.merge_lock.lock();
        self.check_live()?;
        let depth = self.stored_depth();
        let Some(r) = keep_r_c else {
            let (sources, _, _) = self.sealed();
            let trivial =
                sources.is_empty() || (sources.len() == 1 && sources[0].dead.count() == 0);
            if trivial {
                return Ok(CompactionReport {
                    stored_vectors: depth,
                    ..Default::default()
                });
            }
            return self.merge(sources, depth, None);
        };
        let bounds: Vec<u32> = self.config().budgets.iter().map(|b| b.r_c).collect();
        if !bounds.contains(&r) {
            return Err(Error::invalid(format!(
                "keep_r_c is {r}: it must be one of the trained r_c boundaries {bounds:?}"
            )));
        }
        if r > depth {
            return Err(Error::FailedPrecondition(format!(
                "keep_r_c is {r} but the collection stores only {depth} vectors per document"
            )));
        }
        // Everything sealed, and no flush until the shrunk segments are in: a flush meanwhile
        // would write the old depth.
        let flush = self.flush_lock.lock();
        self.check_live()?;
        self.flush_held()?;
        let (sources, _, old_depth) = self.sealed();
        if sources.is_empty()
            || (r >= old_depth && sources.len() == 1 && sources[0].dead.count() == 0)
        {
            return Ok(CompactionReport {
                stored_vectors: old_depth,
                ..Default::default()
            });
        }
        self.merge(sources, r, Some(flush))
    }

    fn policy(&self) -> TieredPolicy {
        let o = self.options();
        TieredPolicy {
            fanout: o.compact_fanout,
            max_segments: o.compact_max_segments,
            dead_ratio: o.compact_dead_ratio,
        }
    }

    /// The sealed segments the background policy would merge next, if any.
    fn planned(&self) -> Option<Vec<Slot>> {
        let (segments, _, _) = self.sealed();
        let stats: Vec<SegmentStat> = segments
            .iter()
            .map(|s| SegmentStat {
                id: s.seg.id(),
                docs: s.seg.len() as u64,
                dead: s.dead.count() as u64,
            })
            .collect();
        let ids = self.policy().plan(&stats)?;
        Some(
            segments
                .into_iter()
                .filter(|s| ids.contains(&s.seg.id()))
                .collect(),
        )
    }

    /// Whether the background policy asks for a merge now.
    pub fn needs_compaction(&self) -> bool {
        self.planned().is_some()
    }

    /// One merge the background policy asks for; `None` when the collection is in shape.
    pub fn compact_step(&self) -> Result<Option<CompactionReport>> {
        self.check_live()?;
        self.check_open()?;
        let _merge = self.merge_lock.lock();
        self.check_live()?;
        match self.planned() {
            Some(sources) => Ok(Some(self.merge(sources, self.stored_depth(), None)?)),
            None => Ok(None),
        }
    }

    /// Claims the disk space a merge writing `need` bytes takes, or says why it cannot.
    fn reserve(&self, need: u64, merged: &[u64]) -> Result<Reservation> {
        let dir = Self::segments_dir(self.dir());
        let free = self
            .opts
            .storage
            .available_space(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        // Flushes go on during the merge: keep room for two memtables.
        let keep = (self.opts.memtable_max_bytes as u64)
            .saturating_mul(2)
            .min(1 << 30);
        let before = RESERVED.fetch_add(need, Ordering::AcqRel);
        let reservation = Reservation(need);
        if before + need + keep > free {
            return Err(Error::ResourceExhausted(format!(
                "compaction of segments {merged:?} needs about {need} bytes of disk; {free} are free, \
                 {before} reserved by other merges and {keep} kept for flushes"
            )));
        }
        Ok(reservation)
    }

    /// Merges `sources` (sealed slots of this collection) into one segment of `depth` vectors per
    /// document and commits it. The caller holds `merge_lock`, and `flush` when it already holds
    /// `flush_lock` (shrink).
    fn merge(
        &self,
        sources: Vec<Slot>,
        depth: u32,
        flush: Option<parking_lot::MutexGuard<'_, ()>>,
    ) -> Result<CompactionReport> {
        let started = Instant::now();
        let mut report = CompactionReport {
            stored_vectors: depth,
            ..Default::default()
        };
        let items: Vec<(usize, u32)> = sources
            .iter()
            .enumerate()
            .flat_map(|(s, slot)| {
                (0..slot.seg.len() as u32)
                    .filter(move |&o| !slot.dead.get(o as usize))
                    .map(move |o| (s, o))
            })
            .collect();
        // In id order, so the merged segment finds ids by binary search (live ids are unique
        // across segments; each source is in id order already, so this mostly interleaves).
        let mut items = items;
        items.sort_unstable_by(|&(a, x), &(b, y)| {
            sources[a]
                .seg
                .doc_id(x as usize)
                .cmp(sources[b].seg.doc_id(y as usize))
        });
        let merged_ids: Vec<u64> = sources.iter().map(|s| s.seg.id()).collect();
        let old_depth = self.stored_depth().max(1);
        let need: u64 = sources
            .iter()
            .map(|s| {
                let live = s.seg.len() - s.dead.count();
                slot_bytes(s) * live as u64 / s.seg.len().max(1) as u64 * depth as u64
                    / old_depth as u64
            })
            .sum();
        let _reservation = self.reserve(need, &merged_ids)?;
        let merge = MergeSource {
            coll: self,
            segs: sources.iter().map(|s| s.seg.clone()).collect(),
            items,
            throttle: Throttle::new(self.opts.compact_max_mb_per_s),
        };
        let seg_id = self.take_segment_id();
        self.opts
            .storage
            .hold("compaction", &|| self.check_live().is_err());
        self.check_live()?;
        let sealed = if merge.items.is_empty() {
            None
        } else {
            // On the merge pool, below flushes: a flush never waits for a merge's build.
            Some(crate::background::with_lane(
                crate::background::Lane::Merge,
                || self.seal(seg_id, &merge, depth),
            )?)
        };

        let _flush = match flush {
            Some(g) => g,
            None => self.flush_lock.lock(),
        };
        self.check_live()?;
        let items: Vec<(u64, u32)> = merge
            .items
            .iter()
            .map(|&(s, o)| (merged_ids[s], o))
            .collect();
        let new_slot = self.install_merge(&merged_ids, sealed, &items, depth)?;

        // The manifest no longer lists the sources: unlink them (open searches keep their maps).
        let seg_dir = Self::segments_dir(self.dir());
        for s in &sources {
            let mut files = vec![segment::file_name(s.seg.id())];
            files.extend(s.entry.index_files.iter().map(|f| f.name.clone()));
            for f in files {
                if let Err(e) = remove_if_exists(&seg_dir.join(&f)) {
                    tracing::warn!(file = %f, error = %e, "could not remove a compacted file; it goes at next open");
                }
            }
        }
        report.merged = merged_ids;
        report.docs_in = sources.iter().map(|s| s.seg.len() as u64).sum();
        report.docs_out = merge.items.len() as u64;
        report.bytes_before = sources.iter().map(slot_bytes).sum();
        report.bytes_after = new_slot.as_ref().map_or(0, slot_bytes);
        report.segment = new_slot.map(|s| s.seg.id());
        report.elapsed = started.elapsed();
        self.record_work(
            Work::Compaction,
            report.elapsed,
            report.docs_out,
            report.bytes_after,
        );
        tracing::info!(
            collection = %self.name(),
            merged = ?report.merged,
            segment = ?report.segment,
            docs_out = report.docs_out,
            ms = report.elapsed.as_millis() as u64,
            "compacted"
        );
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
