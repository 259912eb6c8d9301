//! The token index: the candidate stage of deep budgets. Vector 0 is a summary; documents that
//! only their deeper vectors tell apart are not among its nearest neighbours, so a budget that
//! uses deeper vectors takes its candidates here instead of from the vector-0 graph.
//!
//! Per segment, the first `index_vectors` vectors of every document ("tokens") are assigned to
//! one of `C` centroids (spherical k-means on a seeded sample of the segment's tokens). The file
//! keeps the centroids, one `u16` code per token, and a posting list per centroid of the tokens
//! assigned to it. A search at budget `(r_q, r_c)`:
//!
//! 1. scores each of its first `nq` query vectors against every centroid (`nq x C` dots, `S`),
//!    held in memory as int8 rows with one scale each (made on the first search: a quarter of
//!    the f32 bytes, which the rerank's reads would otherwise evict between queries); a probe
//!    through vector 0 alone (`rc = 1`) scores only the centroids whose lists hold a vector-0
//!    token (the others could give it nothing), from a copy of that subset;
//! 2. probes, per query vector, the `nprobe` best centroids: the union of the documents with a
//!    token among the first `min(r_c, index_vectors)` in those lists is the candidate pool;
//! 3. ranks the pool by an approximate MaxSim from the codes alone, with no vector read:
//!    `sum_i max_j S[i][code(d, j)]`, and keeps the best `keep` for the exact rerank.
//!
//! The centroid count follows the segment's size (about one per 64 tokens, see
//! [`auto_centroids`]), so lists stay short and codes fine in a segment of any size. Up to
//! [`FLAT_MAX_CENTROIDS`] the k-means is flat; above, it runs in two levels (`~sqrt(C)` coarse
//! centroids, then leaves within each coarse cluster), and a token's code is the nearest leaf of
//! its nearest coarse centroid. Building is then one GEMM per chunk of tokens against the
//! (coarse and leaf) centroids, and scales linearly with the documents. The file stores the
//! leaves only: a search scores all of them.
//!
//! File (`seg-<id>.tok`), little-endian, every section 64-byte aligned:
//!
//! ```text
//! [preamble 32, kind "TOKS"][header 32: dim u32 | index_vectors u32 | docs u32 | centroids u32 | reserved 16]
//! [centroids  f32 C x D]
//! [codes      u16 docs x index_vectors]            token (d, j) at d * index_vectors + j
//! [offsets    u32 C + 1]                           postings of centroid c: offsets[c]..offsets[c+1]
//! [postings   u32 docs x index_vectors]            token numbers d * index_vectors + j, ascending
//! ```
//! The manifest records the file's length and crc32 like every index file.

use std::path::{Path, PathBuf};

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::{align_up, decode_preamble, encode_preamble, FileKind, PREAMBLE_LEN};
use crate::io::{write_file_atomic_with, MappedFile, Storage};
use crate::score::compact::{Columns, QuantQuery};

const HEADER_LEN: usize = 32;
/// Tokens per GEMM chunk when assigning.
const CHUNK: usize = 1024;
/// How many documents ahead the approximate scoring prefetches a document's codes.
const CODES_AHEAD: usize = 8;
/// Most centroids a code can name.
pub const MAX_CENTROIDS: usize = u16::MAX as usize + 1;

/// How a token index is built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenParams {
    /// Vectors per document indexed (the first ones).
    pub index_vectors: usize,
    /// Centroids; 0 = [`auto_centroids`] of the token count.
    pub centroids: usize,
    /// k-means iterations on the sample.
    pub iterations: usize,
    /// Most tokens the k-means trains on (it takes up to [`SAMPLE_PER_CENTROID`] per centroid,
    /// and at least [`FLAT_MAX_CENTROIDS`] times that).
    pub sample: usize,
    /// Bytes of token rows assigned at a time (a build never holds more of them).
    pub chunk_bytes: usize,
    pub seed: u64,
}

impl TokenParams {
    pub fn new(index_vectors: usize) -> Self {
        TokenParams {
            index_vectors,
            centroids: 0,
            iterations: 6,
            sample: SAMPLE_PER_CENTROID * AUTO_MAX_CENTROIDS,
            chunk_bytes: 64 << 20,
            seed: 0x006d_6574_6176_6563,
        }
    }
}

/// Tokens per centroid the automatic centroid count aims at.
pub const TOKENS_PER_CENTROID: usize = 64;
/// Most centroids the automatic count picks. A query scores every centroid of a segment
/// (`nq x C x D` multiply-adds, a GEMM): summed over the segments that is `nq / 64` of the
/// collection's indexed tokens, whatever the segment sizes.
pub const AUTO_MAX_CENTROIDS: usize = 65536;
/// Above this many centroids the build clusters in two levels (see [`TokenIndex::build_with`]).
pub const FLAT_MAX_CENTROIDS: usize = 4096;
/// Sampled tokens k-means trains on per centroid.
pub const SAMPLE_PER_CENTROID: usize = 16;
/// Most bytes of sampled f32 rows a build holds: at wide vectors a full sample would be large
/// (65,536 rows of 2,048 dims are 512 MiB, in a merge that runs beside ingest and queries), so
/// past this the sample shrinks and the centroids with it (at least [`MIN_SAMPLE_PER_CENTROID`]
/// rows each).
pub const SAMPLE_MAX_BYTES: usize = 256 << 20;
/// Fewest sampled rows per centroid when [`SAMPLE_MAX_BYTES`] binds.
pub const MIN_SAMPLE_PER_CENTROID: usize = 8;

/// (centroids, sample rows) for a build that asked for `c` centroids and at most `sample`
/// rows of `dim` values: [`SAMPLE_PER_CENTROID`] rows a centroid (at least enough for
/// [`FLAT_MAX_CENTROIDS`]), within [`SAMPLE_MAX_BYTES`]; fewer centroids when the bytes bind.
pub fn sample_plan(c: usize, sample: usize, dim: usize) -> (usize, usize) {
    let wanted =
        sample.min((SAMPLE_PER_CENTROID * c).max(SAMPLE_PER_CENTROID * FLAT_MAX_CENTROIDS));
    let rows = wanted.min(SAMPLE_MAX_BYTES / (4 * dim.max(1))).max(1);
    let fit = (rows / MIN_SAMPLE_PER_CENTROID).next_power_of_two().max(16);
    (c.min(fit), rows)
}

/// Centroids for `tokens` tokens: about one per [`TOKENS_PER_CENTROID`], a power of two in
/// 16..=[`AUTO_MAX_CENTROIDS`]. Fine centroids make both halves of a probe precise: the lists
/// probed hold the documents that match, and the codes rank them (measured on a 25,000-document
/// segment of the hard profile at 200,000: with 512 centroids the probed union held 0.97 of the
/// (4,8) top 10 but the codes kept only 0.64 of it in their best 2,000; with 4,096 a union of
/// 2,900 documents held 0.95, all of it kept). The count follows the segment's size, not a cap:
/// a 250,000-document segment at 4,096 centroids (~490 tokens a list) ranked its pool as
/// coarsely as the 512-centroid case above, and recall@10 at (2,4) fell to 0.45 at 1,000,000
/// documents (benches/README.md, "One node at 1,000,000 documents").
pub fn auto_centroids(tokens: usize) -> usize {
    (tokens / TOKENS_PER_CENTROID)
        .max(1)
        .next_power_of_two()
        .clamp(16, AUTO_MAX_CENTROIDS)
}

