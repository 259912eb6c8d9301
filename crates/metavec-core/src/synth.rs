//! A seeded generator of Matryoshka-like multi-vector data, for tests and benches.
//!
//! Documents fall into topic clusters at vector 0. Each deeper level refines its parent span:
//! a vector of level l is its parent (the level-(l-1) vector covering the same span) plus noise,
//! renormalised, so every prefix ending on a level boundary describes the whole document at a
//! finer grain. A query is derived from a target document: query vector i is a noisy copy of the
//! document vector at the same relative position of the matching level, so larger budgets carry
//! more of the target's detail and rank it better.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthSpec {
    pub docs: usize,
    pub queries: usize,
    pub dim: usize,
    /// Level boundaries of document vectors, e.g. [1, 4, 8, 16]; the last is M_c.
    pub doc_levels: Vec<usize>,
    /// Level boundaries of query vectors, e.g. [1, 2, 4, 8]; the last is M_q.
    pub query_levels: Vec<usize>,
    pub topics: usize,
    /// Spread of vector 0 around its topic centre.
    pub topic_noise: f32,
    /// Spread of a vector around its parent.
    pub level_noise: f32,
    /// Spread of a query vector around its document vector.
    pub query_noise: f32,
    /// Facets: when non-zero, every level-1 vector (the first level below vector 0) is drawn
    /// towards one of this many facet centres, picked per vector independently of the document's
    /// topic, with weight `facet_weight` against its parent. Deeper levels refine level 1 as
    /// usual. Documents of one topic then nearly coincide at vector 0 (with a small
    /// `topic_noise`) and differ in what only their deeper vectors say: the profile where
    /// vector 0 alone cannot rank (see [`SynthSpec::hard`]).
    pub facets: usize,
    pub facet_weight: f32,
    pub seed: u64,
}

impl SynthSpec {
    /// Levels from a trained ladder: docs at its r_c values, queries at its r_q values.
    pub fn new(docs: usize, queries: usize, dim: usize, budgets: &[(u32, u32)], seed: u64) -> Self {
        let mut doc_levels: Vec<usize> = budgets.iter().map(|b| b.1 as usize).collect();
        let mut query_levels: Vec<usize> = budgets.iter().map(|b| b.0 as usize).collect();
        doc_levels.dedup();
        query_levels.dedup();
        SynthSpec {
            docs,
            queries,
            dim,
            doc_levels,
            query_levels,
            topics: (docs / 200).max(4),
            topic_noise: 0.4,
            level_noise: 0.8,
            query_noise: 2.0,
            facets: 0,
            facet_weight: 0.0,
            seed,
        }
    }

    /// The hard profile: topics of ~200 documents (the topic count grows with N) whose vector 0s
    /// nearly coincide, and level-1 vectors drawn to facets shared across topics (~200 vectors
    /// per facet), refined deeper. The documents a deep budget ranks first are mostly not among
    /// vector 0's nearest few hundred, so vector-0 candidates cannot serve a deep budget.
    pub fn hard(
        docs: usize,
        queries: usize,
        dim: usize,
        budgets: &[(u32, u32)],
        seed: u64,
    ) -> Self {
        let mut s = SynthSpec::new(docs, queries, dim, budgets, seed);
        let level1 = s.doc_levels.get(1).map_or(0, |&e| e - 1);
        s.topic_noise = TOPIC_NOISE_HARD;
        s.level_noise = LEVEL_NOISE_HARD;
        s.query_noise = QUERY_NOISE_HARD;
        s.facets = (docs * level1 / 200).max(4);
        s.facet_weight = FACET_WEIGHT_HARD;
        s
    }

    pub fn doc_vectors(&self) -> usize {
        *self.doc_levels.last().unwrap_or(&1)
    }

    pub fn query_vectors(&self) -> usize {
        *self.query_levels.last().unwrap_or(&1)
    }
}

const TOPIC_NOISE_HARD: f32 = 0.1;
const LEVEL_NOISE_HARD: f32 = 0.3;
const QUERY_NOISE_HARD: f32 = 1.5;
const FACET_WEIGHT_HARD: f32 = 0.8;

