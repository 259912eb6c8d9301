//! Collection configuration: dimensions, trained budgets, HNSW parameters, storage dtype.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest vector width accepted.
pub const MAX_DIM: u32 = 16_384;
/// Largest number of vectors per document or query.
pub const MAX_VECTORS: u32 = 1_024;
/// Longest external id, in bytes of UTF-8.
pub const MAX_ID_BYTES: usize = 256;
/// Largest `k` a search may ask for.
pub const MAX_K: u32 = 10_000;
/// Longest collection name.
pub const MAX_NAME_LEN: usize = 64;

/// The MetaEmbed ladder of trained budgets (r_q, r_c).
pub const METAEMBED_LADDER: [(u32, u32); 5] = [(1, 1), (2, 4), (4, 8), (8, 16), (16, 64)];

/// A query-time budget: the first `r_q` query vectors against the first `r_c` document vectors.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Budget {
    pub r_q: u32,
    pub r_c: u32,
}

impl Budget {
    pub const fn new(r_q: u32, r_c: u32) -> Self {
        Budget { r_q, r_c }
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}, {})", self.r_q, self.r_c)
    }
}

/// How vectors are stored in sealed segments. Vectors arrive and sit in the WAL and memtable as
/// f32; a flush encodes them. Vector 0 (the HNSW's and the (1,1) budget's vector) always stays
/// f32 in a group of its own; the deeper groups use the collection's dtype:
/// - `bf16`: the top 16 bits of the f32, rounded to nearest even (half the bytes);
/// - `f16`: IEEE half, rounded to nearest even (half the bytes, more mantissa, unit vectors only);
/// - `int8`: symmetric per vector, `value = q * scale` with `scale = max|x| / 127` (a quarter of
///   the bytes plus 4 per vector).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    F32,
    #[default]
    Bf16,
    F16,
    Int8,
}

impl Dtype {
    pub fn code(self) -> u8 {
        match self {
            Dtype::F32 => 0,
            Dtype::Bf16 => 1,
            Dtype::F16 => 2,
            Dtype::Int8 => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<Dtype> {
        match code {
            0 => Some(Dtype::F32),
            1 => Some(Dtype::Bf16),
            2 => Some(Dtype::F16),
            3 => Some(Dtype::Int8),
            _ => None,
        }
    }

    /// Bytes of one stored value (int8 also stores a 4-byte scale per vector, see
    /// [`Dtype::row_bytes`]).
    pub fn bytes_per_value(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::Bf16 | Dtype::F16 => 2,
            Dtype::Int8 => 1,
        }
    }

    /// Bytes one stored vector of `dim` values takes.
    pub fn row_bytes(self, dim: usize) -> usize {
        match self {
            Dtype::Int8 => dim + 4,
            d => dim * d.bytes_per_value(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
            Dtype::Int8 => "int8",
        }
    }

    /// The dtype of the layout group whose first vector is `start` (vector 0 stays f32).
    pub fn of_group(self, start: u32) -> Dtype {
        if start == 0 {
            Dtype::F32
        } else {
            self
        }
    }

    pub fn parse(s: &str) -> Result<Dtype> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Dtype::F32),
            "bf16" | "bfloat16" => Ok(Dtype::Bf16),
            "f16" | "float16" | "half" => Ok(Dtype::F16),
            "int8" | "i8" => Ok(Dtype::Int8),
            other => Err(Error::invalid(format!(
                "dtype {other:?} is not supported (supported: f32, bf16, f16, int8)"
            ))),
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// HNSW build parameters for the vector-0 graph of each segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswConfig {
    pub m: u32,
    pub ef_construction: u32,
}

impl Default for HnswConfig {
    fn default() -> Self {
        HnswConfig {
            m: 16,
            ef_construction: 200,
        }
    }
}

/// Where a search takes its candidates from when its budget uses more than vector 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CandidateIndex {
    /// The token index over the first `index_vectors` vectors of every document (built with
    /// each segment; see `index::tokens`): deep budgets get their own ranking's candidates.
    #[default]
    Tokens,
    /// Only the vector-0 HNSW: cheaper to build, but a deep budget reranks vector 0's
    /// neighbours and misses documents that only deeper vectors tell apart.
    Vector0,
}

impl CandidateIndex {
    pub fn name(self) -> &'static str {
        match self {
            CandidateIndex::Tokens => "tokens",
            CandidateIndex::Vector0 => "vector0",
        }
    }

    pub fn parse(s: &str) -> Result<CandidateIndex> {
        match s.to_ascii_lowercase().as_str() {
            "tokens" | "token" => Ok(CandidateIndex::Tokens),
            "vector0" | "vector-0" | "v0" | "hnsw" => Ok(CandidateIndex::Vector0),
            other => Err(Error::invalid(format!(
                "candidate index {other:?} is not supported (supported: tokens, vector0)"
            ))),
        }
    }
}

