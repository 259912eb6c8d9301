//! The read side of a segment: header and metadata checked once at open, vector blocks checked
//! on first touch (and all of them by [`Segment::verify`]).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{CollectionConfig, Dtype};
use crate::error::{Error, Result};
use crate::format::{decode_preamble, u32_at, u64_at, FileKind, ALIGN};
use crate::index::tokens::TokenIndex;
use crate::index::VectorIndex;
use crate::io::MappedFile;
use crate::score::Rows;

use super::{ArchivedSegmentMeta, FOOTER_LEN, FOOTER_MAGIC, HEADER_LEN};

/// Where a layout group's vectors are (the per-document parts of its metadata, block crcs and
/// radii, stay in the mapped file).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupLayout {
    /// First vector index (within a document) this group holds.
    pub start: u32,
    /// Vectors per document in this group.
    pub width: u32,
    /// Byte offset of the group in the file.
    pub offset: u64,
    /// Byte length of the group.
    pub len: u64,
    pub docs_per_block: u32,
    /// Checksummed blocks of the group.
    pub blocks: usize,
}

/// An open, memory-mapped sealed segment with its HNSW graph.
///
/// Nothing per document lives on the heap: ids, payloads, block crcs and radii are read in
/// place from the segment's metadata (validated once at open), the graph and token index are
/// mapped files of their own. Ids are found by binary search: segments are written in id
/// order; an older segment that is not gets an ordinal permutation (4 bytes a document) at open.
#[derive(Debug)]
pub struct Segment {
    id: u64,
    map: MappedFile,
    /// Byte range of the archived [`super::SegmentMeta`] in the map.
    meta_range: std::ops::Range<usize>,
    groups: Vec<GroupLayout>,
    n_docs: usize,
    doc_vectors: usize,
    /// Ordinals in id order when the ids are not stored in id order (segments of format 1.1
    /// written before they were); empty when they are.
    by_id: Vec<u32>,
    dim: usize,
    /// Per layout group: how its vectors are stored (vector 0's group is always f32).
    dtypes: Vec<Dtype>,
    /// One bit per block per group: set once the block's crc has been checked.
    verified: Vec<Vec<AtomicU64>>,
    index: VectorIndex,
    /// The token index, for segments written with one (see `index::tokens`).
    tokens: Option<TokenIndex>,
}

impl Segment {
    /// Whether any layout group stores rows as `dtype` (the rerank prepares the query's form for
    /// that dtype's kernel only then).
    pub fn stores(&self, dtype: Dtype) -> bool {
        self.dtypes.contains(&dtype)
    }

