//! Sealed segments: immutable files of documents in the prefix-grouped layout.
//!
//! ```text
//! [preamble 32][segment header 32]                       offset 0, 64 bytes
//! [group 0: vector 0 of every doc]                       64-byte aligned
//! [group 1: vectors b0..b1 of every doc, doc-major]      64-byte aligned
//! ...
//! [metadata: rkyv SegmentMeta]                           64-byte aligned
//! [footer 32: meta_offset u64 | meta_len u64 | meta_crc u32 | reserved u32 | "MVSEGEND"]
//! ```
//! Group g holds, for every document in ordinal order, its vectors `start_g .. start_g + width_g`
//! contiguously, so the prefix `0..r_c` of one document is one slice per group below r_c.
//! Each group is cut into blocks of `docs_per_block` documents with one crc32 each.

pub mod builder;
pub mod reader;

pub use builder::{build_segment, BuiltSegment};
pub use reader::Segment;

/// Bytes of the segment header that follows the preamble.
pub const HEADER_LEN: usize = 32;
pub const FOOTER_LEN: usize = 32;
pub const FOOTER_MAGIC: [u8; 8] = *b"MVSEGEND";
/// Target size of a checksummed block; a block holds at least one document.
pub const BLOCK_TARGET_BYTES: usize = 256 * 1024;

/// Per-group layout, stored in the metadata.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct GroupMeta {
    /// First vector index (within a document) this group holds.
    pub start: u32,
    /// Vectors per document in this group.
    pub width: u32,
    /// Byte offset of the group in the file (64-byte aligned).
    pub offset: u64,
    /// Byte length: docs * width * dim * bytes_per_value.
    pub len: u64,
    pub docs_per_block: u32,
    pub block_crcs: Vec<u32>,
    /// Per document: the largest distance from its vector 0 to a vector of this group. A query
    /// vector's dot with any vector of the group is at most its dot with vector 0 plus this
    /// (Cauchy-Schwarz), which bounds cascade scores for early termination.
    pub radii: Vec<f32>,
}

/// Everything about a segment that is not vector data.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SegmentMeta {
    pub segment_id: u64,
    pub dim: u32,
    pub doc_vectors: u32,
    pub dtype: u8,
    pub groups: Vec<GroupMeta>,
    pub ids: Vec<String>,
    pub payloads: Vec<Option<String>>,
}

/// File name of segment `id`.
pub fn file_name(id: u64) -> String {
    format!("seg-{id:016x}.mvs")
}

/// Base name of the index files of segment `id` (the `.hnsw` graph, or hnsw_rs's `.hnsw.graph`
/// and `.hnsw.data` in older segments; the `.tok` token index).
pub fn index_basename(id: u64) -> String {
    format!("seg-{id:016x}")
}

pub fn parse_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?;
    let hex = hex
        .strip_suffix(".mvs")
        .or_else(|| hex.strip_suffix(".hnsw.graph"))
        .or_else(|| hex.strip_suffix(".hnsw.data"))
        .or_else(|| hex.strip_suffix(".hnsw"))
        .or_else(|| hex.strip_suffix(".tok"))?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests;