impl std::fmt::Display for CandidateIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Vectors per document the token index covers by default (capped at the stored depth).
pub const DEFAULT_INDEX_VECTORS: u32 = 8;
/// Most centroids a token index may have (codes are 16-bit).
pub const MAX_TOKEN_CENTROIDS: u32 = 65_536;

/// The candidate index of a collection's segments, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CandidateConfig {
    pub index: CandidateIndex,
    /// Vectors per document the token index covers, the first ones (0 = default:
    /// [`DEFAULT_INDEX_VECTORS`] capped at the stored depth).
    pub index_vectors: u32,
    /// Centroids of each segment's token index (0 = about one per 400 tokens, at most 4096).
    pub centroids: u32,
}

impl Default for CandidateConfig {
    fn default() -> Self {
        CandidateConfig {
            index: CandidateIndex::Tokens,
            index_vectors: 0,
            centroids: 0,
        }
    }
}

/// Everything a collection fixes at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionConfig {
    /// Width D of every vector.
    pub dim: u32,
    /// M_c: vectors per document, Matryoshka-ordered (vector 0 the coarsest).
    pub doc_vectors: u32,
    /// M_q: the most vectors a query may carry.
    pub query_vectors: u32,
    /// Trained budgets, nested and increasing.
    pub budgets: Vec<Budget>,
    pub hnsw: HnswConfig,
    pub dtype: Dtype,
    /// Collections created before the token index read as its defaults: their segments get
    /// one when a compaction rewrites them.
    #[serde(default)]
    pub candidates: CandidateConfig,
}

impl CollectionConfig {
    /// A config with the MetaEmbed ladder cut to the counts, default HNSW and the default dtype
    /// (bf16: see [`Dtype`]).
    pub fn new(dim: u32, doc_vectors: u32, query_vectors: u32) -> Self {
        CollectionConfig {
            dim,
            doc_vectors,
            query_vectors,
            budgets: default_budgets(doc_vectors, query_vectors),
            hnsw: HnswConfig::default(),
            dtype: Dtype::default(),
            candidates: CandidateConfig::default(),
        }
    }

    /// This config with vectors 1.. stored as `dtype`.
    pub fn with_dtype(mut self, dtype: Dtype) -> Self {
        self.dtype = dtype;
        self
    }

    /// Vectors per document a segment's token index covers (0: none is built): the
    /// configured count (or the default), capped at `doc_vectors`; none when that is below 2
    /// (vector 0 alone is the HNSW's) or the collection asked for vector-0 candidates only.
    pub fn token_vectors(&self) -> u32 {
        if self.candidates.index != CandidateIndex::Tokens {
            return 0;
        }
        let want = match self.candidates.index_vectors {
            0 => DEFAULT_INDEX_VECTORS,
            n => n,
        };
        let n = want.min(self.doc_vectors);
        if n < 2 {
            0
        } else {
            n
        }
    }