/// What a probe asks for.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// Query vectors used (the first ones).
    pub nq: usize,
    /// Document vectors a candidate may match through (capped at `index_vectors`).
    pub rc: usize,
    /// Centroids probed per query vector (with `until`: at most).
    pub nprobe: usize,
    /// Documents kept, best approximate score first: at least this many, and at least one in
    /// [`POOL_KEEP_DIVISOR`] of the pool (long lists in a large segment rank more coarsely).
    pub keep: usize,
    /// Probe adaptively: lists are read best first in rounds ([`FIRST_ROUND`] lists per query
    /// vector, then twice as many each round), and probing stops once the `until`-th best
    /// approximate score of the pool reaches the best score a document outside it could have
    /// (see [`TokenIndex::search_with`]). `None`: exactly `nprobe` lists per query vector.
    pub until: Option<usize>,
}

/// Lists per query vector an adaptive probe reads first.
pub const FIRST_ROUND: usize = 8;

/// A probe keeps at least `pool / POOL_KEEP_DIVISOR` documents (measured on a 200,000-document
/// segment of the hard profile, where lists average ~390 tokens: keeping a fixed 1,000 of a
/// ~20,000-document pool lost 0.06 recall@10 at (2,4), keeping 2,000-2,500 lost 0.02).
pub const POOL_KEEP_DIVISOR: usize = 8;

/// What a probe did.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbeStats {
    /// Documents in the probed lists (before the filter).
    pub pool: usize,
    /// Lists read per query vector.
    pub lists: usize,
}

#[derive(Debug)]
enum Backing {
    Owned(Vec<u64>),
    Mapped(MappedFile),
}

/// A built or loaded token index (see the module doc).
#[derive(Debug)]
pub struct TokenIndex {
    backing: Backing,
    dim: usize,
    index_vectors: usize,
    docs: usize,
    centroids: usize,
    sections: [(usize, usize); 4],
    /// The centroids as int8 rows (values, scales) and their numbers, made on the first search:
    /// what a query's lists are chosen and its tokens approximated with (see [`query_scores`]).
    quick: std::sync::OnceLock<Quick>,
}

/// What a search scores the centroids with, made on the first search.
#[derive(Debug)]
struct Quick {
    /// Every centroid.
    all: QuickCentroids,
    /// Only the centroids whose lists hold a vector-0 token, and their numbers: a probe that
    /// matches through vector 0 alone (`rc = 1`) reads no other list and no other code, so it
    /// scores these (a sixth to an eighth of them on the hard profile, 516 of 4,096 at 20,000
    /// documents and 4,094 of 32,655 at 200,000) and gets the same lists and scores.
    v0: QuickCentroids,
    v0_ids: Vec<u32>,
}

impl Quick {
    fn new(index: &TokenIndex) -> Quick {
        let (dim, nv) = (index.dim, index.index_vectors);
        let (offsets, postings) = (index.offsets(), index.postings());
        let v0_ids: Vec<u32> = (0..index.centroids)
            .filter(|&c| {
                postings[offsets[c] as usize..offsets[c + 1] as usize]
                    .iter()
                    .any(|&t| (t as usize).is_multiple_of(nv))
            })
            .map(|c| c as u32)
            .collect();
        let rows = index.centroid_rows();
        let v0_rows: Vec<f32> = v0_ids
            .iter()
            .flat_map(|&c| &rows[c as usize * dim..(c as usize + 1) * dim])
            .copied()
            .collect();
        Quick {
            all: QuickCentroids::new(rows, dim),
            v0: QuickCentroids::new(&v0_rows, dim),
            v0_ids,
        }
    }
}

/// A search's copy of the centroids, int8: a quarter of the f32 rows' bytes.
#[derive(Debug)]
enum QuickCentroids {
    /// Laid out for `vpdpbusd`, where the CPU has it, with its kernel.
    Columns(Columns, crate::score::compact::ColumnDotsFn),
    /// Row-major, for the int8 kernel: the rows, their scales, and every centroid's number.
    Rows {
        values: Vec<i8>,
        scales: Vec<f32>,
        all: Vec<u32>,
    },
}

impl QuickCentroids {
    /// The int8 copy of `rows` (`dim` wide), in the layout the CPU's kernel reads.
    fn new(rows: &[f32], dim: usize) -> QuickCentroids {
        let (values, scales) = crate::score::compact::encode_int8(rows, dim);
        match crate::score::compact::compact_kernel().column_dots {
            Some(f) => QuickCentroids::Columns(Columns::new(&values, &scales, dim), f),
            None => QuickCentroids::Rows {
                all: (0..(rows.len() / dim.max(1)) as u32).collect(),
                values,
                scales,
            },
        }
    }
}

/// Byte layout of a file for these sizes: (offset, len) of centroids, codes, offsets, postings;
/// and the total length.
fn layout(dim: usize, nv: usize, docs: usize, c: usize) -> ([(usize, usize); 4], usize) {
    let lens = [c * dim * 4, docs * nv * 2, (c + 1) * 4, docs * nv * 4];
    let mut pos = align_up((PREAMBLE_LEN + HEADER_LEN) as u64) as usize;
    let mut out = [(0, 0); 4];
    for (o, len) in out.iter_mut().zip(lens) {
        *o = (pos, len);
        pos = align_up((pos + len) as u64) as usize;
    }
    (out, pos)
}

/// `out[r][c] = dot(rows[r], centroids[c])` for row-major `rows` (`n x dim`) and `centroids`
/// (`k x dim`): one GEMM, single-threaded (callers parallelise over chunks).
fn scores(rows: &[f32], centroids: &[f32], dim: usize, out: &mut [f32]) {
    let n = rows.len() / dim;
    let k = centroids.len() / dim;
    let a = MatRef::from_row_major_slice(rows, n, dim);
    let b = MatRef::from_row_major_slice(centroids, k, dim);
    let dst = MatMut::from_row_major_slice_mut(out, n, k);
    matmul(dst, Accum::Replace, a, b.transpose(), 1.0f32, Par::Seq);
}

