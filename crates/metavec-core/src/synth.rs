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

/// Generates the data described by `spec`, deterministically from its seed.
pub fn generate(spec: &SynthSpec) -> SynthData {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let dim = spec.dim;
    let mut centres = Vec::with_capacity(spec.topics * dim);
    for _ in 0..spec.topics {
        noisy_unit(&mut rng, None, 1.0, dim, &mut centres);
    }
    let mut facets = Vec::with_capacity(spec.facets * dim);
    for _ in 0..spec.facets {
        noisy_unit(&mut rng, None, 1.0, dim, &mut facets);
    }
    let m_c = spec.doc_vectors();
    let mut docs = Vec::with_capacity(spec.docs * m_c * dim);
    let level_start = |l: usize, levels: &[usize]| if l == 0 { 0 } else { levels[l - 1] };
    for _ in 0..spec.docs {
        let base = docs.len();
        let t = rng.random_range(0..spec.topics);
        let centre = centres[t * dim..(t + 1) * dim].to_vec();
        noisy_unit(&mut rng, Some(&centre), spec.topic_noise, dim, &mut docs);
        for j in 1..m_c {
            let (l, p) = level_of(&spec.doc_levels, j);
            let n = spec.doc_levels[l] - level_start(l, &spec.doc_levels);
            let pl = l - 1;
            let np = spec.doc_levels[pl] - level_start(pl, &spec.doc_levels);
            let parent = level_start(pl, &spec.doc_levels) + parent_pos(p, n, np);
            let mut pv = docs[base + parent * dim..base + (parent + 1) * dim].to_vec();
            if l == 1 && spec.facets > 0 {
                let f = rng.random_range(0..spec.facets);
                let w = spec.facet_weight;
                for (p, c) in pv.iter_mut().zip(&facets[f * dim..(f + 1) * dim]) {
                    *p = (1.0 - w) * *p + w * c;
                }
            }
            noisy_unit(&mut rng, Some(&pv), spec.level_noise, dim, &mut docs);
        }
    }
    let m_q = spec.query_vectors();
    let mut queries = Vec::with_capacity(spec.queries * m_q * dim);
    let mut targets = Vec::with_capacity(spec.queries);
    for _ in 0..spec.queries {
        let target = rng.random_range(0..spec.docs.max(1));
        targets.push(target);
        let d = &docs[target * m_c * dim..(target + 1) * m_c * dim];
        for i in 0..m_q {
            let (l, p) = level_of(&spec.query_levels, i);
            let l_doc = l.min(spec.doc_levels.len() - 1);
            let n_q = spec.query_levels[l] - level_start(l, &spec.query_levels);
            let n_d = spec.doc_levels[l_doc] - level_start(l_doc, &spec.doc_levels);
            let j = level_start(l_doc, &spec.doc_levels) + parent_pos(p, n_q, n_d);
            noisy_unit(
                &mut rng,
                Some(&d[j * dim..(j + 1) * dim]),
                spec.query_noise,
                dim,
                &mut queries,
            );
        }
    }
    SynthData {
        docs,
        queries,
        targets,
        spec: spec.clone(),
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
}
