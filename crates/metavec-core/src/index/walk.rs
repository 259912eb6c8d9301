//! The read side of the vector-0 graph: hnsw_rs builds and persists the graph, and this module
//! searches a frozen copy of it.
//!
//! Why not hnsw_rs's own search: it allocates an `Arc` per candidate, keeps visited points in a
//! `HashMap`, takes a lock per neighbour list, stops its upper-layer descent after one step per
//! layer, and its filtered walk never takes the early exit (it drains the whole candidate heap).
//! On 20,000 x 384 at ef 320 it needed ~3 ms per walk with a filter and ~1.1 ms without.
//! The frozen form is what a search needs and nothing else: vector 0 of every document in one
//! contiguous array (by document ordinal) and each layer's adjacency as flat `u32` lists (CSR).
//! The walk is the textbook HNSW search (Malkov & Yashunin, algorithms 2 and 5) on dot products,
//! with a bitset of visited nodes; a filter only decides what may enter the results, never which
//! nodes are walked through, so tombstones and payload filters do not cut the graph.
//!
//! The walk's copy of vector 0 is int8 with one scale per vector (`D + 4` bytes instead of `4D`):
//! the walk is bound by memory traffic (thousands of vectors per search), and it only chooses
//! candidates, which the rerank then scores exactly from the segment's f32 vector 0. The scores
//! it returns are therefore approximate (within the int8 rounding, ~1/254 of each vector's range).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::{align_up, decode_preamble, encode_preamble, FileKind, PREAMBLE_LEN};
use crate::io::{write_file_atomic_with, MappedFile, Storage};
use crate::score::compact::QuantQuery;

/// Most layers a graph file may describe (hnsw_rs builds at most 16).
const MAX_LAYERS: usize = 16;
/// Header: dim, n, layers, entry, then the edge count of each of the 16 possible layers.
const HEADER_LEN: usize = 4 * 4 + MAX_LAYERS * 4;

/// One layer's adjacency: the neighbours of node `i` are `ids[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, Copy)]
struct Csr<'a> {
    offsets: &'a [u32],
    ids: &'a [u32],
}

impl<'a> Csr<'a> {
    fn of(&self, node: u32) -> &'a [u32] {
        let i = node as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => self.ids.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }
}

#[derive(Debug)]
enum Backing {
    /// Built in this process: the file's bytes, in words so they are aligned like a map.
    Owned(Vec<u64>),
    Mapped(MappedFile),
}

impl Default for Backing {
    fn default() -> Self {
        Backing::Owned(Vec::new())
    }
}

/// A searchable, immutable copy of an HNSW graph over `n` unit vectors of width `dim`, laid out
/// as its file `seg-<id>.hnsw` (kind `HNSW`): after the preamble and header, 64-byte aligned
/// sections of vector 0 of every node as int8 (`dim` per node), each node's f32 scale, then per
/// layer (0 first, holding every node) `n + 1` u32 offsets and the u32 neighbour ids. A loaded
/// graph is that file mapped: searches read it in place, and nothing of it is on the heap.
#[derive(Debug, Default)]
pub(super) struct Frozen {
    backing: Backing,
    dim: usize,
    n: usize,
    entry: u32,
    codes: (usize, usize),
    scales: (usize, usize),
    /// Per layer: the (offset, len) of its offsets and of its ids.
    layers: Vec<[(usize, usize); 2]>,
}

/// (offset, len) of every section for these sizes, and the file length.
#[allow(clippy::type_complexity)]
fn layout(
    dim: usize,
    n: usize,
    edges: &[usize],
) -> (
    (usize, usize),
    (usize, usize),
    Vec<[(usize, usize); 2]>,
    usize,
) {
    let mut pos = align_up((PREAMBLE_LEN + HEADER_LEN) as u64) as usize;
    let mut take = |len: usize| {
        let at = pos;
        pos = align_up((pos + len) as u64) as usize;
        (at, len)
    };
    let codes = take(n * dim);
    let scales = take(n * 4);
    let layers = edges
        .iter()
        .map(|&e| [take((n + 1) * 4), take(e * 4)])
        .collect();
    (codes, scales, layers, pos)
}

/// A (score, node) pair ordered by score, then by node for determinism.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scored(f32, u32);

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