/// [`scores`] of a query's few rows against the int8 copy of the centroids: the rows quantised
/// to int8 ([`QuantQuery::new_i8`]), exact integer dots, scaled. Where the CPU has `vpdpbusd` the
/// centroids are read in their [`Columns`] layout (16 centroids' dots per instruction, no
/// horizontal sums), elsewhere through the graph walk's int8 kernel (`Int8DotsFn`, four rows
/// by four centroids per step): the same integers, the same bits. The f32 rows are megabytes
/// (4,096 x 384 x 4 = 6 MiB) that the rerank's reads evict between queries, and a GEMM also
/// packs them on every call: on 20,000 documents of the hard profile this took 0.8-1.1 ms of a
/// 2.7 ms candidate stage at (4,8); the int8 kernel took ~0.15 ms of a 0.25 ms stage, the columns
/// ~0.05 ms less (stage 0.20 ms, 2026-12-03). The lists
/// to probe and the tokens' approximate scores need ranks, not exact dots: int8 moves a dot by
/// at most 1/254 of the centroid's largest value times the query row's L1 norm, and as much
/// again for the query's rounding.
fn query_scores(rows: &[f32], quick: &QuickCentroids, dim: usize, out: &mut [f32]) {
    let nq = rows.len() / dim;
    let q = QuantQuery::new_i8(rows, dim);
    match quick {
        QuickCentroids::Columns(cols, column_dots) => {
            let mut raw = vec![0i32; nq * cols.padded_rows()];
            column_dots(&cols.query(&q), nq, cols, &mut raw);
            cols.finish(&q, &raw, &mut out[..nq * cols.rows]);
        }
        QuickCentroids::Rows {
            values,
            scales,
            all,
        } => (crate::score::compact::compact_kernel().int8_dots)(
            &q.values,
            &q.scales,
            nq,
            dim,
            values,
            scales,
            all,
            &mut out[..nq * all.len()],
        ),
    }
}

/// Nearest centroid (largest dot) of every row of `rows`.
fn assign(rows: &[f32], centroids: &[f32], dim: usize) -> Vec<u16> {
    rows.par_chunks(CHUNK * dim)
        .flat_map_iter(|chunk| nearest(chunk, centroids, dim))
        .collect()
}

