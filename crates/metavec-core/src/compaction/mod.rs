//! Compaction: merge sealed segments into one, dropping deleted and overwritten documents, and
//! swap the result in through the manifest.
//!
//! Runs beside searches and writes. It holds `flush_lock` (so no flush or snapshot commits a
//! manifest meanwhile — writes keep landing in the memtable, up to the 2x backpressure point),
//! reads the sources through their `Arc`s without any state lock, and takes the state write lock
//! only to commit. Tombstones set on a source while the merge ran are carried over to the merged
//! segment at commit. Searches that started before the commit keep their view (the old segments
//! stay mapped until the last such search ends); the old files are unlinked after the commit.
//!
//! Policy (background, after each memtable flush): merge everything when the collection has more
//! than `compact_max_segments` sealed segments, or when more than `compact_dead_ratio` of its
//! sealed documents are tombstoned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::collection::{Collection, Slot};
use crate::error::{Error, Result};
use crate::io::remove_if_exists;
use crate::segment::builder::DocSource;
use crate::segment::{self, Segment};

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

/// The live documents of several segments, read straight from their maps. Reading stops with
/// NotFound once the collection is deleted: that cancels the compaction.
struct MergeSource<'c> {
    coll: &'c Collection,
    segs: Vec<Arc<Segment>>,
    items: Vec<(usize, u32)>,
}

impl DocSource for MergeSource<'_> {
    fn len(&self) -> usize {
        self.items.len()
    }
    fn id(&self, i: usize) -> &str {
        let (s, o) = self.items[i];
        &self.segs[s].ids()[o as usize]
    }
    fn payload(&self, i: usize) -> Option<&str> {
        let (s, o) = self.items[i];
        self.segs[s].payload(o as usize)
    }
    fn rows(&self, i: usize, start: usize, end: usize) -> Result<std::borrow::Cow<'_, [f32]>> {
        self.coll.check_live()?;
        let (s, o) = self.items[i];
        self.segs[s].rows(o as usize, start, end)
    }
}

fn slot_bytes(s: &Slot) -> u64 {
    s.entry.file_len + s.entry.index_files.iter().map(|f| f.len).sum::<u64>()
}

impl Collection {
    /// Merges every sealed segment into one, dropping tombstoned documents.
    pub fn compact(&self) -> Result<CompactionReport> {
        self.compact_keep(None)
    }

    /// Compaction that can also **shrink to budget**: with `keep_r_c = Some(r)` (one of the trained
    /// r_c boundaries) the memtable is sealed first and every segment is rewritten with only the
    /// first r vectors of each document. Budgets with r_c > r are refused afterwards.
    pub fn compact_keep(&self, keep_r_c: Option<u32>) -> Result<CompactionReport> {
        self.check_live()?;
        let _guard = self.flush_lock.lock();
        self.check_live()?;
        let depth = self.stored_depth();
        if let Some(r) = keep_r_c {
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
            self.flush_held()?;
        }
        self.compact_locked(keep_r_c.unwrap_or(depth))
    }

    /// Whether the background policy asks for a compaction now.
    pub fn needs_compaction(&self) -> bool {
        let (segments, _, _) = self.sealed();
        let docs: usize = segments.iter().map(|s| s.seg.len()).sum();
        let dead: usize = segments.iter().map(|s| s.dead.count()).sum();
        segments.len() > self.options().compact_max_segments
            || (docs > 0 && dead as f64 / docs as f64 > self.options().compact_dead_ratio)
    }

    fn compact_locked(&self, depth: u32) -> Result<CompactionReport> {
        let started = Instant::now();
        let (sources, seg_id, old_depth) = self.sealed();
        let mut report = CompactionReport {
            stored_vectors: depth,
            ..Default::default()
        };
        let shrink = depth < old_depth;
        if !shrink && (sources.is_empty() || (sources.len() == 1 && sources[0].dead.count() == 0)) {
            report.elapsed = started.elapsed();
            return Ok(report);
        }
        let items: Vec<(usize, u32)> = sources
            .iter()
            .enumerate()
            .flat_map(|(s, slot)| {
                (0..slot.seg.len() as u32)
                    .filter(move |&o| !slot.dead.get(o as usize))
                    .map(move |o| (s, o))
            })
            .collect();
        let merge = MergeSource {
            coll: self,
            segs: sources.iter().map(|s| s.seg.clone()).collect(),
            items,
        };
        self.opts
            .storage
            .hold("compaction", &|| self.check_live().is_err());
        self.check_live()?;
        let sealed = if merge.items.is_empty() {
            None
        } else {
            Some(self.seal(seg_id, &merge, depth)?)
        };

        let merged_ids: Vec<u64> = sources.iter().map(|s| s.seg.id()).collect();
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
        self.record_work(crate::collection::Work::Compaction, report.elapsed);
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
