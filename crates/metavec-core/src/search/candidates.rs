//! The candidate stage: every in-memory document of the view, and per sealed segment the
//! documents its index proposes (all live documents in exact mode):
//! - a budget with `r_c > 1` on a segment with a token index takes the best documents by
//!   approximate MaxSim among those the probed posting lists reach (`index::tokens`): the
//!   documents that budget ranks first, also those whose vector 0 is unremarkable;
//! - `(1, 1)`, segments written without a token index, and requests that ask for it take the
//!   documents an HNSW walk over vector 0 reaches; at `(1, 1)` a segment with a token index adds
//!   the best of its vector-0 posting lists (a cluster of near-identical vector 0s, which the
//!   graph walk only partly reaches, sits in one or two lists).

use rayon::prelude::*;
use smallvec::smallvec;

use super::request::{
    SearchRequest, DEFAULT_PROBES, DEFAULT_TOKEN_CANDIDATES, TOKEN_QUERY_VECTORS, V0_PROBES,
    V0_WALK_CANDIDATES,
};
use super::rerank::{Cand, DocRef};
use crate::collection::View;
use crate::config::CandidateIndex;
use crate::index::tokens::Probe;

/// Token-index candidates kept across all segments, in shares of the per-segment count: four.
/// The cut is by approximate score, which ranks coarsely; the exact stage that follows reads
/// at most `min(r_q, 4) x min(r_c, 8)` dots per candidate (on five segments of a 250,000-document
/// collection of the hard profile, a cut to two shares lost 0.08 of the (4,8) top 10 its
/// candidates held).
const GLOBAL_SHARES: usize = 4;

/// Lists a probing query vector reads in a segment of `centroids` lists when the request does
/// not say: [`DEFAULT_PROBES`] (twice that when it probes alone), or `2 sqrt(centroids)` when
/// more. Lists hold ~64 tokens in a segment of any size, so a larger segment needs more of them
/// to cover the same neighbourhood of the query; the square root keeps the pool sublinear in the
/// segment's size (measured on the hard profile at 1,000,000 documents' topic count: in one
/// 250,000-document segment of 32,768 centroids, 64 lists a vector held 0.86 of the (4,8) top
/// 10, 128 held 0.92; over five segments of 250,000 documents, twice the lists raised the (2,4)
/// recall@10 from 0.77 to 0.82 and (4,8) from 0.76 to 0.79).
fn default_probes(nq: usize, centroids: usize) -> usize {
    let base = DEFAULT_PROBES as usize * if nq == 1 { 2 } else { 1 };
    base.max(2 * (centroids as f64).sqrt() as usize)
}

/// What the candidate stage proposes.
pub(super) struct Candidates {
    pub(super) cands: Vec<Cand>,
    /// The most document vectors a token-index candidate was matched through (0: no segment
    /// used its token index). Those candidates meet an implicit first stage at that depth.
    pub(super) token_depth: u32,
    /// The last `ranked` candidates are the token index's, best approximate score first.
    pub(super) ranked: usize,
}