/// Nearest centroid of every row of one chunk (one GEMM).
fn nearest(chunk: &[f32], centroids: &[f32], dim: usize) -> Vec<u16> {
    let k = centroids.len() / dim;
    let n = chunk.len() / dim;
    let mut s = vec![0f32; n * k];
    scores(chunk, centroids, dim, &mut s);
    s.chunks_exact(k)
        .map(|r| {
            let mut best = 0;
            for (c, &v) in r.iter().enumerate() {
                if v > r[best] {
                    best = c;
                }
            }
            best as u16
        })
        .collect()
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Spherical k-means of `k` centroids over `sample` (row-major, `dim` wide), seeded.
fn kmeans(sample: &[f32], dim: usize, k: usize, iterations: usize, seed: u64) -> Vec<f32> {
    let n = sample.len() / dim;
    let mut rng = StdRng::seed_from_u64(seed);
    // Initial centroids: k distinct sample rows (a partial Fisher-Yates shuffle).
    let mut order: Vec<usize> = (0..n).collect();
    for i in 0..k.min(n) {
        let j = rng.random_range(i..n);
        order.swap(i, j);
    }
    let mut centroids: Vec<f32> = order[..k.min(n)]
        .iter()
        .flat_map(|&i| sample[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    for _ in 0..iterations {
        let codes = assign(sample, &centroids, dim);
        let mut sums = vec![0f32; k * dim];
        let mut counts = vec![0usize; k];
        for (i, &c) in codes.iter().enumerate() {
            let c = c as usize;
            counts[c] += 1;
            for (s, x) in sums[c * dim..(c + 1) * dim]
                .iter_mut()
                .zip(&sample[i * dim..(i + 1) * dim])
            {
                *s += x;
            }
        }
        for c in 0..k {
            let dst = &mut sums[c * dim..(c + 1) * dim];
            if counts[c] == 0 {
                // An empty cluster restarts on a random sample row.
                let i = rng.random_range(0..n);
                dst.copy_from_slice(&sample[i * dim..(i + 1) * dim]);
            }
            normalise(dst);
        }
        centroids = sums;
    }
    centroids
}

/// Trained centroids, and (two-level) the coarse centroids that route a token to its leaves.
struct Codebook {
    /// The leaves: what the file stores and codes name.
    centroids: Vec<f32>,
    /// Two-level only: coarse centroids and, per coarse centroid, its leaves' range.
    coarse: Option<(Vec<f32>, Vec<std::ops::Range<usize>>)>,
}

impl Codebook {
    /// `k` centroids from `sample`: flat k-means up to [`FLAT_MAX_CENTROIDS`], else two levels:
    /// `~sqrt(k)` coarse centroids, then each coarse cluster's sample rows split into leaves in
    /// proportion to their number (k-means costs `sample x (sqrt(k) + k / sqrt(k))` dots a round
    /// instead of `sample x k`; the assignment likewise).
    fn train(sample: &[f32], dim: usize, k: usize, iterations: usize, seed: u64) -> Codebook {
        if k <= FLAT_MAX_CENTROIDS {
            return Codebook {
                centroids: kmeans(sample, dim, k, iterations, seed),
                coarse: None,
            };
        }
        let n = sample.len() / dim;
        let k1 = ((k as f64).sqrt().ceil() as usize).next_power_of_two();
        let coarse = kmeans(sample, dim, k1, iterations, seed);
        let k1 = coarse.len() / dim;
        let members = by_code(&assign(sample, &coarse, dim), k1);
        // Leaves per coarse cluster, in proportion to its sample rows (at least one; the total
        // stays within what a code can name).
        let k = k.min(MAX_CENTROIDS - k1);
        let trained: Vec<Vec<f32>> = members
            .par_iter()
            .enumerate()
            .map(|(t, rows)| {
                if rows.is_empty() {
                    return coarse[t * dim..(t + 1) * dim].to_vec();
                }
                let leaves = (k * rows.len() / n).clamp(1, rows.len());
                let sub = gather(sample, rows, dim);
                kmeans(&sub, dim, leaves, iterations, seed ^ (t as u64 + 1))
            })
            .collect();
        let mut centroids = Vec::with_capacity(k * dim);
        let mut ranges = Vec::with_capacity(k1);
        for leaves in trained {
            let start = centroids.len() / dim;
            centroids.extend_from_slice(&leaves);
            ranges.push(start..centroids.len() / dim);
        }
        Codebook {
            centroids,
            coarse: Some((coarse, ranges)),
        }
    }

    /// The code of every row of `rows`: its nearest centroid, or (two-level) the nearest leaf
    /// of its nearest coarse centroid.
    fn assign(&self, rows: &[f32], dim: usize) -> Vec<u16> {
        let Some((coarse, ranges)) = &self.coarse else {
            return assign(rows, &self.centroids, dim);
        };
        let members = by_code(&assign(rows, coarse, dim), ranges.len());
        let per_cluster: Vec<(usize, u16)> = members
            .into_par_iter()
            .enumerate()
            .filter(|(_, m)| !m.is_empty())
            .flat_map_iter(|(t, m)| {
                let r = ranges[t].clone();
                let leaves = &self.centroids[r.start * dim..r.end * dim];
                let local = assign_seq(&gather(rows, &m, dim), leaves, dim);
                m.into_iter()
                    .zip(local)
                    .map(move |(i, l)| (i, (r.start + l as usize) as u16))
            })
            .collect();
        let mut codes = vec![0u16; rows.len() / dim];
        for (i, code) in per_cluster {
            codes[i] = code;
        }
        codes
    }
}

/// The row numbers of each of `k` codes.
fn by_code(codes: &[u16], k: usize) -> Vec<Vec<usize>> {
    let mut members = vec![Vec::new(); k];
    for (i, &c) in codes.iter().enumerate() {
        members[c as usize].push(i);
    }
    members
}

/// Rows `idx` of row-major `rows` (`dim` wide), in that order.
fn gather(rows: &[f32], idx: &[usize], dim: usize) -> Vec<f32> {
    idx.iter()
        .flat_map(|&i| rows[i * dim..(i + 1) * dim].iter().copied())
        .collect()
}

/// [`assign`] on the calling thread, a chunk at a time.
fn assign_seq(rows: &[f32], centroids: &[f32], dim: usize) -> Vec<u16> {
    rows.chunks(CHUNK * dim)
        .flat_map(|chunk| nearest(chunk, centroids, dim))
        .collect()
}

/// Scores query rows (`nq x dim`) against vector 0 of some documents of the segment, row `i`
/// into `out[i * docs.len()..]` (see [`TokenIndex::search_with`]).
pub type V0Dots<'a> = dyn Fn(&[f32], &[u32], &mut [f32]) + 'a;

/// Appends the first `index_vectors` vectors of a range of documents to a buffer.
pub type FetchTokens<'a> = dyn Fn(std::ops::Range<usize>, &mut Vec<f32>) -> crate::Result<()> + 'a;

impl TokenIndex {
    /// Builds the index of `docs` documents whose first `params.index_vectors` vectors are the
    /// rows of `tokens` (row-major, document-major: token (d, j) is row `d * nv + j`).
    pub fn build(tokens: &[f32], dim: usize, docs: usize, params: TokenParams) -> TokenIndex {
        let nv = params.index_vectors.max(1);
        debug_assert_eq!(tokens.len(), docs * nv * dim);
        let fetch = |range: std::ops::Range<usize>, out: &mut Vec<f32>| {
            out.extend_from_slice(&tokens[range.start * nv * dim..range.end * nv * dim]);
            Ok(())
        };
        match Self::build_with(dim, docs, params, &fetch) {
            Ok(t) => t,
            Err(_) => unreachable!("reading a slice does not fail"),
        }
    }

    /// [`TokenIndex::build`] reading the tokens through `fetch(docs, out)`, which appends the
    /// first `index_vectors` vectors of documents `docs` to `out`: the k-means sample and then the
    /// documents a chunk (about 64 MiB) at a time, so a build never holds every token at once.
    pub fn build_with(
        dim: usize,
        docs: usize,
        params: TokenParams,
        fetch: &FetchTokens<'_>,
    ) -> crate::Result<TokenIndex> {
        let nv = params.index_vectors.max(1);
        let n_tokens = docs * nv;
        let c = if params.centroids == 0 {
            auto_centroids(n_tokens)
        } else {
            params.centroids
        }
        .clamp(1, MAX_CENTROIDS)
        .min(n_tokens.max(1));
        let per_chunk = (params.chunk_bytes / (nv * dim * 4).max(1)).max(1);
        let chunks = || {
            (0..docs)
                .step_by(per_chunk)
                .map(move |s| s..(s + per_chunk).min(docs))
        };
        // An explicit centroid count is kept; the automatic one shrinks when the sample does.
        let (fit, sample_max) = sample_plan(c, params.sample, dim);
        let c = if params.centroids == 0 { fit } else { c };
        let book = if n_tokens == 0 {
            Codebook {
                centroids: vec![0f32; dim],
                coarse: None,
            }
        } else {
            // A seeded sample of whole rows; every token when there are few.
            let mut rng = StdRng::seed_from_u64(params.seed ^ 0x5eed);
            let mut sample: Vec<f32> = Vec::with_capacity(n_tokens.min(sample_max) * dim);
            if n_tokens <= sample_max {
                for range in chunks() {
                    fetch(range, &mut sample)?;
                }
            } else {
                let mut doc = Vec::with_capacity(nv * dim);
                for _ in 0..sample_max {
                    let i = rng.random_range(0..n_tokens);
                    doc.clear();
                    fetch(i / nv..i / nv + 1, &mut doc)?;
                    let j = i % nv;
                    sample.extend_from_slice(&doc[j * dim..(j + 1) * dim]);
                }
            }
            Codebook::train(&sample, dim, c, params.iterations, params.seed)
        };
        let mut codes = Vec::with_capacity(n_tokens);
        let mut rows = Vec::new();
        for range in chunks() {
            rows.clear();
            fetch(range, &mut rows)?;
            codes.extend(book.assign(&rows, dim));
        }
        Ok(Self::from_codes(dim, nv, docs, book.centroids, &codes))
    }

    /// The index of documents whose tokens got `codes` (token (d, j) at `d * nv + j`).
    fn from_codes(
        dim: usize,
        nv: usize,
        docs: usize,
        centroids: Vec<f32>,
        codes: &[u16],
    ) -> TokenIndex {
        let c = centroids.len() / dim;
        // Postings by counting sort: token numbers ascending within each list.
        let mut offsets = vec![0u32; c + 1];
        for &code in codes {
            offsets[code as usize + 1] += 1;
        }
        for i in 0..c {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let mut postings = vec![0u32; codes.len()];
        for (t, &code) in codes.iter().enumerate() {
            postings[fill[code as usize] as usize] = t as u32;
            fill[code as usize] += 1;
        }
        let words = encode(dim, nv, docs, &centroids, codes, &offsets, &postings);
        let (sections, _) = layout(dim, nv, docs, c);
        TokenIndex {
            backing: Backing::Owned(words),
            dim,
            index_vectors: nv,
            docs,
            centroids: c,
            sections,
            quick: std::sync::OnceLock::new(),
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Owned(w) => bytemuck::cast_slice(w),
            Backing::Mapped(m) => m.bytes(),
        }
    }

    fn section<T: bytemuck::Pod>(&self, i: usize) -> &[T] {
        let (off, len) = self.sections[i];
        bytemuck::cast_slice(&self.bytes()[off..off + len])
    }

    pub fn centroid_rows(&self) -> &[f32] {
        self.section(0)
    }

    pub fn codes(&self) -> &[u16] {
        self.section(1)
    }

    fn offsets(&self) -> &[u32] {
        self.section(2)
    }

    fn postings(&self) -> &[u32] {
        self.section(3)
    }

    pub fn index_vectors(&self) -> usize {
        self.index_vectors
    }

    pub fn centroids(&self) -> usize {
        self.centroids
    }

    pub fn len(&self) -> usize {
        self.docs
    }

    pub fn is_empty(&self) -> bool {
        self.docs == 0
    }

    /// Bytes of the file (and of the index in memory, mapped or owned).
    pub fn byte_len(&self) -> usize {
        layout(self.dim, self.index_vectors, self.docs, self.centroids).1
    }

    /// File name of segment `basename`'s token index.
    pub fn file_name(basename: &str) -> String {
        format!("{basename}.tok")
    }

    /// Writes the index as `dir/<basename>.tok` (atomically, fsynced); returns the path.
    pub fn save_with(&self, storage: &dyn Storage, dir: &Path, basename: &str) -> Result<PathBuf> {
        let path = dir.join(Self::file_name(basename));
        let len = self.byte_len();
        write_file_atomic_with(storage, &path, &self.bytes()[..len])?;
        Ok(path)
    }

    /// Maps `dir/<basename>.tok` and checks that it describes `docs` documents of `dim`.
    pub fn open(dir: &Path, basename: &str, dim: usize, docs: usize) -> Result<TokenIndex> {
        let path = dir.join(Self::file_name(basename));
        let mut map = MappedFile::open(&path)?;
        map.advise_scattered();
        let (_, header) = decode_preamble(map.bytes(), FileKind::Tokens, &path)?;
        if header.len() < 16 {
            return Err(Error::corruption(&path, 20, "token index header is short"));
        }
        let word = |i: usize| u32::from_le_bytes(header[i * 4..i * 4 + 4].try_into().unwrap());
        let (fdim, nv, fdocs, c) = (
            word(0) as usize,
            word(1) as usize,
            word(2) as usize,
            word(3) as usize,
        );
        if fdim != dim || fdocs != docs || nv == 0 || c == 0 || c > MAX_CENTROIDS {
            return Err(Error::corruption(
                &path,
                PREAMBLE_LEN as u64,
                format!(
                    "token index holds {fdocs} documents of dim {fdim} ({nv} vectors each, {c} \
                     centroids); the segment has {docs} of dim {dim}"
                ),
            ));
        }
        let (sections, total) = layout(dim, nv, docs, c);
        let len = map.bytes().len();
        if len < total {
            return Err(Error::corruption(
                &path,
                len as u64,
                format!("token index is {len} bytes, its header needs {total}"),
            ));
        }
        let index = TokenIndex {
            backing: Backing::Mapped(map),
            dim,
            index_vectors: nv,
            docs,
            centroids: c,
            sections,
            quick: std::sync::OnceLock::new(),
        };
        let (offsets, n_tokens) = (index.offsets(), docs * nv);
        let ordered = offsets.windows(2).all(|w| w[0] <= w[1]);
        if offsets[0] != 0 || offsets[c] as usize != n_tokens || !ordered {
            return Err(Error::corruption(
                &path,
                sections[2].0 as u64,
                "posting offsets are not a partition of the tokens",
            ));
        }
        if index.codes().iter().any(|&x| x as usize >= c)
            || index.postings().iter().any(|&t| t as usize >= n_tokens)
        {
            return Err(Error::corruption(
                &path,
                sections[1].0 as u64,
                "a code or posting is out of range",
            ));
        }
        Ok(index)
    }

    /// Candidates for query rows `q` (normalised, `dim` wide, at least `p.nq` of them): see the
    /// module doc. Only documents with `allow(ord)` are kept. Returns (ordinal, approximate
    /// score), best first.
    pub fn search(
        &self,
        q: &[f32],
        p: Probe,
        allow: &dyn Fn(usize) -> bool,
    ) -> (Vec<(u32, f32)>, ProbeStats) {
        self.search_with(q, p, allow, None)
    }

    /// [`TokenIndex::search`], where `v0` (when given) scores vector 0 of the pool's documents
    /// instead of its code: `v0(q, docs, out)` writes `<q_i, vector 0 of docs[n]>` to
    /// `out[i * docs.len() + n]` for every probing query row `q_i` (the segment's int8 copy of
    /// vector 0). A code ranks as coarsely as its list is
    /// wide; vector 0 carries the most of a Matryoshka document, and where the lists are
    /// wider than its clusters (a small segment of a large collection: fewer centroids than
    /// groups of near-identical vector 0s) the codes tie whole groups of documents.
    ///
    /// An adaptive probe ([`Probe::until`]) stops when no document outside the pool can
    /// outscore the pool's `until`-th best: a document none of whose tokens lies in a list query
    /// vector `i` read has, for that vector, a best code scoring at most `theta_i`, the score of
    /// the best list `i` has not read; so its approximate score is at most `sum_i theta_i`
    /// (threshold-algorithm stopping, exact for the codes; vector 0 scored by `v0` may exceed its
    /// code's score by the int8 copy's residual).
    pub fn search_with(
        &self,
        q: &[f32],
        p: Probe,
        allow: &dyn Fn(usize) -> bool,
        v0: Option<&V0Dots<'_>>,
    ) -> (Vec<(u32, f32)>, ProbeStats) {
        let (dim, nv, c) = (self.dim, self.index_vectors, self.centroids);
        let nq = p.nq.min(q.len() / dim).max(1);
        let rc = p.rc.clamp(1, nv);
        let quick = self.quick.get_or_init(|| Quick::new(self));
        // `s[i * c + x]`: query vector i's score of centroid x (of the centroids a probe at
        // this depth can meet; the others are never read).
        let (scored_ids, s) = if rc == 1 {
            let m = quick.v0_ids.len();
            let mut sub = vec![0f32; nq * m];
            query_scores(&q[..nq * dim], &quick.v0, dim, &mut sub);
            let mut s = vec![f32::NEG_INFINITY; nq * c];
            for (row, sub) in s.chunks_exact_mut(c).zip(sub.chunks_exact(m.max(1))) {
                for (&x, &v) in quick.v0_ids.iter().zip(sub) {
                    row[x as usize] = v;
                }
            }
            (Some(quick.v0_ids.as_slice()), s)
        } else {
            let mut s = vec![0f32; nq * c];
            query_scores(&q[..nq * dim], &quick.all, dim, &mut s);
            (None, s)
        };
        let listed = scored_ids.map_or(c, <[u32]>::len);
        if listed == 0 {
            return (Vec::new(), ProbeStats::default());
        }
        let nprobe = p.nprobe.clamp(1, listed);
        // One u64 per list, best first as integers: the score's bits made to order as its
        // value and inverted, then the list's number (ties: lower first).
        let key = |x: f32, i: u32| {
            let b = x.to_bits();
            let ordered = if b >> 31 == 1 { !b } else { b | 1 << 31 };
            (u64::from(!ordered) << 32) | u64::from(i)
        };
        // Per query vector, its `nprobe` best lists, best first.
        let orders: Vec<Vec<u32>> = s
            .chunks_exact(c)
            .map(|row| {
                let mut keys: Vec<u64> = match scored_ids {
                    Some(ids) => ids.iter().map(|&i| key(row[i as usize], i)).collect(),
                    None => (0..c as u32).map(|i| key(row[i as usize], i)).collect(),
                };
                if nprobe < keys.len() {
                    keys.select_nth_unstable(nprobe - 1);
                    keys.truncate(nprobe);
                }
                if p.until.is_some() {
                    keys.sort_unstable();
                }
                keys.into_iter().map(|k| k as u32).collect()
            })
            .collect();
        let (offsets, postings) = (self.offsets(), self.postings());
        let codes = self.codes();
        let skip = usize::from(v0.is_some());
        let mut seen = vec![0u64; self.docs.div_ceil(64)];
        let mut pool_len = 0;
        let mut scored: Vec<(u32, f32)> = Vec::new();
        let mut fresh: Vec<u32> = Vec::new();
        let mut first: Vec<f32> = Vec::new();
        let mut read = 0;
        loop {
            let upto = match p.until {
                Some(_) if read == 0 => FIRST_ROUND.min(nprobe),
                Some(_) => (2 * read).min(nprobe),
                None => nprobe,
            };
            fresh.clear();
            for order in &orders {
                for &cent in &order[read..upto] {
                    let list = &postings
                        [offsets[cent as usize] as usize..offsets[cent as usize + 1] as usize];
                    for &t in list {
                        let (d, j) = (t as usize / nv, t as usize % nv);
                        let bit = 1u64 << (d % 64);
                        if j < rc && seen[d / 64] & bit == 0 {
                            seen[d / 64] |= bit;
                            pool_len += 1;
                            if allow(d) {
                                fresh.push(d as u32);
                            }
                        }
                    }
                }
            }
            read = upto;
            // Ascending, so the codes are read front to back.
            fresh.sort_unstable();
            let n = fresh.len();
            // Vector 0's term per query vector (`first[i * n + doc]`), when the caller scores it.
            if let Some(v0) = v0 {
                first.clear();
                first.resize(nq * n, 0.0);
                v0(&q[..nq * dim], &fresh, &mut first);
            }
            scored.extend(fresh.iter().enumerate().map(|(at, &d)| {
                // The codes of a document a few ahead (scattered rows of a large array).
                if let Some(&ahead) = fresh.get(at + CODES_AHEAD) {
                    crate::score::simd::prefetch(&codes[ahead as usize * nv..][..rc]);
                }
                let dc = &codes[d as usize * nv + skip..d as usize * nv + rc];
                let approx: f32 = s
                    .chunks_exact(c)
                    .enumerate()
                    .map(|(i, row)| {
                        let start = if skip > 0 {
                            first[i * n + at]
                        } else {
                            f32::NEG_INFINITY
                        };
                        dc.iter().map(|&x| row[x as usize]).fold(start, f32::max)
                    })
                    .sum();
                (d, approx)
            }));
            let Some(until) = p.until else { break };
            if read >= nprobe {
                break;
            }
            if scored.len() >= until.max(1) {
                // The best score a document outside the pool could have.
                let outside: f32 = orders
                    .iter()
                    .zip(s.chunks_exact(c))
                    .map(|(order, row)| row[order[read] as usize])
                    .sum();
                let mut tops: Vec<f32> = scored.iter().map(|x| x.1).collect();
                let nth = until.max(1) - 1;
                let (_, &mut kth, _) = tops.select_nth_unstable_by(nth, |a, b| b.total_cmp(a));
                if kth >= outside {
                    break;
                }
            }
        }
        let stats = ProbeStats {
            pool: pool_len,
            lists: read,
        };
        let keep = p.keep.max(pool_len / POOL_KEEP_DIVISOR);
        let by = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if scored.len() > keep && keep > 0 {
            scored.select_nth_unstable_by(keep - 1, by);
            scored.truncate(keep);
        }
        scored.sort_by(by);
        (scored, stats)
    }
}

/// The file's bytes, in words (so the owned index can be read in place like a mapped one).
fn encode(
    dim: usize,
    nv: usize,
    docs: usize,
    centroids: &[f32],
    codes: &[u16],
    offsets: &[u32],
    postings: &[u32],
) -> Vec<u64> {
    let c = centroids.len() / dim;
    let mut header = Vec::with_capacity(HEADER_LEN);
    for w in [dim, nv, docs, c] {
        header.extend_from_slice(&(w as u32).to_le_bytes());
    }
    header.resize(HEADER_LEN, 0);
    let (sections, total) = layout(dim, nv, docs, c);
    let mut words = vec![0u64; total.div_ceil(8)];
    let out = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..total];
    let preamble = encode_preamble(FileKind::Tokens, 0, &header);
    out[..preamble.len()].copy_from_slice(&preamble);
    let parts: [&[u8]; 4] = [
        bytemuck::cast_slice(centroids),
        bytemuck::cast_slice(codes),
        bytemuck::cast_slice(offsets),
        bytemuck::cast_slice(postings),
    ];
    for ((off, len), part) in sections.iter().zip(parts) {
        out[*off..off + len].copy_from_slice(part);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::RealFs;
    use proptest::prelude::*;
    use rand::Rng;

    fn unit_rows(rng: &mut StdRng, n: usize, dim: usize) -> Vec<f32> {
        let mut out: Vec<f32> = (0..n * dim)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        out.chunks_mut(dim).for_each(normalise);
        out
    }

    /// The centroids a search scores: the int8 copy, decoded.
    fn quick_rows(index: &TokenIndex, dim: usize) -> Vec<f32> {
        use crate::score::compact::{decode_int8, encode_int8};
        let (values, scales) = encode_int8(index.centroid_rows(), dim);
        decode_int8(&values, &scales, dim)
    }

    /// The approximate score the module doc defines, computed the slow way (the query rounded
    /// to int8 as a search rounds it).
    fn reference(index: &TokenIndex, q: &[f32], dim: usize, nq: usize, rc: usize, d: usize) -> f32 {
        let (c, nv) = (index.centroids(), index.index_vectors());
        let cent = &quick_rows(index, dim);
        let qq = crate::score::compact::QuantQuery::new_i8(&q[..nq * dim], dim);
        let q: &Vec<f32> = &(0..nq * dim)
            .map(|x| qq.values[x] as f32 * qq.scales[x / dim])
            .collect();
        (0..nq)
            .map(|i| {
                (0..rc)
                    .map(|j| {
                        let code = index.codes()[d * nv + j] as usize;
                        assert!(code < c);
                        crate::score::dot_scalar(
                            &q[i * dim..(i + 1) * dim],
                            &cent[code * dim..(code + 1) * dim],
                        )
                    })
                    .fold(f32::NEG_INFINITY, f32::max)
            })
            .sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Probing every list reaches every allowed document, and its score is the codes'
        /// MaxSim; the saved file maps back to the same index.
        #[test]
        fn full_probe_scores_every_allowed_document_by_its_codes(
            docs in 1usize..120, nv in 1usize..5, dim in 2usize..12, c in 1usize..40,
            nq in 1usize..4, rc in 1usize..5, seed in 0u64..1000,
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let tokens = unit_rows(&mut rng, docs * nv, dim);
            let mut p = TokenParams::new(nv);
            p.centroids = c;
            let built = TokenIndex::build(&tokens, dim, docs, p);
            let dir = tempfile::tempdir().unwrap();
            built.save_with(&RealFs, dir.path(), "seg").unwrap();
            let index = TokenIndex::open(dir.path(), "seg", dim, docs).unwrap();
            prop_assert_eq!(index.codes(), built.codes());
            prop_assert_eq!(index.centroid_rows(), built.centroid_rows());
            let q = unit_rows(&mut rng, nq, dim);
            let probe = Probe { nq, rc, nprobe: index.centroids(), keep: usize::MAX, until: None };
            let (found, stats) = index.search(&q, probe, &|d| d % 3 != 1);
            prop_assert_eq!(stats.pool, docs);
            let allowed: Vec<usize> = (0..docs).filter(|d| d % 3 != 1).collect();
            prop_assert_eq!(found.len(), allowed.len());
            for w in found.windows(2) {
                prop_assert!(w[0].1 >= w[1].1, "best first");
            }
            for &(d, s) in &found {
                prop_assert!(d % 3 != 1);
                let want = reference(&index, &q, dim, nq, rc.min(nv), d as usize);
                prop_assert!((s - want).abs() <= 1e-4, "doc {}: {} vs {}", d, s, want);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Through vector 0 alone (`rc = 1`) a probe reads the `nprobe` best of the lists that
        /// hold a vector-0 token, scored as every list is (the lists without one are not
        /// scored): its pool is exactly the documents whose vector 0 sits in those lists.
        #[test]
        fn a_vector_0_probe_reads_the_best_lists_holding_vector_0s(
            docs in 1usize..200, nv in 1usize..5, dim in 2usize..10, c in 1usize..48,
            nprobe in 1usize..8, seed in 0u64..1000,
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let tokens = unit_rows(&mut rng, docs * nv, dim);
            let mut p = TokenParams::new(nv);
            p.centroids = c;
            let index = TokenIndex::build(&tokens, dim, docs, p);
            let q = unit_rows(&mut rng, 1, dim);
            let probe = Probe { nq: 1, rc: 1, nprobe, keep: usize::MAX, until: None };
            let (found, _) = index.search(&q, probe, &|_| true);
            // The reference: every vector-0 list scored the slow way, the best `nprobe` taken
            // (ties: the lower number), their documents.
            let cent = &quick_rows(&index, dim);
            let qq = crate::score::compact::QuantQuery::new_i8(&q, dim);
            let qd: Vec<f32> = (0..dim).map(|x| qq.values[x] as f32 * qq.scales[0]).collect();
            let v0_codes: std::collections::BTreeSet<u16> =
                (0..docs).map(|d| index.codes()[d * nv]).collect();
            let mut lists: Vec<(f32, u16)> = v0_codes
                .iter()
                .map(|&x| {
                    let row = &cent[x as usize * dim..(x as usize + 1) * dim];
                    (crate::score::dot_scalar(&qd, row), x)
                })
                .collect();
            lists.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            lists.truncate(nprobe);
            let read: Vec<u16> = lists.iter().map(|l| l.1).collect();
            let mut want: Vec<u32> = (0..docs as u32)
                .filter(|&d| read.contains(&index.codes()[d as usize * nv]))
                .collect();
            let mut got: Vec<u32> = found.iter().map(|f| f.0).collect();
            got.sort_unstable();
            want.sort_unstable();
            // Scores that tie within the int8 kernel's rounding may order lists differently
            // than the slow way: compare where the cut is not a near-tie.
            let near_tie = lists.len() == nprobe && v0_codes.len() > nprobe && {
                let cut = lists[nprobe - 1].0;
                v0_codes.iter().any(|&x| {
                    let row = &cent[x as usize * dim..(x as usize + 1) * dim];
                    !read.contains(&x) && (crate::score::dot_scalar(&qd, row) - cut).abs() < 1e-4
                })
            };
            if !near_tie {
                prop_assert_eq!(got, want);
            }
        }
    }

    /// Reading the tokens a few documents at a time, and sampling them one by one, builds the
    /// same index as reading them all at once.
    #[test]
    fn a_build_in_chunks_equals_a_build_from_one_slice() {
        let (docs, nv, dim) = (300, 3, 8);
        let mut rng = StdRng::seed_from_u64(5);
        let tokens = unit_rows(&mut rng, docs * nv, dim);
        for sample in [100, 10_000] {
            let mut p = TokenParams::new(nv);
            p.centroids = 16;
            p.sample = sample;
            let whole = TokenIndex::build(&tokens, dim, docs, p);
            let calls = std::cell::Cell::new(0);
            let fetch = |r: std::ops::Range<usize>, out: &mut Vec<f32>| {
                assert!(r.len() <= 7, "a chunk is at most 7 documents");
                calls.set(calls.get() + 1);
                out.extend_from_slice(&tokens[r.start * nv * dim..r.end * nv * dim]);
                Ok(())
            };
            p.chunk_bytes = 7 * nv * dim * 4;
            let chunked = TokenIndex::build_with(dim, docs, p, &fetch);
            let chunked = match chunked {
                Ok(t) => t,
                Err(e) => panic!("{e}"),
            };
            assert!(calls.get() >= docs.div_ceil(7));
            assert_eq!(chunked.codes(), whole.codes(), "sample {sample}");
            assert_eq!(chunked.centroid_rows(), whole.centroid_rows());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// An adaptive probe stops early but keeps what reading every list keeps: its best
        /// `until` approximate scores are the whole segment's (the codes' bound is exact).
        #[test]
        fn an_adaptive_probe_keeps_the_segments_best(
            docs in 1usize..300, nv in 1usize..5, dim in 2usize..10, c in 1usize..64,
            nq in 1usize..5, rc in 1usize..5, until in 1usize..40, seed in 0u64..1000,
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let tokens = unit_rows(&mut rng, docs * nv, dim);
            let mut p = TokenParams::new(nv);
            p.centroids = c;
            let index = TokenIndex::build(&tokens, dim, docs, p);
            let q = unit_rows(&mut rng, nq, dim);
            let all = Probe { nq, rc, nprobe: index.centroids(), keep: until, until: None };
            let (full, full_stats) = index.search(&q, all, &|_| true);
            let adaptive = Probe { until: Some(until), ..all };
            let (got, stats) = index.search(&q, adaptive, &|_| true);
            prop_assert!(stats.lists <= full_stats.lists);
            let n = until.min(full.len());
            prop_assert!(got.len() >= n);
            for (a, b) in got[..n].iter().zip(&full[..n]) {
                prop_assert_eq!(a.1.to_bits(), b.1.to_bits(), "adaptive {:?} full {:?}", a, b);
            }
        }
    }

    /// With a vector-0 scorer, a document's approximate score takes vector 0's term from it and
    /// the deeper tokens' from their codes.
    #[test]
    fn a_vector_0_scorer_replaces_the_code_of_vector_0() {
        let (docs, nv, dim, nq, rc) = (200, 3, 8, 2, 3);
        let mut rng = StdRng::seed_from_u64(12);
        let tokens = unit_rows(&mut rng, docs * nv, dim);
        let mut p = TokenParams::new(nv);
        p.centroids = 16;
        let index = TokenIndex::build(&tokens, dim, docs, p);
        let q = unit_rows(&mut rng, nq, dim);
        let exact0 = |row: &[f32], d: u32| {
            let t = d as usize * nv * dim;
            crate::score::dot_scalar(row, &tokens[t..t + dim])
        };
        // Every query row at once, row i's dots at out[i * ds.len()..].
        let v0 = |rows: &[f32], ds: &[u32], out: &mut [f32]| {
            assert_eq!(out.len(), rows.len() / dim * ds.len());
            for (row, o) in rows.chunks_exact(dim).zip(out.chunks_exact_mut(ds.len())) {
                for (o, &d) in o.iter_mut().zip(ds) {
                    *o = exact0(row, d);
                }
            }
        };
        let probe = Probe {
            nq,
            rc,
            nprobe: index.centroids(),
            keep: usize::MAX,
            until: None,
        };
        let (found, _) = index.search_with(&q, probe, &|_| true, Some(&v0));
        assert_eq!(found.len(), docs);
        let cent = &quick_rows(&index, dim);
        // The codes meet the query rounded to int8, as a search rounds it.
        let qq = QuantQuery::new_i8(&q, dim);
        let qr: Vec<f32> = (0..nq * dim)
            .map(|x| qq.values[x] as f32 * qq.scales[x / dim])
            .collect();
        for &(d, got) in &found {
            let want: f32 = (0..nq)
                .map(|i| {
                    let row = &q[i * dim..(i + 1) * dim];
                    let rounded = &qr[i * dim..(i + 1) * dim];
                    (1..rc)
                        .map(|j| {
                            let code = index.codes()[d as usize * nv + j] as usize;
                            crate::score::dot_scalar(rounded, &cent[code * dim..(code + 1) * dim])
                        })
                        .fold(exact0(row, d), f32::max)
                })
                .sum();
            assert!((got - want).abs() <= 1e-4, "doc {d}: {got} vs {want}");
        }
    }

    #[test]
    fn the_sample_stays_within_its_bytes_and_the_centroids_follow_it() {
        // Narrow rows: the full sample, the centroids as asked.
        assert_eq!(sample_plan(32768, 1 << 20, 64), (32768, 16 * 32768));
        assert_eq!(
            sample_plan(256, 1 << 20, 128),
            (256, 16 * FLAT_MAX_CENTROIDS)
        );
        // 2,048 dims: 256 MiB hold 32,768 rows, enough for 4,096 centroids at 8 rows each.
        assert_eq!(sample_plan(8192, 1 << 20, 2048), (4096, 32768));
        assert_eq!(sample_plan(1024, 1 << 20, 2048), (1024, 32768));
        // The widest rows a collection takes: 4,096 rows, 512 centroids.
        assert_eq!(sample_plan(65536, 1 << 20, 16384), (512, 4096));
        for (c, dim) in [(65536, 16384), (8192, 2048), (4096, 64)] {
            let (_, rows) = sample_plan(c, 1 << 20, dim);
            assert!(rows * dim * 4 <= SAMPLE_MAX_BYTES);
        }
    }

    /// Past [`FLAT_MAX_CENTROIDS`] the codebook is trained in two levels: about the centroids
    /// asked for, every code names one, and a token's leaf is nearly as close as the nearest
    /// of all leaves (the coarse step may route a token on a cluster border one cluster off).
    #[test]
    fn a_two_level_codebook_assigns_tokens_nearly_as_well_as_a_flat_one() {
        let (docs, nv, dim) = (6000, 4, 8);
        let mut rng = StdRng::seed_from_u64(9);
        let tokens = unit_rows(&mut rng, docs * nv, dim);
        let mut p = TokenParams::new(nv);
        p.centroids = 2 * FLAT_MAX_CENTROIDS;
        p.iterations = 3;
        let index = TokenIndex::build(&tokens, dim, docs, p);
        let c = index.centroids();
        assert!(
            c >= p.centroids / 2 && c <= p.centroids + 128,
            "{c} centroids"
        );
        let cent = index.centroid_rows();
        let (mut got, mut best) = (0f64, 0f64);
        for (t, row) in tokens.chunks_exact(dim).enumerate() {
            let code = index.codes()[t] as usize;
            assert!(code < c);
            let dot = |k: usize| crate::score::dot_scalar(row, &cent[k * dim..(k + 1) * dim]);
            got += dot(code) as f64;
            best += (0..c).map(dot).fold(f32::NEG_INFINITY, f32::max) as f64;
        }
        assert!(got >= 0.97 * best, "assigned {got:.1} vs nearest {best:.1}");
        // The postings are the codes' partition.
        let (offsets, postings) = (index.offsets(), index.postings());
        for k in 0..c {
            for &t in &postings[offsets[k] as usize..offsets[k + 1] as usize] {
                assert_eq!(index.codes()[t as usize] as usize, k);
            }
        }
    }

    #[test]
    fn keep_cuts_to_the_best_and_at_least_an_eighth_of_the_pool() {
        let mut rng = StdRng::seed_from_u64(3);
        let (docs, nv, dim) = (400, 4, 8);
        let index = TokenIndex::build(
            &unit_rows(&mut rng, docs * nv, dim),
            dim,
            docs,
            TokenParams::new(nv),
        );
        let q = unit_rows(&mut rng, 2, dim);
        let all = Probe {
            nq: 2,
            rc: 4,
            nprobe: index.centroids(),
            keep: usize::MAX,
            until: None,
        };
        let (every, _) = index.search(&q, all, &|_| true);
        let (best, _) = index.search(&q, Probe { keep: 60, ..all }, &|_| true);
        assert_eq!(best.len(), 60, "400 / 8 = 50 < 60");
        assert_eq!(&best[..], &every[..60]);
        let (eighth, _) = index.search(&q, Probe { keep: 10, ..all }, &|_| true);
        assert_eq!(eighth.len(), 50);
    }

    #[test]
    fn damaged_files_are_refused_naming_the_file() {
        let mut rng = StdRng::seed_from_u64(4);
        let (docs, nv, dim) = (50, 2, 4);
        let index = TokenIndex::build(
            &unit_rows(&mut rng, docs * nv, dim),
            dim,
            docs,
            TokenParams::new(nv),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = index.save_with(&RealFs, dir.path(), "seg").unwrap();
        let good = std::fs::read(&path).unwrap();
        // Wrong shape for the segment.
        assert!(TokenIndex::open(dir.path(), "seg", dim, docs + 1).is_err());
        assert!(TokenIndex::open(dir.path(), "seg", dim + 1, docs).is_err());
        // Truncated.
        std::fs::write(&path, &good[..good.len() - 8]).unwrap();
        let e = TokenIndex::open(dir.path(), "seg", dim, docs)
            .unwrap_err()
            .to_string();
        assert!(e.contains("seg.tok"), "{e}");
        // A code out of range.
        let mut bad = good.clone();
        let (codes_at, _) = layout(dim, nv, docs, index.centroids()).0[1];
        bad[codes_at..codes_at + 2].copy_from_slice(&u16::MAX.to_le_bytes());
        std::fs::write(&path, &bad).unwrap();
        assert!(TokenIndex::open(dir.path(), "seg", dim, docs).is_err());
        // A header bit flip fails the preamble's crc.
        let mut bad = good.clone();
        bad[40] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(TokenIndex::open(dir.path(), "seg", dim, docs).is_err());
        std::fs::write(&path, &good).unwrap();
        assert!(TokenIndex::open(dir.path(), "seg", dim, docs).is_ok());
    }
}
