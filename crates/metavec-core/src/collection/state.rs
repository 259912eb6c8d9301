//! In-memory state of a collection: memtable, frozen run, segments with tombstones, id map.

use std::collections::HashMap;
use std::sync::Arc;

use crate::manifest::SegmentEntry;
use crate::segment::builder::DocSource;
use crate::segment::Segment;
use crate::Document;

/// A fixed-size bitset of tombstones, shared copy-on-write with searches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    pub fn new(len: usize) -> Self {
        Bitset {
            words: vec![0; len.div_ceil(64)],
        }
    }

    pub fn from_words(words: Vec<u64>) -> Self {
        Bitset { words }
    }

    pub fn words(&self) -> &[u64] {
        &self.words
    }

    pub fn get(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn set(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }

    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// Where the live version of an id is, at one instant of the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    Mem(u32),
    Frozen(u32),
    /// Index into `State::segments`, ordinal in that segment.
    Seg(usize, u32),
}

/// The active memtable: append-only slots; replaced or deleted slots are emptied.
#[derive(Debug, Default)]
pub struct Memtable {
    /// Documents are shared with searches, which score them without holding the state lock.
    pub slots: Vec<Option<Arc<Document>>>,
    pub live: usize,
    pub bytes: usize,
}

impl Memtable {
    fn weight(d: &Document) -> usize {
        d.vectors.len() * 4 + d.id.len() + d.payload.as_ref().map_or(0, String::len) + 64
    }

    pub fn push(&mut self, d: Document) -> u32 {
        self.bytes += Self::weight(&d);
        self.live += 1;
        self.slots.push(Some(Arc::new(d)));
        (self.slots.len() - 1) as u32
    }

    pub fn remove(&mut self, i: u32) {
        if let Some(d) = self.slots[i as usize].take() {
            self.bytes -= Self::weight(&d);
            self.live -= 1;
        }
    }

    pub fn get(&self, i: u32) -> Option<&Arc<Document>> {
        self.slots.get(i as usize).and_then(Option::as_ref)
    }
}

/// A memtable frozen for flushing: immutable, searched until its segment is installed.
#[derive(Debug)]
pub struct Run {
    pub docs: Vec<Arc<Document>>,
    pub dim: usize,
}

impl DocSource for Run {
    fn len(&self) -> usize {
        self.docs.len()
    }
    fn id(&self, i: usize) -> &str {
        &self.docs[i].id
    }
    fn rows(
        &self,
        i: usize,
        start: usize,
        end: usize,
    ) -> crate::Result<std::borrow::Cow<'_, [f32]>> {
        Ok(std::borrow::Cow::Borrowed(
            &self.docs[i].vectors[start * self.dim..end * self.dim],
        ))
    }
    fn payload(&self, i: usize) -> Option<&str> {
        self.docs[i].payload.as_deref()
    }
}

/// A sealed segment as the collection holds it.
#[derive(Debug, Clone)]
pub struct Slot {
    pub seg: Arc<Segment>,
    pub dead: Arc<Bitset>,
    /// The manifest entry without tombstones (those come from `dead` at commit).
    pub entry: SegmentEntry,
}

/// A collection's documents at one instant.
///
/// An id is live in at most one place. Only the memtable keeps an id map on the heap; the frozen
/// run and every segment are in id order and found by binary search, newest first, skipping
/// tombstoned copies (an older segment may still hold a dead copy of an id).
#[derive(Debug, Default)]
pub struct State {
    pub mem: Memtable,
    /// Ids of the memtable's live documents.
    pub mem_ids: HashMap<String, u32>,
    /// The frozen run, in id order.
    pub frozen: Option<Arc<Run>>,
    pub frozen_dead: Arc<Bitset>,
    /// WAL generation that starts after the frozen run's records.
    pub frozen_wal_end: u64,
    pub segments: Vec<Slot>,
    pub next_seq: u64,
    /// Vectors per document kept in sealed segments (M_c unless shrunk).
    pub depth: u32,
    /// `wal_start` of the last committed manifest.
    pub wal_start: u64,
    /// Version of the last committed manifest.
    pub manifest_version: u64,
    /// Id the next flushed segment gets (from the manifest, so a failed flush reuses it).
    pub next_segment_id: u64,
}

impl State {
    /// Where the live version of `id` is, if it has one.
    pub fn locate(&self, id: &str) -> Option<Loc> {
        if let Some(&i) = self.mem_ids.get(id) {
            return Some(Loc::Mem(i));
        }
        if let Some(run) = &self.frozen {
            if let Ok(i) = run.docs.binary_search_by(|d| d.id.as_str().cmp(id)) {
                if !self.frozen_dead.get(i) {
                    return Some(Loc::Frozen(i as u32));
                }
            }
        }
        self.segments
            .iter()
            .enumerate()
            .rev()
            .find_map(|(s, slot)| {
                let ord = slot.seg.find(id)?;
                (!slot.dead.get(ord as usize)).then_some(Loc::Seg(s, ord))
            })
    }

    /// Live documents: memtable, frozen run and segments less their tombstones.
    pub fn live(&self) -> usize {
        self.mem.live
            + self
                .frozen
                .as_ref()
                .map_or(0, |r| r.docs.len() - self.frozen_dead.count())
            + self
                .segments
                .iter()
                .map(|s| s.seg.len() - s.dead.count())
                .sum::<usize>()
    }

    /// Marks the current version of `id` dead; returns whether there was one.
    pub fn kill(&mut self, id: &str) -> bool {
        let Some(loc) = self.locate(id) else {
            return false;
        };
        match loc {
            Loc::Mem(i) => {
                self.mem_ids.remove(id);
                self.mem.remove(i);
            }
            Loc::Frozen(i) => Arc::make_mut(&mut self.frozen_dead).set(i as usize),
            Loc::Seg(s, ord) => Arc::make_mut(&mut self.segments[s].dead).set(ord as usize),
        }
        true
    }

    pub fn apply_upsert(&mut self, docs: Vec<Document>) {
        for d in docs {
            self.kill(&d.id);
            let id = d.id.clone();
            let at = self.mem.push(d);
            self.mem_ids.insert(id, at);
        }
    }

    pub fn apply_delete(&mut self, ids: &[String]) -> usize {
        ids.iter().filter(|id| self.kill(id)).count()
    }

    /// Moves the live memtable documents into a frozen run, in id order.
    pub fn freeze(&mut self, wal_end: u64, dim: usize) {
        let mem = std::mem::take(&mut self.mem);
        self.mem_ids = HashMap::new();
        let mut docs: Vec<Arc<Document>> = mem.slots.into_iter().flatten().collect();
        docs.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        self.frozen_dead = Arc::new(Bitset::new(docs.len()));
        self.frozen = Some(Arc::new(Run { docs, dim }));
        self.frozen_wal_end = wal_end;
    }

    /// Adds a sealed segment (older first) with its tombstones, as the manifest has them: the
    /// manifest's tombstones already mark every copy an id has outside its newest place.
    pub fn add_segment(&mut self, slot: Slot) {
        self.segments.push(slot);
    }
}