    /// Opens segment `id` in `dir` for a collection of `cfg`; its HNSW files must be there too.
    pub fn open(dir: &Path, id: u64, cfg: &CollectionConfig) -> Result<Segment> {
        let path = dir.join(super::file_name(id));
        let mut map = MappedFile::open(&path)?;
        map.advise_scattered();
        let meta_range = check_layout(map.bytes(), &path, id, cfg)?;
        let meta = archived_meta(&map, &meta_range);
        let n_docs = meta.ids.len();
        let groups: Vec<GroupLayout> = meta
            .groups
            .iter()
            .map(|g| GroupLayout {
                start: g.start.to_native(),
                width: g.width.to_native(),
                offset: g.offset.to_native(),
                len: g.len.to_native(),
                docs_per_block: g.docs_per_block.to_native(),
                blocks: g.block_crcs.len(),
            })
            .collect();
        let sorted = meta.ids.windows(2).all(|w| w[0].as_str() < w[1].as_str());
        let by_id = if sorted {
            Vec::new()
        } else {
            let mut by_id: Vec<u32> = (0..n_docs as u32).collect();
            by_id.sort_unstable_by(|&a, &b| {
                meta.ids[a as usize]
                    .as_str()
                    .cmp(meta.ids[b as usize].as_str())
            });
            by_id
        };
        let verified = groups
            .iter()
            .map(|g| {
                (0..g.blocks.div_ceil(64))
                    .map(|_| AtomicU64::new(0))
                    .collect()
            })
            .collect();
        let index = VectorIndex::load(dir, &super::index_basename(id), cfg.dim as usize, n_docs)?;
        let dtypes = groups.iter().map(|g| cfg.dtype.of_group(g.start)).collect();
        let basename = super::index_basename(id);
        let tokens = if dir.join(TokenIndex::file_name(&basename)).exists() {
            Some(TokenIndex::open(dir, &basename, cfg.dim as usize, n_docs)?)
        } else {
            None
        };
        Ok(Segment {
            tokens,
            id,
            map,
            dim: cfg.dim as usize,
            dtypes,
            meta_range,
            groups,
            n_docs,
            doc_vectors: cfg.doc_vectors as usize,
            by_id,
            verified,
            index,
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn path(&self) -> &Path {
        self.map.path()
    }

    pub fn len(&self) -> usize {
        self.n_docs
    }

    pub fn is_empty(&self) -> bool {
        self.n_docs == 0
    }

    /// The segment's metadata, in place in the map.
    fn archived(&self) -> &ArchivedSegmentMeta {
        archived_meta(&self.map, &self.meta_range)
    }

    /// The id of document `ord` (panics when `ord` is out of range, like a slice).
    pub fn doc_id(&self, ord: usize) -> &str {
        self.archived().ids[ord].as_str()
    }

    /// All ids in ordinal order.
    pub fn ids(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.archived().ids.iter().map(|s| s.as_str())
    }

    pub fn payload(&self, ord: usize) -> Option<&str> {
        self.archived()
            .payloads
            .get(ord)
            .and_then(|p| p.as_ref())
            .map(|p| p.as_str())
    }

    /// The ordinal of `id` in this segment, live or not (a segment holds an id at most once).
    pub fn find(&self, id: &str) -> Option<u32> {
        let ids = &self.archived().ids;
        if self.by_id.is_empty() {
            ids.binary_search_by(|s| s.as_str().cmp(id))
                .ok()
                .map(|o| o as u32)
        } else {
            self.by_id
                .binary_search_by(|&o| ids[o as usize].as_str().cmp(id))
                .ok()
                .map(|i| self.by_id[i])
        }
    }

    /// Bytes of heap the segment keeps (the id permutation of an older segment, block flags).
    pub fn heap_bytes(&self) -> usize {
        self.by_id.len() * 4 + self.verified.iter().map(|v| v.len() * 8).sum::<usize>()
    }

    /// The token index, when the segment was written with one.
    pub fn tokens(&self) -> Option<&TokenIndex> {
        self.tokens.as_ref()
    }

    pub fn index(&self) -> &VectorIndex {
        &self.index
    }

    /// The layout groups, in vector order.
    pub fn groups(&self) -> &[GroupLayout] {
        &self.groups
    }

    /// Bytes of the segment file.
    pub fn file_len(&self) -> u64 {
        self.map.bytes().len() as u64
    }

    /// The prefix `0..r_c` of document `ord`, as one run of rows per group it spans, and the bytes
    /// they cover. Blocks are crc-checked the first time any document in them is touched.
    pub fn prefix<'a>(&'a self, ord: usize, r_c: usize, out: &mut Vec<Rows<'a>>) -> Result<u64> {
        out.clear();
        self.range(ord, 0, r_c, out)
    }

    /// Appends to `out` the vectors `from..to` of document `ord` as one run of rows per group
    /// they span, and returns the bytes they cover (what a cascade stage reads beyond its
    /// previous one).
    pub fn range<'a>(
        &'a self,
        ord: usize,
        from: usize,
        to: usize,
        out: &mut Vec<Rows<'a>>,
    ) -> Result<u64> {
        let mut bytes = 0u64;
        for (g, group) in self.groups.iter().enumerate() {
            let (start, end) = (group.start as usize, (group.start + group.width) as usize);
            let (a, b) = (from.max(start), to.min(end));
            if a >= b {
                if start >= to {
                    break;
                }
                continue;
            }
            let rows = self.group_rows(g, ord, a - start, b - start)?;
            bytes += rows.bytes();
            out.push(rows);
        }
        Ok(bytes)
    }

    /// Rows `a..b` (relative to the group's first vector) of document `ord` in group `g`.
    fn group_rows(&self, g: usize, ord: usize, a: usize, b: usize) -> Result<Rows<'_>> {
        let group = &self.groups[g];
        let dtype = self.dtypes[g];
        let row = dtype.row_bytes(self.dim);
        let width = group.width as usize;
        let block = self.block_slice(g, ord)?;
        let per = group.docs_per_block as usize;
        let slot = (ord - (ord / per) * per) * width * row;
        Ok(Rows::of_slot(
            dtype,
            &block[slot..slot + width * row],
            self.dim,
            width,
            a,
            b,
        ))
    }

