//! What a search asks for and what it answers, and the validation of a request.

use std::cmp::Ordering;
use std::time::Duration;

use super::filter::Filter;
use crate::config::{Budget, CollectionConfig, MAX_K};
use crate::document::normalize_rows;
use crate::error::{Error, Result};

/// Candidates per segment from the vector-0 HNSW when the request does not say.
pub const DEFAULT_CANDIDATES: u32 = 320;
/// Most candidates per segment from the token index when the request does not say (and at
/// least an eighth of the probed pool), ranked by approximate MaxSim among the documents the
/// probed posting lists reach; the rerank reads them progressively (see [`PROGRESSIVE_FIRST`]).
pub const DEFAULT_TOKEN_CANDIDATES: u32 = 1000;
/// A progressive rerank scores the best this many token-index candidates (by approximate score)
/// first, then [`PROGRESSIVE_BATCH`] at a time while the candidates' approximate scores, through
/// the line the scored ones fit to their exact scores, may still reach the top k (see
/// `rerank::run_progressive`). On 20,000 documents of both synthetic profiles, a fixed 100 held
/// 0.86-0.99 of the (4,8) top 10 and 200 held 0.999-1.0; 200 held 0.98-0.99 at (16,64) and 400
/// held 1.0 (benches/results/2026-12-03-depth-study.txt).
pub const PROGRESSIVE_FIRST: u32 = 128;
/// Candidates per further batch of a progressive rerank.
pub const PROGRESSIVE_BATCH: usize = 32;
/// Query vectors that probe the token index (the first ones; at most the budget's r_q).
pub const TOKEN_QUERY_VECTORS: u32 = 4;
/// Posting lists probed per probing query vector when the request does not say, at most (256
/// for a single one; `2 sqrt(centroids)` in a segment with more than 4,096 centroids): a probe
/// the request does not size reads lists best first and stops once no document outside its pool
/// can reach the approximate score of its candidate count's worst (see
/// `index::tokens::Probe::until`); a request's `nprobe` reads exactly that many.
pub const DEFAULT_PROBES: u32 = 128;
/// Vector-0 posting lists probed at budgets with `r_c = 1` (beside the HNSW walk) when the
/// request does not say: the best of the lists that hold a vector-0 token (only those are
/// scored). Six read more documents than sixteen chosen among all lists did before
/// (2026-12-06: 147 against 124 on hard 20,000, 310 against 212 on hard 200,000), with
/// recall@10 1.000 on both and on manpages-1k; four lost 0.007 and 0.032.
pub const V0_PROBES: u32 = 6;
/// HNSW candidates at budgets with `r_c = 1` on a segment whose vector-0 lists are probed beside
/// the walk, when the request does not say ([`DEFAULT_CANDIDATES`] elsewhere).
pub const V0_WALK_CANDIDATES: u32 = 128;
/// Most centroids a request may probe per query vector.
pub const MAX_NPROBE: u32 = 65_536;
/// Candidates the implicit first stage keeps (see [`SearchRequest::stages`]): at (8,16) on a
/// 250,000-document segment of the hard profile, an exact (4,8) stage keeping 500 lost 0.03-0.06
/// of the top 10 its candidates held.
pub const DEFAULT_STAGE_KEEP: u32 = 1000;
/// Largest candidate count a request may ask for.
pub const MAX_CANDIDATES: u32 = 100_000;

