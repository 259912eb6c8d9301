//! The read side of a collection: a point-in-time [`View`] of every readable source, built in
//! one place under the state read lock, so that no reader assembles the sources itself and
//! forgets a rule (a tombstone, the filter).
//!
//! A view holds the live in-memory documents (memtable, then a frozen run a flush is writing or
//! a failed flush left behind) as shared `Arc`s with the filter already applied, and the sealed
//! segments with their copy-on-write tombstones; the filter on segment documents is applied by
//! [`View::allowed`], the one test every segment reader goes through. After it is built the
//! view needs no lock: segments are immutable and their maps stay valid while the view holds
//! them, even after a compaction unlinks their files.

use std::sync::Arc;

use super::{lost, Bitset, Collection, CollectionInfo, Loc, SegmentInfo};
use crate::document::validate_id;
use crate::error::Result;
use crate::search::Filter;
use crate::segment::Segment;
use crate::Document;

/// A sealed segment as a view sees it: its map and the tombstones at the view's instant.
#[derive(Debug, Clone)]
pub struct SegmentView {
    pub seg: Arc<Segment>,
    pub dead: Arc<Bitset>,
}

/// A point-in-time view of a collection's live documents, optionally restricted by a filter.
#[derive(Debug)]
pub struct View {
    mem: Vec<Arc<Document>>,
    segments: Vec<SegmentView>,
    filter: Option<Filter>,
    depth: u32,
}

impl View {
    /// Live in-memory documents that pass the filter: the memtable's, then the frozen run's.
    pub fn mem(&self) -> &[Arc<Document>] {
        &self.mem
    }

    /// Sealed segments, oldest first.
    pub fn segments(&self) -> &[SegmentView] {
        &self.segments
    }

    /// Segment `si`'s map.
    pub fn seg(&self, si: usize) -> &Segment {
        &self.segments[si].seg
    }

    /// Vectors per document the collection stores (M_c unless shrunk to a budget).
    pub fn depth(&self) -> u32 {
        self.depth
    }

    pub fn filter(&self) -> Option<&Filter> {
        self.filter.as_ref()
    }

    /// Whether ordinal `ord` of segment `si` is live and passes the filter.
    pub fn allowed(&self, si: usize, ord: usize) -> bool {
        let s = &self.segments[si];
        !s.dead.get(ord)
            && self
                .filter
                .as_ref()
                .is_none_or(|f| f.matches_text(s.seg.payload(ord)))
    }

    /// Live documents of segment `si` (before the filter).
    pub fn live(&self, si: usize) -> usize {
        let s = &self.segments[si];
        s.seg.len() - s.dead.count()
    }
}

/// Where [`Collection::lookup`] found an id's live version.
#[derive(Debug, Clone)]
pub(super) enum Found {
    Mem(Arc<Document>),
    Seg(Arc<Segment>, u32),
}

impl Found {
    /// The document's payload text.
    pub(super) fn payload(&self) -> Option<&str> {
        match self {
            Found::Mem(d) => d.payload.as_deref(),
            Found::Seg(seg, ord) => seg.payload(*ord as usize),
        }
    }
}

impl super::State {
    /// The live version at `loc` (`None` if the state no longer holds it: a lost document).
    pub(super) fn found(&self, loc: Loc) -> Option<Found> {
        match loc {
            Loc::Mem(i) => self.mem.get(i).cloned().map(Found::Mem),
            Loc::Frozen(i) => self
                .frozen
                .as_ref()
                .and_then(|r| r.docs.get(i as usize))
                .cloned()
                .map(Found::Mem),
            Loc::Seg(s, ord) => self.segments.get(s).map(|s| Found::Seg(s.seg.clone(), ord)),
        }
    }
}

impl Collection {
    /// The point-in-time view every search reads; `filter` restricts it.
    pub fn view(&self, filter: Option<&Filter>) -> View {
        let st = self.state.read();
        let keep = |d: &Arc<Document>| filter.is_none_or(|f| f.matches_text(d.payload.as_deref()));
        let mut mem: Vec<Arc<Document>> = st
            .mem
            .slots
            .iter()
            .flatten()
            .filter(|d| keep(d))
            .cloned()
            .collect();
        if let Some(run) = &st.frozen {
            mem.extend(
                run.docs
                    .iter()
                    .enumerate()
                    .filter(|(i, d)| !st.frozen_dead.get(*i) && keep(d))
                    .map(|(_, d)| d.clone()),
            );
        }
        View {
            mem,
            segments: st
                .segments
                .iter()
                .map(|s| SegmentView {
                    seg: s.seg.clone(),
                    dead: s.dead.clone(),
                })
                .collect(),
            filter: filter.cloned(),
            depth: st.depth,
        }
    }

    /// Where the live version of each id is (`None` where absent), and the stored depth, at
    /// one instant.
    pub(super) fn lookup(&self, ids: &[String]) -> Result<(Vec<Option<Found>>, u32)> {
        let st = self.state.read();
        let found = ids
            .iter()
            .map(|id| {
                let Some(loc) = st.locate(id) else {
                    return Ok(None);
                };
                let found = st.found(loc);
                found.map(Some).ok_or_else(|| lost(id))
            })
            .collect::<Result<_>>()?;
        Ok((found, st.depth))
    }

    /// Vectors per document the collection stores now.
    pub fn stored_depth(&self) -> u32 {
        self.state.read().depth
    }

    /// The stored documents for `ids` (normalised vectors, payload), `None` where an id is absent.
    /// After a shrink-to-budget compaction only the stored prefix of each document comes back.
    pub fn get(&self, ids: &[String]) -> Result<Vec<Option<Document>>> {
        self.check_live()?;
        for (i, id) in ids.iter().enumerate() {
            validate_id(id, &format!("ids[{i}]"))?;
        }
        let (found, depth) = self.lookup(ids)?;
        let stored = depth as usize * self.config.dim as usize;
        ids.iter()
            .zip(found)
            .map(|(id, f)| {
                let Some(f) = f else { return Ok(None) };
                let mut d = match f {
                    Found::Mem(d) => (*d).clone(),
                    Found::Seg(seg, ord) => Document {
                        id: id.clone(),
                        vectors: seg.vectors(ord as usize)?,
                        payload: seg.payload(ord as usize).map(str::to_string),
                    },
                };
                d.vectors.truncate(stored);
                Ok(Some(d))
            })
            .collect()
    }

    /// Number of live documents.
    pub fn len(&self) -> usize {
        self.state.read().live()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sequence number of the last write in the WAL (0: none yet). A write that changes
    /// nothing (a delete by filter matching no document) writes no record and leaves it.
    pub fn last_seq(&self) -> u64 {
        self.state.read().next_seq.saturating_sub(1)
    }

    pub fn info(&self) -> CollectionInfo {
        let st = self.state.read();
        CollectionInfo {
            name: self.name.clone(),
            config: self.config.clone(),
            live_docs: st.live() as u64,
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
}