    /// The largest distance from vector 0 of document `ord` to any of its vectors `from..to`.
    pub fn radius(&self, ord: usize, from: usize, to: usize) -> f32 {
        self.groups
            .iter()
            .zip(self.archived().groups.iter())
            .filter(|(g, _)| (g.start as usize) < to && ((g.start + g.width) as usize) > from)
            .map(|(_, a)| a.radii[ord].to_native())
            .fold(0.0, f32::max)
    }

    /// Vectors `start..end` of document `ord` as f32 (decoded when the group is compact), which
    /// must lie inside one layout group.
    pub fn rows(&self, ord: usize, start: usize, end: usize) -> Result<Cow<'_, [f32]>> {
        let Some(g) = self
            .groups
            .iter()
            .position(|g| g.start as usize <= start && end <= (g.start + g.width) as usize)
        else {
            return Err(Error::invalid(format!(
                "vectors {start}..{end} cross a layout group of segment {}",
                self.id
            )));
        };
        let first = self.groups[g].start as usize;
        Ok(match self.group_rows(g, ord, start - first, end - first)? {
            Rows::F32(v) => Cow::Borrowed(v),
            other => {
                let mut v = Vec::with_capacity((end - start) * self.dim);
                other.decode_into(self.dim, &mut v);
                Cow::Owned(v)
            }
        })
    }

    /// All M_c vectors of document `ord`, as f32 (decoded when stored compact).
    pub fn vectors(&self, ord: usize) -> Result<Vec<f32>> {
        let mut parts = Vec::new();
        self.prefix(ord, self.doc_vectors, &mut parts)?;
        let mut out = Vec::with_capacity(self.doc_vectors * self.dim);
        for p in parts {
            p.decode_into(self.dim, &mut out);
        }
        Ok(out)
    }

    /// Checks every block's crc, whether touched or not.
    pub fn verify(&self) -> Result<()> {
        for (g, group) in self.groups.iter().enumerate() {
            for b in 0..group.blocks {
                self.check_block(g, b)?;
            }
        }
        Ok(())
    }

    /// The bytes of the block holding `ord` in group `g`, checked on first touch.
    fn block_slice(&self, g: usize, ord: usize) -> Result<&[u8]> {
        let group = &self.groups[g];
        let b = ord / group.docs_per_block as usize;
        let bit = 1u64 << (b % 64);
        if self.verified[g][b / 64].load(Ordering::Relaxed) & bit == 0 {
            self.check_block(g, b)?;
        }
        Ok(self.block_bytes(g, b).1)
    }

    fn block_bytes(&self, g: usize, b: usize) -> (u64, &[u8]) {
        let group = &self.groups[g];
        let doc_bytes = group.width as u64 * self.dtypes[g].row_bytes(self.dim) as u64;
        let per = group.docs_per_block as u64;
        let start = group.offset + b as u64 * per * doc_bytes;
        let end = (start + per * doc_bytes).min(group.offset + group.len);
        (start, &self.map.bytes()[start as usize..end as usize])
    }

    fn check_block(&self, g: usize, b: usize) -> Result<()> {
        let group = &self.groups[g];
        let (offset, bytes) = self.block_bytes(g, b);
        if crc32fast::hash(bytes) != self.archived().groups[g].block_crcs[b].to_native() {
            return Err(Error::corruption(
                self.path(),
                offset,
                format!(
                    "vector block {b} of group {g} (vectors {}..{}) fails its checksum",
                    group.start,
                    group.start + group.width
                ),
            ));
        }
        self.verified[g][b / 64].fetch_or(1u64 << (b % 64), Ordering::Relaxed);
        Ok(())
    }
}

/// The archived metadata at `range` of `map`, which `check_layout` validated.
#[allow(unsafe_code)]
fn archived_meta<'m>(
    map: &'m MappedFile,
    range: &std::ops::Range<usize>,
) -> &'m ArchivedSegmentMeta {
    // SAFETY: every `range` passed here came from `check_layout` on this same map, which checked
    // the bytes with `rkyv::access` (bytecheck: bounds, alignment, UTF-8, relative pointers);
    // the map is read-only and never changes while mapped (segments are immutable files,
    // replaced only by rename).
    unsafe { rkyv::access_unchecked::<ArchivedSegmentMeta>(&map.bytes()[range.clone()]) }
}