/// A budgeted MaxSim search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// `n x D` query vectors, row-major, Matryoshka order; `r_q <= n <= M_q`.
    pub query: Vec<f32>,
    pub budget: Budget,
    pub k: u32,
    /// Candidates taken from each segment (at least `k`): from the vector-0 HNSW (default
    /// [`DEFAULT_CANDIDATES`]) or, for a budget with `r_c > 1` on a segment with a token index,
    /// the best by approximate MaxSim from the token index (default [`DEFAULT_TOKEN_CANDIDATES`]).
    pub candidates: Option<u32>,
    /// Token index: posting lists probed per query vector. Default: adaptive, until the
    /// candidates kept are the segment's best by approximate score, at most [`DEFAULT_PROBES`]
    /// (256 when a single query vector probes, `2 sqrt(centroids)` where that is more).
    pub nprobe: Option<u32>,
    /// Where candidates come from: `None` = the collection's choice (the token index for
    /// budgets with `r_c > 1` where a segment has one, else the vector-0 HNSW);
    /// `Some(Vector0)` forces the vector-0 HNSW (how the bench and tests compare the two).
    pub candidate_index: Option<crate::config::CandidateIndex>,
    /// HNSW search breadth (default and minimum: the candidate count).
    pub ef: Option<u32>,
    /// Score every live document: exact results, no index.
    pub exact: bool,
    /// Accept a budget that is not one of the collection's trained pairs.
    pub allow_untrained_budget: bool,
    pub with_payload: bool,
    /// Cascade: earlier stages, each scoring the survivors of the previous one at its budget and
    /// keeping its best `keep`; the last stage is `budget`, keeping `k`. Budgets are nested
    /// prefixes, so a stage extends the running per-query-vector maxima of the one before and
    /// computes only the new (query vector, document vector) pairs. Empty = one stage, except
    /// that candidates from the token index first meet an implicit stage at
    /// `(min(r_q, 4), min(r_c, index_vectors))` keeping [`DEFAULT_STAGE_KEEP`] when that is
    /// below the budget.
    pub stages: Vec<Stage>,
    /// Skip candidates that provably cannot be kept (results are identical either way; stats
    /// count what was pruned): at a first stage of (1,1), those whose graph-walk score plus its
    /// int8 slack stays below the k-th (or keep-th) exact score; before the final stage of a
    /// cascade, those whose score upper bound cannot reach the current k-th lower bound.
    pub prune: bool,
    /// Only documents whose payload matches are returned (see [`Filter`]).
    pub filter: Option<Filter>,
    /// Auto budget: ignore `budget` and use the largest trained budget whose recently measured
    /// latency (moving average of this collection's searches) fits this target. The response
    /// reports the budget used.
    pub latency_target: Option<Duration>,
    /// Count the distinct pages the rerank touches into `stats.vector_pages` (a sort per
    /// search: for benchmarks, not served over gRPC).
    pub count_pages: bool,
}

/// One cascade stage: score at `budget`, keep the best `keep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    pub budget: Budget,
    pub keep: u32,
}

impl SearchRequest {
    pub fn new(query: Vec<f32>, budget: Budget, k: u32) -> Self {
        SearchRequest {
            query,
            budget,
            k,
            candidates: None,
            nprobe: None,
            candidate_index: None,
            ef: None,
            exact: false,
            allow_untrained_budget: false,
            with_payload: false,
            stages: Vec::new(),
            prune: true,
            filter: None,
            latency_target: None,
            count_pages: false,
        }
    }

    pub fn exact(mut self) -> Self {
        self.exact = true;
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: String,
    pub score: f32,
    pub payload: Option<String>,
}

/// What one cascade stage did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageStats {
    pub budget: Budget,
    /// Documents this stage scored (extended to its budget).
    pub scored: u64,
    /// Documents dropped by the bound before this stage.
    pub pruned: u64,
    /// New dot products this stage computed.
    pub dot_products: u64,
    /// Vector bytes this stage read.
    pub vector_bytes_read: u64,
    /// Distinct 4 KiB pages of segment vectors this stage read (with `count_pages`).
    pub vector_pages: u64,
    /// Documents kept for the next stage.
    pub kept: u64,
}

/// What a search did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchStats {
    /// Documents proposed for rerank (HNSW candidates + memtable documents, or all in exact mode).
    pub candidates: u64,
    /// Documents the first stage scored: the candidates, less those pruned at (1,1).
    pub docs_scored: u64,
    /// Bytes of vectors the rerank read: sum over scored docs of r_c * D * bytes per value.
    pub vector_bytes_read: u64,
    /// With [`SearchRequest::count_pages`]: distinct 4 KiB pages of segment vectors the rerank
    /// read, summed over stages (memtable documents are not counted); 0 otherwise. What the
    /// layout costs in memory traffic and page cache: a slice of a few rows pulls whole pages.
    pub vector_pages: u64,
    /// Query-vector x document-vector dot products computed.
    pub dot_products: u64,
    pub segments: u32,
    /// Candidates dropped by the bound (never changes results).
    pub pruned: u64,
    /// One entry per stage (one for a plain search).
    pub stages: Vec<StageStats>,
    pub candidate_time: Duration,
    pub rerank_time: Duration,
    pub merge_time: Duration,
    pub total_time: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchResponse {
    pub hits: Vec<Hit>,
    pub stats: SearchStats,
    /// The budget used.
    pub budget: Budget,
}

