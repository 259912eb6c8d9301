//! The candidate stage: every in-memory document of the view, and per sealed segment the
//! documents an HNSW walk over vector 0 reaches (all live documents in exact mode).

use rayon::prelude::*;
use smallvec::smallvec;

use super::request::SearchRequest;
use super::rerank::{Cand, DocRef};
use crate::collection::View;

/// Fresh candidates (no score yet) for a search with query rows `q` (normalised, `dim` wide):
/// `c` per segment from a walk of breadth `ef`, or every allowed document when `req.exact`.
///
/// A walk that yields fewer than `c` documents while the segment holds more that the view
/// allows (a selective filter starves it; identical vector 0s leave hnsw_rs with a graph it
/// cannot cross) falls back to scanning the segment: the search never returns fewer hits than
/// it could because of the index.
pub(super) fn collect(view: &View, req: &SearchRequest, q: &[f32], dim: usize) -> Vec<Cand> {
    let c = req
        .candidates
        .unwrap_or(super::DEFAULT_CANDIDATES)
        .max(req.k) as usize;
    let ef = (req.ef.unwrap_or(0) as usize).max(c);
    let q0 = &q[..dim];
    let q0_l1: f32 = q0.iter().map(|x| x.abs()).sum();
    let seg_cands: Vec<Vec<(u32, f32)>> = (0..view.segments().len())
        .into_par_iter()
        .map(|si| {
            let seg = view.seg(si);
            let scan = || {
                (0..seg.len())
                    .filter(|&o| view.allowed(si, o))
                    .map(|o| (o as u32, f32::INFINITY))
                    .collect()
            };
            if req.exact {
                return scan();
            }
            let index = seg.index();
            let found: Vec<(u32, f32)> = index
                .search(q0, c, ef, &|o| view.allowed(si, o))
                .into_iter()
                .map(|(o, s)| (o as u32, s + index.slack(q0_l1, o)))
                .collect();
            if found.len() < c.min(view.live(si)) {
                scan()
            } else {
                found
            }
        })
        .collect();
    let rq = req.budget.r_q as usize;
    let fresh = |doc, upper| Cand {
        doc,
        maxes: smallvec![f32::NEG_INFINITY; rq],
        score: 0.0,
        upper,
    };
    let mut cands: Vec<Cand> = view
        .mem()
        .iter()
        .map(|d| fresh(DocRef::Mem(d.clone()), f32::INFINITY))
        .collect();
    for (si, ords) in seg_cands.iter().enumerate() {
        cands.extend(ords.iter().map(|&(o, u)| fresh(DocRef::Seg(si, o), u)));
    }
    cands
}