/// Validates preamble, header, footer and metadata against each other and the collection;
/// returns the byte range of the metadata, validated as an archived `SegmentMeta`.
fn check_layout(
    bytes: &[u8],
    path: &PathBuf,
    id: u64,
    cfg: &CollectionConfig,
) -> Result<std::ops::Range<usize>> {
    let (_, header) = decode_preamble(bytes, FileKind::Segment, path)?;
    if header.len() != HEADER_LEN {
        return Err(Error::corruption(
            path,
            20,
            format!(
                "segment header is {} bytes, expected {HEADER_LEN}",
                header.len()
            ),
        ));
    }
    let dtype = header[0];
    let dim = u32_at(header, 4);
    let doc_vectors = u32_at(header, 8);
    let n_groups = u32_at(header, 12) as usize;
    let n_docs = u64_at(header, 16);
    let seg_id = u64_at(header, 24);
    if Dtype::from_code(dtype) != Some(cfg.dtype)
        || dim != cfg.dim
        || doc_vectors != cfg.doc_vectors
        || seg_id != id
    {
        return Err(Error::corruption(
            path,
            32,
            format!(
                "segment header (id {seg_id}, dtype {dtype}, dim {dim}, doc_vectors {doc_vectors}) does not match \
                 the collection (id {id}, dtype {}, dim {}, doc_vectors {})",
                cfg.dtype.code(),
                cfg.dim,
                cfg.doc_vectors
            ),
        ));
    }
    if bytes.len() < 64 + FOOTER_LEN {
        return Err(Error::corruption(path, 0, "file too short for a footer"));
    }
    let foot_at = bytes.len() - FOOTER_LEN;
    let footer = &bytes[foot_at..];
    if footer[24..32] != FOOTER_MAGIC {
        return Err(Error::corruption(
            path,
            foot_at as u64 + 24,
            "bad footer magic (truncated file?)",
        ));
    }
    let meta_offset = u64_at(footer, 0);
    let meta_len = u64_at(footer, 8);
    let meta_crc = u32_at(footer, 16);
    let meta_end = meta_offset.saturating_add(meta_len);
    if !meta_offset.is_multiple_of(ALIGN as u64) || meta_end > foot_at as u64 {
        return Err(Error::corruption(
            path,
            foot_at as u64,
            "footer points outside the file",
        ));
    }
    let meta_bytes = &bytes[meta_offset as usize..meta_end as usize];
    if crc32fast::hash(meta_bytes) != meta_crc {
        return Err(Error::corruption(
            path,
            meta_offset,
            "segment metadata checksum mismatch",
        ));
    }
    let meta =
        rkyv::access::<ArchivedSegmentMeta, rkyv::rancor::Error>(meta_bytes).map_err(|e| {
            Error::corruption(
                path,
                meta_offset,
                format!("segment metadata does not validate: {e}"),
            )
        })?;
    let mut expect_start = 0u32;
    let structure_ok = meta.segment_id.to_native() == id
        && meta.ids.len() as u64 == n_docs
        && meta.payloads.len() as u64 == n_docs
        && meta.groups.len() == n_groups
        && meta.groups.iter().all(|g| {
            let (start, width) = (g.start.to_native(), g.width.to_native());
            let (offset, len) = (g.offset.to_native(), g.len.to_native());
            let per = g.docs_per_block.to_native();
            let ok = start == expect_start
                && width > 0
                && per > 0
                && offset % ALIGN as u64 == 0
                && width
                    .checked_add(start)
                    .is_some_and(|end| end <= doc_vectors)
                && len
                    == n_docs
                        * width as u64
                        * cfg.dtype.of_group(start).row_bytes(dim as usize) as u64
                && offset.checked_add(len).is_some_and(|e| e <= meta_offset)
                && g.block_crcs.len() as u64 == n_docs.div_ceil(per as u64)
                && g.radii.len() as u64 == n_docs;
            expect_start = start.saturating_add(width);
            ok
        })
        && expect_start == doc_vectors;
    if !structure_ok {
        return Err(Error::corruption(
            path,
            meta_offset,
            "segment metadata is inconsistent with its header",
        ));
    }
    Ok(meta_offset as usize..meta_end as usize)
}