/// Validates the request and returns the normalised query rows (r_q of them).
pub fn prepare_query(req: &SearchRequest, cfg: &CollectionConfig) -> Result<Vec<f32>> {
    let dim = cfg.dim as usize;
    let b = req.budget;
    if req.query.is_empty() || !req.query.len().is_multiple_of(dim) {
        return Err(Error::invalid(format!(
            "query has {} floats, not a whole number of vectors of dim {dim}",
            req.query.len()
        )));
    }
    let n = req.query.len() / dim;
    if n > cfg.query_vectors as usize {
        return Err(Error::invalid(format!(
            "query has {n} vectors, the collection's query_vectors is {}",
            cfg.query_vectors
        )));
    }
    if b.r_q == 0 || b.r_q as usize > n {
        return Err(Error::invalid(format!(
            "budget.r_q is {}, must be in 1..={n} (the query's vector count)",
            b.r_q
        )));
    }
    if b.r_c == 0 || b.r_c > cfg.doc_vectors {
        return Err(Error::invalid(format!(
            "budget.r_c is {}, must be in 1..={} (doc_vectors)",
            b.r_c, cfg.doc_vectors
        )));
    }
    if !req.allow_untrained_budget && !cfg.is_trained(b) {
        let trained: Vec<String> = cfg.budgets.iter().map(Budget::to_string).collect();
        return Err(Error::invalid(format!(
            "budget {b} is not a trained budget ({}); set allow_untrained_budget to use it",
            trained.join(" ")
        )));
    }
    if req.k == 0 || req.k > MAX_K {
        return Err(Error::invalid(format!(
            "k is {}, must be in 1..={MAX_K}",
            req.k
        )));
    }
    if let Some(c) = req.candidates {
        if c == 0 || c > MAX_CANDIDATES {
            return Err(Error::invalid(format!(
                "candidates is {c}, must be in 1..={MAX_CANDIDATES}"
            )));
        }
    }
    if let Some(n) = req.nprobe {
        if n == 0 || n > MAX_NPROBE {
            return Err(Error::invalid(format!(
                "nprobe is {n}, must be in 1..={MAX_NPROBE}"
            )));
        }
    }
    if let Some(ef) = req.ef {
        if ef == 0 || ef > MAX_CANDIDATES {
            return Err(Error::invalid(format!(
                "ef is {ef}, must be in 1..={MAX_CANDIDATES}"
            )));
        }
    }
    let mut prev = Budget::new(0, 0);
    for (i, st) in req
        .stages
        .iter()
        .chain(std::iter::once(&Stage {
            budget: b,
            keep: req.k,
        }))
        .enumerate()
    {
        let sb = st.budget;
        let last = i == req.stages.len();
        if !last {
            if sb.r_q == 0 || sb.r_c == 0 || sb.r_q > b.r_q || sb.r_c > b.r_c {
                return Err(Error::invalid(format!(
                    "stages[{i}].budget is {sb}: each stage budget must be within the final budget {b}"
                )));
            }
            if !req.allow_untrained_budget && !cfg.is_trained(sb) {
                return Err(Error::invalid(format!(
                    "stages[{i}].budget {sb} is not a trained budget; set allow_untrained_budget to use it"
                )));
            }
            if st.keep < req.k || st.keep > MAX_CANDIDATES {
                return Err(Error::invalid(format!(
                    "stages[{i}].keep is {}, must be in k..={MAX_CANDIDATES} (k is {})",
                    st.keep, req.k
                )));
            }
        }
        if sb.r_q < prev.r_q || sb.r_c < prev.r_c || sb == prev {
            // The last entry of the chain is the request's own budget, not a stage.
            let field = if last {
                "budget".to_string()
            } else {
                format!("stages[{i}].budget")
            };
            return Err(Error::invalid(format!(
                "{field} {sb} does not extend stages[{}].budget {prev}: budgets must be nested and increasing",
                i - 1
            )));
        }
        prev = sb;
    }
    let mut q = req.query[..b.r_q as usize * dim].to_vec();
    normalize_rows(&mut q, dim, "query")?;
    Ok(q)
}

/// The order of results everywhere (one search, a merge across shards): score descending, then
/// id ascending, so equal scores come back in the same order on every run and every node.
pub fn hit_order(a: (f32, &str), b: (f32, &str)) -> Ordering {
    b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1))
}
