//! The read path, as functions over a collection's point-in-time [`View`]:
//! candidates (per segment the token index for budgets with r_c > 1, else the HNSW on vector 0;
//! every in-memory document) -> exact MaxSim at the budget over the r_c prefix only, stage by
//! stage for a cascade (token-index candidates first meet a stage at the depth the index
//! matched on) -> the top k in one order.
//! `exact` scans every live document at the budget: the ground truth.
//!
//! - `request`: what a search asks and answers, and its validation;
//! - `candidates`: the candidate stage;
//! - `rerank`: stages that extend running per-query-vector maxima, and the (1,1) skip;
//! - `bounds`: upper bounds that let a cascade's last stage skip candidates;
//! - `auto`: auto budget from measured latency;
//! - `filter`: payload filters.

use std::time::Instant;

mod auto;
mod bounds;
mod candidates;
pub mod filter;
mod request;
mod rerank;

pub use filter::Filter;
pub use request::{
    hit_order, prepare_query, Hit, SearchRequest, SearchResponse, SearchStats, Stage, StageStats,
    DEFAULT_CANDIDATES, DEFAULT_PROBES, DEFAULT_STAGE_KEEP, DEFAULT_TOKEN_CANDIDATES,
    MAX_CANDIDATES, MAX_NPROBE, PROGRESSIVE_BATCH, PROGRESSIVE_FIRST, TOKEN_QUERY_VECTORS,
    V0_WALK_CANDIDATES,
};

use crate::collection::{Collection, View};
use crate::config::{Budget, CollectionConfig};
use crate::error::{Error, Result};
use rerank::DocRef;

/// Whether `tasks` parallel tasks of a search run on the calling thread: one task, or a pool of
/// one thread, has nothing to run beside it, and handing it to the pool costs a wake-up and a
/// wait (tens of microseconds on a VM), several times a query in a progressive rerank's batches.
fn on_caller(tasks: usize) -> bool {
    tasks <= 1 || rayon::current_num_threads() <= 1
}

impl Collection {
    /// Budgeted MaxSim search (optionally a cascade); see the module doc.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResponse> {
        self.check_live()?;
        let mut at = std::borrow::Cow::Borrowed(req);
        if let Some(target) = req.latency_target {
            let budget = self.pick_budget(req, target)?;
            let at = at.to_mut();
            at.latency_target = None;
            at.budget = budget;
        }
        let res = search(&self.view(at.filter.as_ref()), self.config(), &at)?;
        self.record_latency(&at, &res);
        Ok(res)
    }
}

/// Runs `req` over `view`; the filter is the view's (built from `req.filter`).
pub fn search(view: &View, cfg: &CollectionConfig, req: &SearchRequest) -> Result<SearchResponse> {
    let started = Instant::now();
    let q = prepare_query(req, cfg)?;
    if req.budget.r_c > view.depth() {
        return Err(Error::FailedPrecondition(format!(
            "budget {} needs {} vectors per document, but the collection stores only the first {} \
             (it was compacted with keep_r_c = {})",
            req.budget,
            req.budget.r_c,
            view.depth(),
            view.depth()
        )));
    }
    let dim = cfg.dim as usize;
    let mut stats = SearchStats {
        segments: view.segments().len() as u32,
        ..Default::default()
    };

    let t0 = Instant::now();
    let candidates::Candidates {
        mut cands,
        token_depth,
        ranked,
    } = candidates::collect(view, req, &q, dim);
    stats.candidates = cands.len() as u64;
    stats.docs_scored = cands.len() as u64;
    stats.candidate_time = t0.elapsed();

    // Token-index candidates are many and ranked only approximately: when the budget is
    // deeper than what the index matched on, they first meet an exact stage at that depth.
    let mut at = std::borrow::Cow::Borrowed(req);
    let b = req.budget;
    let first = Budget::new(
        b.r_q.min(request::TOKEN_QUERY_VECTORS),
        b.r_c.min(token_depth),
    );
    let keep = request::DEFAULT_STAGE_KEEP.max(req.k);
    let progressive = ranked > 0 && req.stages.is_empty() && req.candidates.is_none();
    if !progressive
        && token_depth > 0
        && req.stages.is_empty()
        && first != b
        && cands.len() > keep as usize
    {
        at.to_mut().stages.push(Stage {
            budget: first,
            keep,
        });
    }
    let t1 = Instant::now();
    // Token-index candidates the request did not count go through a progressive rerank: the
    // best by approximate score first, then further down while they may still reach the top k.
    if progressive {
        let fixed = cands.len() - ranked;
        rerank::run_progressive(view, req, &q, dim, &mut cands, fixed, &mut stats)?;
    } else {
        rerank::run_stages(view, &at, &q, dim, &mut cands, &mut stats)?;
    }
    stats.rerank_time = t1.elapsed();

    let t2 = Instant::now();
    let hits = cands
        .iter()
        .map(|cand| {
            let (id, payload) = match &cand.doc {
                DocRef::Mem(d) => (d.id.clone(), d.payload.as_deref()),
                DocRef::Seg(si, o) => {
                    let seg = view.seg(*si);
                    (
                        seg.doc_id(*o as usize).to_string(),
                        seg.payload(*o as usize),
                    )
                }
            };
            Hit {
                id,
                score: cand.score,
                payload: payload.filter(|_| req.with_payload).map(str::to_string),
            }
        })
        .collect();
    stats.merge_time = t2.elapsed();
    stats.total_time = started.elapsed();
    Ok(SearchResponse {
        hits,
        stats,
        budget: req.budget,
    })
}
