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

/// One layer's adjacency: the neighbours of node `i` are `ids[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Default)]
struct Csr {
    offsets: Vec<u32>,
    ids: Vec<u32>,
}

impl Csr {
    fn of(&self, node: u32) -> &[u32] {
        let i = node as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.ids[a as usize..b as usize],
            _ => &[],
        }
    }
}

/// A searchable, immutable copy of an HNSW graph over `n` unit vectors of width `dim`.
#[derive(Debug, Default)]
pub(super) struct Frozen {
    dim: usize,
    /// Vector 0 of every node as int8, `dim` values per node, and each node's scale.
    codes: Vec<i8>,
    scales: Vec<f32>,
    /// `layers[0]` is the bottom layer, holding every node.
    layers: Vec<Csr>,
    entry: u32,
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
    ) -> Result<Frozen, String> {
        let n = neighbours.len();
        if vectors.len() != n * dim {
            return Err(format!(
                "{} vector values for {n} nodes of dim {dim}",
                vectors.len()
            ));
        }
        let top = neighbours.iter().map(Vec::len).max().unwrap_or(0);
        let mut layers = Vec::with_capacity(top);
        for l in 0..top {
            let mut csr = Csr {
                offsets: Vec::with_capacity(n + 1),
                ids: Vec::new(),
            };
            csr.offsets.push(0);
            for nb in neighbours {
                if let Some(list) = nb.get(l) {
                    if let Some(&bad) = list.iter().find(|&&id| id as usize >= n) {
                        return Err(format!("neighbour id {bad} out of range (n = {n})"));
                    }
                    csr.ids.extend_from_slice(list);
                }
                csr.offsets.push(csr.ids.len() as u32);
            }
            layers.push(csr);
        }
        // The entry point: the lowest-numbered node of the top layer (deterministic, so a graph
        // and its reloaded copy walk alike).
        let entry = neighbours
            .iter()
            .position(|nb| nb.len() == top)
            .unwrap_or(0) as u32;
        let (codes, scales) = crate::score::compact::encode_int8(&vectors, dim);
        Ok(Frozen {
            dim,
            codes,
            scales,
            layers,
            entry,
        })
    }

    fn len(&self) -> usize {
        self.scales.len()
    }

    /// How far the walk's score of `node` may be from the f32 dot product, for a query whose
    /// L1 norm is `query_l1`: each stored value is within half a step (`scale / 2`) of the true
    /// one, so the dot moves by at most `||q||_1 * scale / 2`; the margin covers f32 rounding
    /// of both sums (384 terms: ~1e-5). Used to skip exact rescoring that cannot change a
    /// result.
    pub(super) fn slack(&self, query_l1: f32, node: usize) -> f32 {
        self.scales
            .get(node)
            .map_or(f32::INFINITY, |s| query_l1 * s * 0.5 * 1.001 + 1e-4)
    }

    /// The (approximate) dot product of `q` with node `node`'s vector: the walk's kernel on one
    /// node (the beam scores its fresh neighbours through the same entry, several at a time).
    fn dot(&self, q: &[f32], node: u32, int8_dots: crate::score::compact::Int8DotsFn) -> f32 {
        let mut out = [0.0f32];
        int8_dots(q, self.dim, &self.codes, &self.scales, &[node], &mut out);
        out[0]
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
        let ef = ef.max(k);
        let ok = |node: u32| allow.is_none_or(|f| f(node as usize));

        // Greedy descent through the upper layers to the node nearest to q.
        let mut cur = Scored(self.dot(q, self.entry, int8_dots), self.entry);
        for layer in self.layers[1..].iter().rev() {
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
        let layer0 = &self.layers[0];
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
                crate::score::simd::prefetch(&self.codes[i..i + self.dim]);
            }
            // The neighbour list of the node likely expanded next, while these are scored.
            if let Some(next) = frontier.peek() {
                crate::score::simd::prefetch(layer0.of(next.1));
            }
            // Scored several at a time: independent dot products overlap in the FMA pipeline.
            scores.resize(fresh.len(), 0.0);
            int8_dots(q, self.dim, &self.codes, &self.scales, &fresh, &mut scores);
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