/// Generated data, row-major: docs `[docs, M_c, D]`, queries `[queries, M_q, D]`.
#[derive(Debug, Clone)]
pub struct SynthData {
    pub docs: Vec<f32>,
    pub queries: Vec<f32>,
    /// The document each query was derived from.
    pub targets: Vec<usize>,
    pub spec: SynthSpec,
}

impl SynthData {
    pub fn doc(&self, i: usize) -> &[f32] {
        let n = self.spec.doc_vectors() * self.spec.dim;
        &self.docs[i * n..(i + 1) * n]
    }

    pub fn query(&self, i: usize) -> &[f32] {
        let n = self.spec.query_vectors() * self.spec.dim;
        &self.queries[i * n..(i + 1) * n]
    }

    pub fn id(i: usize) -> String {
        format!("doc-{i:06}")
    }
}

fn noisy_unit(rng: &mut StdRng, base: Option<&[f32]>, sigma: f32, dim: usize, out: &mut Vec<f32>) {
    let scale = sigma / (dim as f32).sqrt();
    let start = out.len();
    for c in 0..dim {
        let g: f32 = rng.sample(StandardNormal);
        out.push(base.map_or(0.0, |b| b[c]) + g * if base.is_some() { scale } else { 1.0 });
    }
    let v = &mut out[start..];
    let n = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= n);
}

/// Index of the parent of position `p` of a level with `n` vectors in a level with `n_parent`.
fn parent_pos(p: usize, n: usize, n_parent: usize) -> usize {
    p * n_parent / n
}

/// For vector index `j` of a multi-level layout, (level, position within level).
fn level_of(levels: &[usize], j: usize) -> (usize, usize) {
    let mut start = 0;
    for (l, &end) in levels.iter().enumerate() {
        if j < end {
            return (l, j - start);
        }
        start = end;
    }
    (levels.len() - 1, j - start)
}

/// Start of level `l` (its first vector index) in a layout with boundaries `levels`.
fn level_start(l: usize, levels: &[usize]) -> usize {
    if l == 0 {
        0
    } else {
        levels[l - 1]
    }
}

/// Appends one document (`M_c * D` values) drawn from `rng` to `out`: vector 0 around a random
/// topic centre, each deeper vector around its parent (level-1 vectors drawn towards a random
/// facet when the spec has facets).
fn push_doc(
    rng: &mut StdRng,
    spec: &SynthSpec,
    centres: &[f32],
    facets: &[f32],
    out: &mut Vec<f32>,
) {
    let dim = spec.dim;
    let base = out.len();
    let t = rng.random_range(0..spec.topics);
    let centre = centres[t * dim..(t + 1) * dim].to_vec();
    noisy_unit(rng, Some(&centre), spec.topic_noise, dim, out);
    for j in 1..spec.doc_vectors() {
        let (l, p) = level_of(&spec.doc_levels, j);
        let n = spec.doc_levels[l] - level_start(l, &spec.doc_levels);
        let pl = l - 1;
        let np = spec.doc_levels[pl] - level_start(pl, &spec.doc_levels);
        let parent = level_start(pl, &spec.doc_levels) + parent_pos(p, n, np);
        let mut pv = out[base + parent * dim..base + (parent + 1) * dim].to_vec();
        if l == 1 && spec.facets > 0 {
            let f = rng.random_range(0..spec.facets);
            let w = spec.facet_weight;
            for (p, c) in pv.iter_mut().zip(&facets[f * dim..(f + 1) * dim]) {
                *p = (1.0 - w) * *p + w * c;
            }
        }
        noisy_unit(rng, Some(&pv), spec.level_noise, dim, out);
    }
}