    /// Checks every field; the message names the field and the value.
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 || self.dim > MAX_DIM {
            return Err(Error::invalid(format!(
                "dim is {}, must be in 1..={MAX_DIM}",
                self.dim
            )));
        }
        if self.doc_vectors == 0 || self.doc_vectors > MAX_VECTORS {
            return Err(Error::invalid(format!(
                "doc_vectors is {}, must be in 1..={MAX_VECTORS}",
                self.doc_vectors
            )));
        }
        if self.query_vectors == 0 || self.query_vectors > MAX_VECTORS {
            return Err(Error::invalid(format!(
                "query_vectors is {}, must be in 1..={MAX_VECTORS}",
                self.query_vectors
            )));
        }
        if self.budgets.is_empty() {
            return Err(Error::invalid(
                "budgets is empty: at least one trained budget is needed",
            ));
        }
        let mut prev: Option<Budget> = None;
        for (i, b) in self.budgets.iter().enumerate() {
            if b.r_q == 0 || b.r_q > self.query_vectors {
                return Err(Error::invalid(format!(
                    "budgets[{i}].r_q is {}, must be in 1..={} (query_vectors)",
                    b.r_q, self.query_vectors
                )));
            }
            if b.r_c == 0 || b.r_c > self.doc_vectors {
                return Err(Error::invalid(format!(
                    "budgets[{i}].r_c is {}, must be in 1..={} (doc_vectors)",
                    b.r_c, self.doc_vectors
                )));
            }
            if let Some(p) = prev {
                if b.r_c <= p.r_c || b.r_q < p.r_q {
                    return Err(Error::invalid(format!(
                        "budgets[{i}] is {b} after {p}: budgets must be nested and increasing \
                         (r_c strictly, r_q not decreasing)"
                    )));
                }
            }
            prev = Some(*b);
        }
        if self.hnsw.m < 2 || self.hnsw.m > 256 {
            return Err(Error::invalid(format!(
                "hnsw.m is {}, must be in 2..=256",
                self.hnsw.m
            )));
        }
        if self.hnsw.ef_construction == 0 || self.hnsw.ef_construction > 4096 {
            return Err(Error::invalid(format!(
                "hnsw.ef_construction is {}, must be in 1..=4096",
                self.hnsw.ef_construction
            )));
        }
        if self.candidates.index_vectors > self.doc_vectors {
            return Err(Error::invalid(format!(
                "candidate_index.index_vectors is {}, must be in 0..={} (doc_vectors; 0 = default)",
                self.candidates.index_vectors, self.doc_vectors
            )));
        }
        if self.candidates.centroids > MAX_TOKEN_CENTROIDS {
            return Err(Error::invalid(format!(
                "candidate_index.centroids is {}, must be in 0..={MAX_TOKEN_CENTROIDS} (0 = auto)",
                self.candidates.centroids
            )));
        }
        Ok(())
    }

    /// Group boundaries of the prefix-grouped layout: every trained r_c, then M_c.
    /// Group g holds vectors `bounds[g-1]..bounds[g]` (with `bounds[-1] = 0`).
    /// With a compact dtype vector 0 always has a group of its own (it stays f32).
    pub fn group_bounds(&self) -> Vec<u32> {
        let mut bounds: Vec<u32> = self.budgets.iter().map(|b| b.r_c).collect();
        if self.dtype != Dtype::F32 && bounds.first() != Some(&1) {
            bounds.insert(0, 1);
        }
        if bounds.last() != Some(&self.doc_vectors) {
            bounds.push(self.doc_vectors);
        }
        bounds
    }

    /// The layout of segments that keep only the first `depth` vectors of each document
    /// (after a shrink-to-budget compaction): M_c becomes `depth`, budgets above it go.
    pub fn at_depth(&self, depth: u32) -> CollectionConfig {
        let mut c = self.clone();
        c.doc_vectors = depth.min(self.doc_vectors);
        c.budgets.retain(|b| b.r_c <= c.doc_vectors);
        c
    }

    pub fn is_trained(&self, budget: Budget) -> bool {
        self.budgets.contains(&budget)
    }

    /// f32 values per document.
    pub fn doc_floats(&self) -> usize {
        self.doc_vectors as usize * self.dim as usize
    }
}

/// The MetaEmbed ladder cut to the counts: each pair is capped at (M_q, M_c), duplicates dropped.
pub fn default_budgets(doc_vectors: u32, query_vectors: u32) -> Vec<Budget> {
    let mut out: Vec<Budget> = Vec::new();
    for (r_q, r_c) in METAEMBED_LADDER {
        let b = Budget::new(r_q.min(query_vectors.max(1)), r_c.min(doc_vectors.max(1)));
        match out.last() {
            Some(last) if last.r_c >= b.r_c => {}
            _ => out.push(b),
        }
    }
    out
}

/// Collection names become directory names: ASCII letters, digits, `_` and `-`, 1..=64 bytes.
pub fn validate_collection_name(name: &str) -> Result<()> {
    validate_dir_name("collection", name, MAX_NAME_LEN)
}

/// A name that becomes one path component: ASCII letters, digits, `_` and `-`, 1..=`max` bytes,
/// so it can never escape its parent directory.
pub fn validate_dir_name(kind: &str, name: &str, max: usize) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{kind} name {name:?} is invalid: use 1..={max} ASCII letters, digits, '_' or '-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_is_cut_to_counts() {
        let b = default_budgets(64, 16);
        assert_eq!(b.len(), 5);
        let b = default_budgets(16, 8);
        assert_eq!(
            b,
            vec![
                Budget::new(1, 1),
                Budget::new(2, 4),
                Budget::new(4, 8),
                Budget::new(8, 16)
            ]
        );
        let b = default_budgets(32, 16);
        assert_eq!(b.last(), Some(&Budget::new(16, 32)));
        assert_eq!(default_budgets(1, 1), vec![Budget::new(1, 1)]);
    }

    #[test]
    fn bounds_end_at_doc_vectors() {
        let mut c = CollectionConfig::new(8, 20, 8);
        assert_eq!(c.group_bounds(), vec![1, 4, 8, 16, 20]);
        c.budgets = vec![Budget::new(1, 1)];
        assert_eq!(c.group_bounds(), vec![1, 20]);
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = CollectionConfig::new(8, 16, 8);
        c.validate().unwrap();
        c.budgets = vec![Budget::new(2, 4), Budget::new(1, 1)];
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("budgets[1]"), "{e}");
        c = CollectionConfig::new(0, 16, 8);
        assert!(c.validate().unwrap_err().to_string().contains("dim is 0"));
        assert!(validate_collection_name("../etc").is_err());
        assert!(validate_collection_name("docs_v1-a").is_ok());
    }
}