impl Frozen {
    /// `vectors` is `n * dim` values by node; `neighbours[i][l]` lists node `i`'s neighbours in
    /// layer `l` (a node is in layers `0..neighbours[i].len()`). Fails on an id out of range.
    pub(super) fn new(
        dim: usize,
        vectors: Vec<f32>,
        neighbours: &[Vec<Vec<u32>>],
    ) -> std::result::Result<Frozen, String> {
        let n = neighbours.len();
        if vectors.len() != n * dim {
            return Err(format!(
                "{} vector values for {n} nodes of dim {dim}",
                vectors.len()
            ));
        }
        let top = neighbours.iter().map(Vec::len).max().unwrap_or(0);
        if top > MAX_LAYERS {
            return Err(format!(
                "{top} layers; a graph file holds at most {MAX_LAYERS}"
            ));
        }
        let mut csrs: Vec<(Vec<u32>, Vec<u32>)> = Vec::with_capacity(top);
        for l in 0..top {
            let mut offsets = Vec::with_capacity(n + 1);
            let mut ids = Vec::new();
            offsets.push(0u32);
            for nb in neighbours {
                if let Some(list) = nb.get(l) {
                    if let Some(&bad) = list.iter().find(|&&id| id as usize >= n) {
                        return Err(format!("neighbour id {bad} out of range (n = {n})"));
                    }
                    ids.extend_from_slice(list);
                }
                offsets.push(ids.len() as u32);
            }
            csrs.push((offsets, ids));
        }
        // The entry point: the lowest-numbered node of the top layer (deterministic, so a graph
        // and its reloaded copy walk alike).
        let entry = neighbours
            .iter()
            .position(|nb| nb.len() == top)
            .unwrap_or(0) as u32;
        let (codes, scales) = crate::score::compact::encode_int8(&vectors, dim);
        drop(vectors);
        let edges: Vec<usize> = csrs.iter().map(|c| c.1.len()).collect();
        let (codes_at, scales_at, layers, total) = layout(dim, n, &edges);
        let mut header = Vec::with_capacity(HEADER_LEN);
        for w in [dim, n, top, entry as usize] {
            header.extend_from_slice(&(w as u32).to_le_bytes());
        }
        for l in 0..MAX_LAYERS {
            header.extend_from_slice(&(edges.get(l).copied().unwrap_or(0) as u32).to_le_bytes());
        }
        let mut words = vec![0u64; total.div_ceil(8)];
        let out = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..total];
        let preamble = encode_preamble(FileKind::Graph, 0, &header);
        out[..preamble.len()].copy_from_slice(&preamble);
        let mut put = |(at, len): (usize, usize), bytes: &[u8]| {
            out[at..at + len].copy_from_slice(bytes);
        };
        put(codes_at, bytemuck::cast_slice(&codes));
        put(scales_at, bytemuck::cast_slice(&scales));
        for (l, (offsets, ids)) in csrs.iter().enumerate() {
            put(layers[l][0], bytemuck::cast_slice(offsets));
            put(layers[l][1], bytemuck::cast_slice(ids));
        }
        Ok(Frozen {
            backing: Backing::Owned(words),
            dim,
            n,
            entry,
            codes: codes_at,
            scales: scales_at,
            layers,
        })
    }

    /// The file's bytes (owned or mapped).
    pub(super) fn bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Owned(w) => bytemuck::cast_slice(w),
            Backing::Mapped(m) => m.bytes(),
        }
    }

    fn section<T: bytemuck::Pod>(&self, (at, len): (usize, usize)) -> &[T] {
        bytemuck::cast_slice(&self.bytes()[at..at + len])
    }

    fn codes(&self) -> &[i8] {
        self.section(self.codes)
    }

    fn scales(&self) -> &[f32] {
        self.section(self.scales)
    }

    fn layer(&self, l: usize) -> Csr<'_> {
        Csr {
            offsets: self.section(self.layers[l][0]),
            ids: self.section(self.layers[l][1]),
        }
    }

    /// Bytes of the file, and of the graph in memory (owned, or mapped and paged in on use).
    pub(super) fn byte_len(&self) -> usize {
        let edges: Vec<usize> = self.layers.iter().map(|l| l[1].1 / 4).collect();
        layout(self.dim, self.n, &edges).3
    }

    /// File name of segment `basename`'s graph.
    pub(super) fn file_name(basename: &str) -> String {
        format!("{basename}.hnsw")
    }

    /// Writes the graph as `dir/<basename>.hnsw` (atomically, fsynced); returns the path.
    pub(super) fn save_with(
        &self,
        storage: &dyn Storage,
        dir: &Path,
        basename: &str,
    ) -> Result<PathBuf> {
        let path = dir.join(Self::file_name(basename));
        write_file_atomic_with(storage, &path, &self.bytes()[..self.byte_len()])?;
        Ok(path)
    }

    /// Maps `dir/<basename>.hnsw` and checks that it is a graph over `n` nodes of `dim`: every
    /// section inside the file, every offset list ordered and ending at its edge count, every
    /// neighbour id and the entry point below `n`.
    pub(super) fn open(dir: &Path, basename: &str, dim: usize, n: usize) -> Result<Frozen> {
        let path = dir.join(Self::file_name(basename));
        let mut map = MappedFile::open(&path)?;
        map.advise_scattered();
        let (_, header) = decode_preamble(map.bytes(), FileKind::Graph, &path)?;
        let bad = |at: usize, m: String| Error::corruption(&path, at as u64, m);
        if header.len() < HEADER_LEN {
            return Err(bad(20, "graph header is short".into()));
        }
        let word = |i: usize| u32::from_le_bytes(header[i * 4..i * 4 + 4].try_into().unwrap());
        let (fdim, fn_, top, entry) = (
            word(0) as usize,
            word(1) as usize,
            word(2) as usize,
            word(3),
        );
        if fdim != dim
            || fn_ != n
            || top > MAX_LAYERS
            || (n > 0 && (top == 0 || entry as usize >= n))
        {
            return Err(bad(
                PREAMBLE_LEN,
                format!(
                    "graph holds {fn_} nodes of dim {fdim} ({top} layers, entry {entry}); the \
                     segment has {n} of dim {dim}"
                ),
            ));
        }
        let edges: Vec<usize> = (0..top).map(|l| word(4 + l) as usize).collect();
        let (codes, scales, layers, total) = layout(dim, n, &edges);
        let len = map.bytes().len();
        if len < total {
            return Err(bad(
                len,
                format!("graph file is {len} bytes, its header needs {total}"),
            ));
        }
        let g = Frozen {
            backing: Backing::Mapped(map),
            dim,
            n,
            entry,
            codes,
            scales,
            layers,
        };
        for (l, &e) in edges.iter().enumerate() {
            let csr = g.layer(l);
            let ordered = csr.offsets.windows(2).all(|w| w[0] <= w[1]);
            if csr.offsets.first() != Some(&0) || csr.offsets[n] as usize != e || !ordered {
                return Err(bad(
                    g.layers[l][0].0,
                    format!("layer {l}'s neighbour offsets are not an ordered list ending at {e}"),
                ));
            }
            if let Some(&id) = csr.ids.iter().find(|&&id| id as usize >= n) {
                return Err(bad(
                    g.layers[l][1].0,
                    format!("layer {l} names node {id}, past the {n} nodes"),
                ));
            }
        }
        Ok(g)
    }

    fn len(&self) -> usize {
        self.n
    }

    /// How far the walk's score of `node` may be from the f32 dot product, for a unit query
    /// whose L1 norm is `query_l1`: each stored value is within half a step (`scale / 2`) of the
    /// true one, so the dot moves by at most `||q||_1 * scale / 2`; the query, quantised to
    /// i16 with a step of at most `1 / query_quant_max(dim)` (its values are at most 1), moves
    /// it by at most half that step times the stored row's L1 norm (`127 * scale * dim`); the
    /// margin covers f32 rounding of both sums (384 terms: ~1e-5). Used to skip exact rescoring
    /// that cannot change a result.
    pub(super) fn slack(&self, query_l1: f32, node: usize) -> f32 {
        let q_step = 1.0 / crate::score::compact::query_quant_max(self.dim) as f32;
        self.scales().get(node).map_or(f32::INFINITY, |s| {
            (query_l1 * s * 0.5 + 0.5 * q_step * 127.0 * s * self.dim as f32) * 1.001 + 1e-4
        })
    }

    /// The (approximate) dot product of quantised query `q` with node `node`'s vector: the
    /// walk's kernel on one node (the beam scores its fresh neighbours through the same entry,
    /// several at a time).
    fn dot(&self, q: &QuantQuery, node: u32, int8_dots: crate::score::compact::Int8DotsFn) -> f32 {
        let mut out = [0.0f32];
        int8_dots(
            &q.values,
            &q.scales,
            1,
            self.dim,
            self.codes(),
            self.scales(),
            &[node],
            &mut out,
        );
        out[0]
    }

    /// The walk's dot products of each row of `q` with `nodes`, into `out` (row `i` at
    /// `out[i * nodes.len()..]`; zeros where the graph is empty or `q` is not whole rows).
    pub(super) fn dots(&self, q: &[f32], nodes: &[u32], out: &mut [f32]) {
        let nq = q.len() / self.dim.max(1);
        if self.dim == 0
            || q.len() != nq * self.dim
            || out.len() != nq * nodes.len()
            || nodes.iter().any(|&n| n as usize >= self.len())
        {
            out.iter_mut().for_each(|x| *x = 0.0);
            return;
        }
        let int8_dots = crate::score::compact::compact_kernel().int8_dots;
        let qq = QuantQuery::new(q, self.dim);
        int8_dots(
            &qq.values,
            &qq.scales,
            nq,
            self.dim,
            self.codes(),
            self.scales(),
            nodes,
            out,
        );
    }

    /// The `k` best allowed nodes by dot product with `q` (unit vectors), best first, walking
    /// layer 0 with a beam of `ef` (raised to `k`).
    pub(super) fn search(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        allow: Option<&(dyn Fn(usize) -> bool + Sync)>,
    ) -> Vec<(usize, f32)> {
        let n = self.len();
        if n == 0 || k == 0 || q.len() != self.dim || self.layers.is_empty() {
            return Vec::new();
        }
        let int8_dots = crate::score::compact::compact_kernel().int8_dots;
        let q = &QuantQuery::new(q, self.dim);
        let ef = ef.max(k);
        let ok = |node: u32| allow.is_none_or(|f| f(node as usize));

        // Greedy descent through the upper layers to the node nearest to q.
        let mut cur = Scored(self.dot(q, self.entry, int8_dots), self.entry);
        for layer in (1..self.layers.len()).rev().map(|l| self.layer(l)) {
            loop {
                let mut moved = false;
                for &nb in layer.of(cur.1) {
                    let s = Scored(self.dot(q, nb, int8_dots), nb);
                    if s > cur {
                        cur = s;
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }

        // Beam search in layer 0: `frontier` is a max-heap of nodes to expand, `best` a min-heap
        // of the ef best allowed nodes found.
        let mut visited = vec![0u64; n.div_ceil(64)];
        let mut seen = |node: u32| {
            let (w, b) = (node as usize / 64, 1u64 << (node % 64));
            let was = visited[w] & b != 0;
            visited[w] |= b;
            was
        };
        seen(cur.1);
        let mut frontier = BinaryHeap::with_capacity(ef * 2);
        let mut best: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef + 1);
        frontier.push(cur);
        if ok(cur.1) {
            best.push(Reverse(cur));
        }
        let layer0 = self.layer(0);
        let (codes, scales) = (self.codes(), self.scales());
        let mut fresh = Vec::with_capacity(64);
        let mut scores = Vec::with_capacity(64);
        while let Some(c) = frontier.pop() {
            if best.len() >= ef && best.peek().is_some_and(|w| c < w.0) {
                break;
            }
            // Unvisited neighbours first, their vectors requested from memory all at once, so
            // the loads overlap instead of each dot product waiting for its own.
            fresh.clear();
            fresh.extend(layer0.of(c.1).iter().copied().filter(|&nb| !seen(nb)));
            for &nb in &fresh {
                let i = nb as usize * self.dim;
                crate::score::simd::prefetch(&codes[i..i + self.dim]);
            }
            // The neighbour list of the node likely expanded next, while these are scored.
            if let Some(next) = frontier.peek() {
                crate::score::simd::prefetch(layer0.of(next.1));
            }
            // Scored several at a time: independent dot products overlap in the FMA pipeline.
            scores.resize(fresh.len(), 0.0);
            int8_dots(
                &q.values,
                &q.scales,
                1,
                self.dim,
                codes,
                scales,
                &fresh,
                &mut scores,
            );
            for (&nb, &score) in fresh.iter().zip(&scores) {
                let s = Scored(score, nb);
                let full = best.len() >= ef;
                if full && best.peek().is_some_and(|w| s < w.0) {
                    continue;
                }
                frontier.push(s);
                if ok(nb) {
                    best.push(Reverse(s));
                    if best.len() > ef {
                        best.pop();
                    }
                }
            }
        }
        let mut out: Vec<Scored> = best.into_iter().map(|r| r.0).collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        out.truncate(k);
        out.into_iter().map(|s| (s.1 as usize, s.0)).collect()
    }
}