/// Appends one query (`M_q * D` values) derived from document `d` to `out`: query vector i is a
/// noisy copy of the document vector at the same relative position of the matching level.
fn push_query(rng: &mut StdRng, spec: &SynthSpec, d: &[f32], out: &mut Vec<f32>) {
    let dim = spec.dim;
    for i in 0..spec.query_vectors() {
        let (l, p) = level_of(&spec.query_levels, i);
        let l_doc = l.min(spec.doc_levels.len() - 1);
        let n_q = spec.query_levels[l] - level_start(l, &spec.query_levels);
        let n_d = spec.doc_levels[l_doc] - level_start(l_doc, &spec.doc_levels);
        let j = level_start(l_doc, &spec.doc_levels) + parent_pos(p, n_q, n_d);
        noisy_unit(
            rng,
            Some(&d[j * dim..(j + 1) * dim]),
            spec.query_noise,
            dim,
            out,
        );
    }
}

/// The topic centres and facet centres of `spec`, drawn from `rng` in that order.
fn centres_and_facets(rng: &mut StdRng, spec: &SynthSpec) -> (Vec<f32>, Vec<f32>) {
    let dim = spec.dim;
    let mut centres = Vec::with_capacity(spec.topics * dim);
    for _ in 0..spec.topics {
        noisy_unit(rng, None, 1.0, dim, &mut centres);
    }
    let mut facets = Vec::with_capacity(spec.facets * dim);
    for _ in 0..spec.facets {
        noisy_unit(rng, None, 1.0, dim, &mut facets);
    }
    (centres, facets)
}

/// Generates the data described by `spec`, deterministically from its seed.
pub fn generate(spec: &SynthSpec) -> SynthData {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let dim = spec.dim;
    let (centres, facets) = centres_and_facets(&mut rng, spec);
    let m_c = spec.doc_vectors();
    let mut docs = Vec::with_capacity(spec.docs * m_c * dim);
    for _ in 0..spec.docs {
        push_doc(&mut rng, spec, &centres, &facets, &mut docs);
    }
    let m_q = spec.query_vectors();
    let mut queries = Vec::with_capacity(spec.queries * m_q * dim);
    let mut targets = Vec::with_capacity(spec.queries);
    for _ in 0..spec.queries {
        let target = rng.random_range(0..spec.docs.max(1));
        targets.push(target);
        let d = &docs[target * m_c * dim..(target + 1) * m_c * dim];
        push_query(&mut rng, spec, d, &mut queries);
    }
    SynthData {
        docs,
        queries,
        targets,
        spec: spec.clone(),
    }
}

/// SplitMix64's finaliser: spreads consecutive integers over the whole u64 range.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Streams of the rngs of [`SynthStream`]: documents, queries, centres (the high bit keeps them
/// apart for any index below 2^62).
const QUERY_STREAM: u64 = 1 << 63;
const CENTRE_STREAM: u64 = (1 << 63) | (1 << 62);

/// The model of [`generate`], one document at a time: document `i` is drawn from its own rng,
/// seeded from `(seed, i)`, and query `j` from its own (its target document first, then its
/// noise), so any document or query can be made alone, in any order, and only the topic and
/// facet centres are held (at N = 1,000,000, D = 128 in the hard profile: ~10 MB). The values
/// are not those of [`generate`] for the same spec (which draws everything from one rng in
/// order); the distribution is the same.
#[derive(Debug, Clone)]
pub struct SynthStream {
    spec: SynthSpec,
    centres: Vec<f32>,
    facets: Vec<f32>,
}

impl SynthStream {
    /// Draws the topic and facet centres of `spec` from its seed.
    pub fn new(spec: SynthSpec) -> Self {
        let mut rng = Self::rng(spec.seed, CENTRE_STREAM);
        let (centres, facets) = centres_and_facets(&mut rng, &spec);
        SynthStream {
            spec,
            centres,
            facets,
        }
    }

    fn rng(seed: u64, index: u64) -> StdRng {
        StdRng::seed_from_u64(seed ^ splitmix64(index))
    }

    pub fn spec(&self) -> &SynthSpec {
        &self.spec
    }