/// Fresh candidates (no score yet) for a search with query rows `q` (normalised, `dim` wide).
///
/// A segment whose index yields fewer than its share while it holds more documents that the
/// view allows (a selective filter starves the walk or the probed lists; identical vector 0s
/// leave hnsw_rs with a graph it cannot cross) is scanned instead: the search never returns
/// fewer hits than it could because of an index.
pub(super) fn collect(view: &View, req: &SearchRequest, q: &[f32], dim: usize) -> Candidates {
    let b = req.budget;
    let q0 = &q[..dim];
    let q0_l1: f32 = q0.iter().map(|x| x.abs()).sum();
    let hnsw_c = req
        .candidates
        .unwrap_or(super::DEFAULT_CANDIDATES)
        .max(req.k) as usize;
    let ef = (req.ef.unwrap_or(0) as usize).max(hnsw_c);
    // A request that sizes its candidates gets that many; by default a segment proposes up to
    // DEFAULT_TOKEN_CANDIDATES, ranked, and the rerank reads them progressively from the best.
    let token_c = req
        .candidates
        .unwrap_or(DEFAULT_TOKEN_CANDIDATES)
        .max(req.k) as usize;
    let token_first = req
        .candidates
        .unwrap_or(super::PROGRESSIVE_FIRST)
        .max(req.k) as usize;
    let nq = b.r_q.min(TOKEN_QUERY_VECTORS) as usize;
    let nprobe = |centroids: usize| {
        req.nprobe
            .map_or_else(|| default_probes(nq, centroids), |n| n as usize)
    };
    let token_ok = !req.exact && req.candidate_index != Some(CandidateIndex::Vector0);
    let want_tokens = token_ok && b.r_c > 1;
    let want_tokens_v0 = token_ok && b.r_c == 1;
    let nprobe_v0 = req.nprobe.unwrap_or(V0_PROBES) as usize;
    let per_segment = |si: usize| {
        let seg = view.seg(si);
        let scan = || {
            (0..seg.len())
                .filter(|&o| view.allowed(si, o))
                .map(|o| (o as u32, f32::INFINITY))
                .collect()
        };
        if req.exact {
            return (scan(), 0);
        }
        let live = view.live(si);
        if let Some(tokens) = seg.tokens().filter(|_| want_tokens) {
            if live <= token_c {
                // The segment's whole population fits in its share: no index needed.
                return (scan(), 0);
            }
            let probe = Probe {
                nq,
                rc: b.r_c as usize,
                nprobe: nprobe(tokens.centroids()),
                keep: token_c,
                // Unsized: until the first candidates a progressive rerank reads are the
                // segment's best by the codes.
                until: req.nprobe.is_none().then_some(token_first),
            };
            // Vector 0 scored from the graph's int8 copy, the deeper tokens from codes.
            let index = seg.index();
            let v0 = |row: &[f32], docs: &[u32], out: &mut [f32]| index.dots(row, docs, out);
            let (found, _) = tokens.search_with(q, probe, &|o| view.allowed(si, o), Some(&v0));
            let starved =
                found.len() < token_c && (view.filter().is_some() || found.len() < req.k as usize);
            if starved {
                return (scan(), 0);
            }
            let depth = b.r_c.min(tokens.index_vectors() as u32);
            // (ordinal, approximate score): the scores meet the other segments' below.
            return (found, depth);
        }
        let index = seg.index();
        // At r_c = 1 beside the vector-0 lists (below) the walk needs fewer candidates: a
        // score is the vector-0 dot the graph is built for, and the lists bring the clusters it
        // reaches only in part.
        let lists = want_tokens_v0 && seg.tokens().is_some();
        let (walk_c, walk_ef) = match req.candidates {
            None if lists => {
                let c = V0_WALK_CANDIDATES.max(req.k) as usize;
                (c, (req.ef.unwrap_or(0) as usize).max(c))
            }
            _ => (hnsw_c, ef),
        };
        let mut found: Vec<(u32, f32)> = index
            .search(q0, walk_c, walk_ef, &|o| view.allowed(si, o))
            .into_iter()
            .map(|(o, s)| (o as u32, s + index.slack(q0_l1, o)))
            .collect();
        if found.len() < walk_c.min(live) {
            return (scan(), 0);
        }
        if let Some(tokens) = seg.tokens().filter(|_| want_tokens_v0) {
            // Vector 0s that nearly coincide (a topic's documents) defeat the graph: the
            // walk reaches part of the cluster. The token index's lists hold whole clusters,
            // and every document of them joins the walk's (each scored once): at r_c = 1
            // the codes cannot rank (a list's vector 0s share one code), and one exact dot
            // each is cheap.
            let probe = Probe {
                nq: 1,
                rc: 1,
                nprobe: nprobe_v0,
                keep: usize::MAX,
                until: None,
            };
            let (extra, _) = tokens.search(q, probe, &|o| view.allowed(si, o));
            let have: std::collections::HashSet<u32> = found.iter().map(|f| f.0).collect();
            found.extend(
                extra
                    .into_iter()
                    .filter(|(o, _)| !have.contains(o))
                    .map(|(o, _)| (o, f32::INFINITY)),
            );
        }
        (found, 0)
    };
    let n_segs = view.segments().len();
    let seg_cands: Vec<(Vec<(u32, f32)>, u32)> = if super::on_caller(n_segs) {
        (0..n_segs).map(per_segment).collect()
    } else {
        (0..n_segs).into_par_iter().map(per_segment).collect()
    };
    let rq = b.r_q as usize;
    let fresh = |doc, upper| Cand {
        doc,
        maxes: smallvec![f32::NEG_INFINITY; rq],
        score: 0.0,
        upper,
        approx: f32::NAN,
    };
    let mut cands: Vec<Cand> = view
        .mem()
        .iter()
        .map(|d| fresh(DocRef::Mem(d.clone()), f32::INFINITY))
        .collect();
    let mut token_depth = 0;
    // Token-index candidates of several segments compete on their approximate scores: the
    // best [`GLOBAL_SHARES`] shares go on (at least the largest segment's own keep), so the exact
    // stage does not grow with the number of segments.
    let mut from_tokens: Vec<(f32, usize, u32)> = Vec::new();
    let mut largest = 0;
    for (si, (ords, depth)) in seg_cands.iter().enumerate() {
        if *depth > 0 {
            token_depth = token_depth.max(*depth);
            largest = largest.max(ords.len());
            from_tokens.extend(ords.iter().map(|&(o, approx)| (approx, si, o)));
        } else {
            cands.extend(ords.iter().map(|&(o, u)| fresh(DocRef::Seg(si, o), u)));
        }
    }
    let global = (GLOBAL_SHARES * token_c).max(largest);
    if from_tokens.len() > global {
        let by = |a: &(f32, usize, u32), b: &(f32, usize, u32)| {
            b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2)))
        };
        from_tokens.select_nth_unstable_by(global - 1, by);
        from_tokens.truncate(global);
    }
    // Best approximate score first: a progressive rerank reads them in that order.
    from_tokens.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    let ranked = from_tokens.len();
    cands.extend(from_tokens.into_iter().map(|(approx, si, o)| Cand {
        approx,
        ..fresh(DocRef::Seg(si, o), f32::INFINITY)
    }));
    Candidates {
        cands,
        token_depth,
        ranked,
    }
}