    /// Document `i`: `M_c * D` values, unit rows.
    pub fn doc(&self, i: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.spec.doc_vectors() * self.spec.dim);
        let mut rng = Self::rng(self.spec.seed, i as u64);
        push_doc(&mut rng, &self.spec, &self.centres, &self.facets, &mut out);
        out
    }

    /// The document query `j` is derived from, uniform over `0..docs`.
    pub fn target(&self, j: usize) -> usize {
        Self::rng(self.spec.seed, QUERY_STREAM | j as u64).random_range(0..self.spec.docs.max(1))
    }

    /// Query `j`: `M_q * D` values, unit rows, derived from document [`Self::target`]`(j)`.
    pub fn query(&self, j: usize) -> Vec<f32> {
        let mut rng = Self::rng(self.spec.seed, QUERY_STREAM | j as u64);
        let target = rng.random_range(0..self.spec.docs.max(1));
        let d = self.doc(target);
        let mut out = Vec::with_capacity(self.spec.query_vectors() * self.spec.dim);
        push_query(&mut rng, &self.spec, &d, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_unit_vectors_with_structure() {
        let spec = SynthSpec::new(50, 5, 16, &[(1, 1), (2, 4), (4, 8)], 7);
        let a = generate(&spec);
        let b = generate(&spec);
        assert_eq!(a.docs, b.docs);
        assert_eq!(a.docs.len(), 50 * 8 * 16);
        assert_eq!(a.queries.len(), 5 * 4 * 16);
        for v in a.docs.chunks(16).chain(a.queries.chunks(16)) {
            let n: f32 = v.iter().map(|x| x * x).sum();
            assert!((n - 1.0).abs() < 1e-4);
        }
        // A child is closer to its own parent than to another document's vector 0.
        let d0 = a.doc(0);
        let d1 = a.doc(1);
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert!(dot(&d0[16..32], &d0[..16]) > dot(&d0[16..32], &d1[..16]) - 0.5);
    }

    #[test]
    fn stream_is_deterministic_unit_and_order_free() {
        let budgets = [(1, 1), (2, 4), (4, 8), (8, 16)];
        let spec = SynthSpec::hard(1000, 6, 24, &budgets, 11);
        let a = SynthStream::new(spec.clone());
        let b = SynthStream::new(spec.clone());
        // Made in reverse, and alone, document i is the same.
        let forward: Vec<Vec<f32>> = (0..20).map(|i| a.doc(i)).collect();
        let backward: Vec<Vec<f32>> = (0..20).rev().map(|i| b.doc(i)).collect();
        for (i, d) in forward.iter().enumerate() {
            assert_eq!(d, &backward[19 - i]);
            assert_eq!(d.len(), 16 * 24);
        }
        assert_eq!(a.doc(777), SynthStream::new(spec.clone()).doc(777));
        assert_ne!(a.doc(1), a.doc(2));
        for j in 0..6 {
            assert_eq!(a.query(j), b.query(j));
            assert_eq!(a.query(j).len(), 8 * 24);
            assert!(a.target(j) < 1000);
        }
        // Another seed, other data.
        let mut other = spec.clone();
        other.seed = 12;
        assert_ne!(SynthStream::new(other).doc(0), a.doc(0));
        for v in (0..50)
            .flat_map(|i| a.doc(i))
            .chain((0..6).flat_map(|j| a.query(j)))
            .collect::<Vec<_>>()
            .chunks(24)
        {
            let n: f32 = v.iter().map(|x| x * x).sum();
            assert!((n - 1.0).abs() < 1e-4);
        }
        // A query is closest to its target's vector at the same position, on average: the
        // target's MaxSim beats a random document's.
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        let maxsim = |q: &[f32], d: &[f32]| {
            q.chunks(24)
                .map(|qv| d.chunks(24).map(|dv| dot(qv, dv)).fold(f32::MIN, f32::max))
                .sum::<f32>()
        };
        let wins = (0..6)
            .filter(|&j| {
                let q = a.query(j);
                let t = a.target(j);
                maxsim(&q, &a.doc(t)) > maxsim(&q, &a.doc((t + 500) % 1000))
            })
            .count();
        assert!(
            wins >= 5,
            "{wins} of 6 queries score their target above another doc"
        );
    }
}
