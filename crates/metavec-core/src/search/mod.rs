//! The read path: candidates (HNSW on vector 0 per segment + a scan of the memtable) ->
//! exact MaxSim at the budget over the r_c prefix only -> top-k merged across segments.
//! `exact` scans every live document at the budget: the ground truth.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use smallvec::{smallvec, SmallVec};

pub mod filter;
pub use filter::Filter;

use crate::collection::{Bitset, Collection};
use crate::config::{Budget, CollectionConfig, MAX_K};
use crate::document::normalize_rows;
use crate::error::{Error, Result};
use crate::score;
use crate::segment::Segment;
use crate::Document;

/// Candidates per segment when the request does not say.
pub const DEFAULT_CANDIDATES: u32 = 320;
/// Largest candidate count a request may ask for.
pub const MAX_CANDIDATES: u32 = 100_000;

/// A budgeted MaxSim search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// `n x D` query vectors, row-major, Matryoshka order; `r_q <= n <= M_q`.
    pub query: Vec<f32>,
    pub budget: Budget,
    pub k: u32,
    /// Candidates taken from each segment's HNSW (default [`DEFAULT_CANDIDATES`], at least `k`).
    pub candidates: Option<u32>,
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
    /// computes only the new (query vector, document vector) pairs. Empty = one stage.
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
            return Err(Error::invalid(format!(
                "stages[{i}].budget {sb} does not extend the previous stage {prev}: budgets must be nested and increasing"
            )));
        }
        prev = sb;
    }
    let mut q = req.query[..b.r_q as usize * dim].to_vec();
    normalize_rows(&mut q, dim, "query")?;
    Ok(q)
}

/// Total order for results: score descending, then id ascending (stable across runs).
fn better(a: (f32, &str), b: (f32, &str)) -> Ordering {
    b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1))
}

/// Where a candidate's vectors are.
#[derive(Debug, Clone)]
enum DocRef {
    /// Memtable or frozen-run document, shared without the state lock.
    Mem(Arc<Document>),
    /// Segment index in the view, ordinal.
    Seg(usize, u32),
}

/// A candidate with its running per-query-vector maxima (a lower bound of every deeper budget's
/// maxima, because budgets are nested prefixes).
#[derive(Debug, Clone)]
struct Cand {
    doc: DocRef,
    /// Inline up to 16 query vectors (MetaEmbed's M_q): no allocation per candidate.
    maxes: SmallVec<[f32; 16]>,
    score: f32,
    /// An upper bound of the vector-0 dot product (the graph walk's int8 score plus its slack;
    /// infinite where unknown): what lets a (1,1) stage skip candidates that cannot be kept.
    upper: f32,
}

type View = Vec<(Arc<Segment>, Arc<Bitset>)>;

fn cand_id<'a>(c: &'a Cand, segs: &'a View) -> &'a str {
    match &c.doc {
        DocRef::Mem(d) => &d.id,
        DocRef::Seg(si, o) => &segs[*si].0.ids()[*o as usize],
    }
}

/// Keeps the best `keep` candidates, sorted best first.
fn keep_best(cands: &mut Vec<Cand>, keep: usize, segs: &View) {
    let cmp = |a: &Cand, b: &Cand| better((a.score, cand_id(a, segs)), (b.score, cand_id(b, segs)));
    if cands.len() > keep && keep > 0 {
        cands.select_nth_unstable_by(keep - 1, cmp);
    }
    cands.truncate(keep);
    cands.sort_by(cmp);
}

/// What every stage extension needs: the query rows, the kernel and the segment view.
struct Scorer<'a> {
    q: &'a [f32],
    dim: usize,
    kern: score::Kernel,
    compact: score::compact::CompactKernel,
    segs: &'a View,
}

/// Appends the numbers of the 4 KiB pages the span `start..start + len` covers.
fn push_pages(start: usize, len: usize, pages: &mut Vec<usize>) {
    if len > 0 {
        pages.extend(start / 4096..=(start + len - 1) / 4096);
    }
}

/// Sorts and dedups `pages`; returns how many distinct pages there are.
fn distinct(mut pages: Vec<usize>) -> u64 {
    pages.sort_unstable();
    pages.dedup();
    pages.len() as u64
}

/// Extends one candidate from budget `from` to `to`: query rows below `from.r_q` see document
/// rows `from.r_c..to.r_c`; new query rows `from.r_q..to.r_q` see rows `0..to.r_c`. Returns the
/// bytes read: each of rows `0..to.r_c` that is needed, once. Only new pairs are computed:
/// `to.r_q * to.r_c - from.r_q * from.r_c` dots.
fn extend<'a>(
    s: &Scorer<'a>,
    c: &mut Cand,
    from: Budget,
    to: Budget,
    parts: &mut Vec<score::Rows<'a>>,
    mut pages: Option<&mut Vec<usize>>,
) -> Result<u64> {
    let (q, dim, kern, segs) = (s.q, s.dim, s.kern, s.segs);
    let ck = s.compact;
    let (fq, fc, tq, tc) = (
        from.r_q as usize,
        from.r_c as usize,
        to.r_q as usize,
        to.r_c as usize,
    );
    let mem_row_bytes = (dim * 4) as u64;
    let mut bytes = 0u64;
    // New query rows x the document rows already seen, then every query row x the new document
    // rows: each row is read once, and the new rows meet all query rows in one fused call.
    for (qa, qb, ra, rb) in [(fq, tq, 0, fc), (0, tq, fc, tc)] {
        if qb <= qa || rb <= ra {
            continue;
        }
        let (qs, maxes) = (&q[qa * dim..qb * dim], &mut c.maxes[qa..qb]);
        match &c.doc {
            DocRef::Mem(d) => {
                (kern.update)(qs, qb - qa, dim, &d.vectors[ra * dim..rb * dim], maxes);
                bytes += (rb - ra) as u64 * mem_row_bytes;
            }
            DocRef::Seg(si, o) => {
                parts.clear();
                bytes += segs[*si].0.range(*o as usize, ra, rb, parts)?;
                for p in parts.iter() {
                    if let Some(pages) = pages.as_deref_mut() {
                        for (start, len) in p.spans() {
                            push_pages(start, len, pages);
                        }
                    }
                    p.update(&kern, &ck, qs, qb - qa, dim, maxes);
                }
            }
        }
    }
    c.score = c.maxes[..tq].iter().sum();
    Ok(bytes)
}

/// [`extend`] of two fresh candidates to a budget of one document row (r_c = 1): each has only
/// vector 0 to score (one f32 row in every layout), so the two rows go through the kernel as a
/// pair, two independent dot products per query row (bit-identical to one at a time).
fn start_pair<'a>(
    s: &Scorer<'a>,
    x: &mut Cand,
    y: &mut Cand,
    to: Budget,
    parts: &mut Vec<score::Rows<'a>>,
    mut pages: Option<&mut Vec<usize>>,
) -> Result<u64> {
    let (q, dim, rq) = (s.q, s.dim, to.r_q as usize);
    let mut rows: [Option<&[f32]>; 2] = [None, None];
    for (row, doc) in rows.iter_mut().zip([&x.doc, &y.doc]) {
        *row = match doc {
            DocRef::Mem(d) => Some(&d.vectors[..dim]),
            DocRef::Seg(si, o) => {
                parts.clear();
                s.segs[*si].0.range(*o as usize, 0, 1, parts)?;
                match parts[..] {
                    [score::Rows::F32(r)] => Some(r),
                    _ => None,
                }
            }
        };
    }
    let [Some(a), Some(b)] = rows else {
        let from = Budget::new(0, 0);
        return Ok(extend(s, x, from, to, parts, pages.as_deref_mut())?
            + extend(s, y, from, to, parts, pages)?);
    };
    if let Some(pages) = pages {
        for (r, doc) in [(a, &x.doc), (b, &y.doc)] {
            if matches!(doc, DocRef::Seg(..)) {
                push_pages(r.as_ptr() as usize, std::mem::size_of_val(r), pages);
            }
        }
    }
    (s.kern.update_pair)(q, rq, dim, a, b, &mut x.maxes[..rq], &mut y.maxes[..rq]);
    x.score = x.maxes[..rq].iter().sum();
    y.score = y.maxes[..rq].iter().sum();
    Ok(2 * (dim * 4) as u64)
}

/// Starts loading the rows [`extend`] will read for `c`, so they arrive while the previous
/// candidate is being scored (a candidate's rows sit at random places in large groups).
fn prefetch<'a>(
    s: &Scorer<'a>,
    c: &Cand,
    from: Budget,
    to: Budget,
    parts: &mut Vec<score::Rows<'a>>,
) {
    let (fq, fc, tc) = (from.r_q as usize, from.r_c as usize, to.r_c as usize);
    // The rows extend touches: fc..tc for the old query rows, and 0..tc if query rows are added.
    let ra = if to.r_q as usize > fq { 0 } else { fc };
    match &c.doc {
        DocRef::Mem(d) => score::simd::prefetch(&d.vectors[ra * s.dim..tc * s.dim]),
        DocRef::Seg(si, o) => {
            parts.clear();
            if s.segs[*si].0.range(*o as usize, ra, tc, parts).is_ok() {
                parts.iter().for_each(|p| p.prefetch());
            }
        }
    }
}

impl Collection {
    /// Budgeted MaxSim search (optionally a cascade); see the module doc.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResponse> {
        let Some(target) = req.latency_target else {
            let res = self.search_at(req)?;
            self.record_latency(req, &res);
            return Ok(res);
        };
        let mut at = req.clone();
        at.latency_target = None;
        at.budget = self.pick_budget(req, target)?;
        let res = self.search_at(&at)?;
        self.record_latency(&at, &res);
        Ok(res)
    }

    /// Feeds the per-budget latency average that auto budget reads (plain searches only).
    fn record_latency(&self, req: &SearchRequest, res: &SearchResponse) {
        if req.stages.is_empty() && !req.exact {
            let ms = res.stats.total_time.as_secs_f64() * 1e3;
            let mut lat = self.latency.lock();
            let e = lat.entry(req.budget).or_insert(ms);
            *e = 0.8 * *e + 0.2 * ms;
        }
    }

    /// The largest trained budget (usable with this query and the stored depth) whose average
    /// latency fits `target`. Walking up the ladder, the first budget not measured yet is tried
    /// when everything below it fits, so the averages fill in as traffic flows.
    fn pick_budget(&self, req: &SearchRequest, target: Duration) -> Result<Budget> {
        let cfg = self.config();
        let n = (req.query.len() / cfg.dim as usize) as u32;
        let depth = self.state.read().depth;
        let usable: Vec<Budget> = cfg
            .budgets
            .iter()
            .copied()
            .filter(|b| b.r_q <= n && b.r_c <= depth)
            .collect();
        let Some(&first) = usable.first() else {
            return Err(Error::invalid(format!(
                "query has {n} vectors: no trained budget fits it (smallest is {})",
                cfg.budgets[0]
            )));
        };
        let target_ms = target.as_secs_f64() * 1e3;
        let lat = self.latency.lock();
        let mut chosen = first;
        for b in usable {
            match lat.get(&b) {
                Some(&ms) if ms <= target_ms => chosen = b,
                Some(_) => break,
                None => {
                    chosen = b;
                    break;
                }
            }
        }
        Ok(chosen)
    }

    fn search_at(&self, req: &SearchRequest) -> Result<SearchResponse> {
        self.check_live()?;
        let started = Instant::now();
        let cfg = self.config();
        let q = prepare_query(req, cfg)?;
        let dim = cfg.dim as usize;
        let k = req.k as usize;
        let c = req.candidates.unwrap_or(DEFAULT_CANDIDATES).max(req.k) as usize;
        let ef = (req.ef.unwrap_or(0) as usize).max(c);
        let kern = score::kernel();
        let final_rq = req.budget.r_q as usize;
        let mut stats = SearchStats::default();

        // Point-in-time view: memtable documents as shared Arcs, segments with their tombstones.
        let t0 = Instant::now();
        let (mem, segs): (Vec<Arc<Document>>, View) = {
            let st = self.state.read();
            if req.budget.r_c > st.depth {
                return Err(Error::FailedPrecondition(format!(
                    "budget {} needs {} vectors per document, but the collection stores only the first {} \
                     (it was compacted with keep_r_c = {})",
                    req.budget, req.budget.r_c, st.depth, st.depth
                )));
            }
            let mut mem: Vec<Arc<Document>> = st.mem.slots.iter().flatten().cloned().collect();
            if let Some(f) = &req.filter {
                mem.retain(|d| f.matches_text(d.payload.as_deref()));
            }
            if let Some(run) = &st.frozen {
                mem.extend(
                    run.docs
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !st.frozen_dead.get(*i))
                        .map(|(_, d)| d.clone()),
                );
            }
            (
                mem,
                st.segments
                    .iter()
                    .map(|s| (s.seg.clone(), s.dead.clone()))
                    .collect(),
            )
        };
        stats.segments = segs.len() as u32;

        // Candidates: every memtable document, HNSW on vector 0 per segment (or all, if exact).
        let q0 = &q[..dim];
        let filter = req.filter.as_ref();
        let allowed = |seg: &Segment, dead: &Bitset, o: usize| {
            !dead.get(o) && filter.is_none_or(|f| f.matches_text(seg.payload(o)))
        };
        let q0_l1: f32 = q0.iter().map(|x| x.abs()).sum();
        let seg_cands: Vec<Vec<(u32, f32)>> = segs
            .par_iter()
            .map(|(seg, dead)| {
                let scan = || {
                    (0..seg.len())
                        .filter(|&o| allowed(seg, dead, o))
                        .map(|o| (o as u32, f32::INFINITY))
                        .collect()
                };
                if req.exact {
                    return scan();
                }
                let index = seg.index();
                let found: Vec<(u32, f32)> = index
                    .search(q0, c, ef, &|o| allowed(seg, dead, o))
                    .into_iter()
                    .map(|(o, s)| (o as u32, s + index.slack(q0_l1, o)))
                    .collect();
                // A selective filter can starve the graph walk (hnsw_rs may then miss allowed
                // documents): with fewer than `c` found, score every allowed document instead.
                if filter.is_some() && found.len() < c.min(seg.len()) {
                    scan()
                } else {
                    found
                }
            })
            .collect();
        let fresh = |doc, upper| Cand {
            doc,
            maxes: smallvec![f32::NEG_INFINITY; final_rq],
            score: 0.0,
            upper,
        };
        let mut cands: Vec<Cand> = mem
            .into_iter()
            .map(|d| fresh(DocRef::Mem(d), f32::INFINITY))
            .collect();
        for (si, ords) in seg_cands.iter().enumerate() {
            cands.extend(ords.iter().map(|&(o, u)| fresh(DocRef::Seg(si, o), u)));
        }
        stats.candidates = cands.len() as u64;
        stats.docs_scored = cands.len() as u64;
        stats.candidate_time = t0.elapsed();

        // Stages: extend the running maxima, keep the best.
        let t1 = Instant::now();
        let scorer = Scorer {
            q: &q,
            dim,
            kern,
            compact: score::compact::compact_kernel(),
            segs: &segs,
        };
        let plan: Vec<Stage> = req
            .stages
            .iter()
            .copied()
            .chain(std::iter::once(Stage {
                budget: req.budget,
                keep: req.k,
            }))
            .collect();
        let mut prev = Budget::new(0, 0);
        for (i, stage) in plan.iter().enumerate() {
            let b = stage.budget;
            let mut ss = StageStats {
                budget: b,
                ..Default::default()
            };
            // Returns the bytes read and, with `count_pages`, the pages touched.
            let run = |cs: &mut [Cand]| -> Result<(u64, Vec<usize>)> {
                cs.par_chunks_mut(64)
                    .map_init(Vec::new, |parts, chunk| {
                        let mut bytes = 0u64;
                        let mut pages = Vec::new();
                        if prev == Budget::new(0, 0) && b.r_c == 1 {
                            // One row per candidate: vector 0, two candidates per kernel call,
                            // the next two prefetched meanwhile.
                            for i in (0..chunk.len()).step_by(2) {
                                for next in chunk.iter().skip(i + 2).take(2) {
                                    prefetch(&scorer, next, prev, b, parts);
                                }
                                let pg = req.count_pages.then_some(&mut pages);
                                let end = (i + 2).min(chunk.len());
                                bytes += match &mut chunk[i..end] {
                                    [x, y] => start_pair(&scorer, x, y, b, parts, pg)?,
                                    [x] => extend(&scorer, x, prev, b, parts, pg)?,
                                    _ => 0,
                                };
                            }
                            return Ok((bytes, pages));
                        }
                        for i in 0..chunk.len() {
                            if let Some(next) = chunk.get(i + 1) {
                                prefetch(&scorer, next, prev, b, parts);
                            }
                            let pg = req.count_pages.then_some(&mut pages);
                            bytes += extend(&scorer, &mut chunk[i], prev, b, parts, pg)?;
                        }
                        Ok((bytes, pages))
                    })
                    .try_reduce(
                        || (0, Vec::new()),
                        |(b1, mut p1), (b2, p2)| {
                            p1.extend(p2);
                            Ok((b1 + b2, p1))
                        },
                    )
            };
            let (mut bytes, mut pages) = (0u64, Vec::new());
            let mut add = |(b, p): (u64, Vec<usize>)| {
                bytes += b;
                pages.extend(p);
            };
            let keep = stage.keep as usize;
            if i == 0 && b == Budget::new(1, 1) && req.prune && cands.len() > keep {
                // At (1,1) a score is the vector-0 dot, which the walk's score bounds. Scored
                // first: every candidate without a bound (memtable documents, scans) and the
                // `keep` best bounds; the keep-th best exact score among them is a threshold, and
                // of the rest only those whose bound reaches it are scored (identical results).
                cands.sort_by(|a, b| b.upper.total_cmp(&a.upper));
                let unbounded = cands
                    .iter()
                    .take_while(|c| c.upper == f32::INFINITY)
                    .count();
                let mut rest = cands.split_off((unbounded + keep).min(cands.len()));
                add(run(&mut cands)?);
                let mut scores: Vec<f32> = cands.iter().map(|c| c.score).collect();
                let threshold = match scores.len().checked_sub(keep) {
                    Some(nth) => *scores.select_nth_unstable_by(nth, f32::total_cmp).1,
                    None => f32::NEG_INFINITY,
                };
                let before = rest.len();
                rest.retain(|c| c.upper >= threshold);
                ss.pruned = (before - rest.len()) as u64;
                stats.pruned += ss.pruned;
                add(run(&mut rest)?);
                cands.append(&mut rest);
            } else if i > 0 && i + 1 == plan.len() && req.prune && cands.len() > k {
                // Early termination: the k best so far are scored in full first; their k-th score
                // is a threshold no pruned candidate's upper bound reaches.
                let all = cands.len();
                keep_best(&mut cands, all, &segs);
                let mut rest = cands.split_off(k);
                add(run(&mut cands)?);
                let threshold = cands.iter().map(|c| c.score).fold(f32::INFINITY, f32::min);
                let bound = Bound::new(&q, dim, prev, b);
                let before = rest.len();
                rest.retain(|c| bound.upper(c, &segs) >= threshold - 1e-4);
                ss.pruned = (before - rest.len()) as u64;
                stats.pruned += ss.pruned;
                add(run(&mut rest)?);
                cands.append(&mut rest);
            } else {
                add(run(&mut cands)?);
            }
            ss.scored = cands.len() as u64;
            if i == 0 {
                stats.docs_scored = ss.scored;
            }
            ss.dot_products =
                ss.scored * (b.r_q as u64 * b.r_c as u64 - prev.r_q as u64 * prev.r_c as u64);
            ss.vector_bytes_read = bytes;
            ss.vector_pages = distinct(pages);
            keep_best(&mut cands, stage.keep as usize, &segs);
            ss.kept = cands.len() as u64;
            stats.dot_products += ss.dot_products;
            stats.vector_bytes_read += bytes;
            stats.vector_pages += ss.vector_pages;
            stats.stages.push(ss);
            prev = b;
        }
        stats.rerank_time = t1.elapsed();

        let t2 = Instant::now();
        let hits = cands
            .iter()
            .map(|cand| {
                let (id, payload) = match &cand.doc {
                    DocRef::Mem(d) => (d.id.clone(), d.payload.clone()),
                    DocRef::Seg(si, o) => {
                        let seg = &segs[*si].0;
                        (
                            seg.ids()[*o as usize].clone(),
                            seg.payload(*o as usize).map(str::to_string),
                        )
                    }
                };
                Hit {
                    id,
                    score: cand.score,
                    payload: if req.with_payload { payload } else { None },
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
}

/// An upper bound of a candidate's score at budget `to`, from its maxima at `from` (unit
/// vectors throughout):
/// - a seen query row i gains from the new document rows at most the document's radius R (the
///   largest distance from its vector 0 to a vector `from.r_c..to.r_c`, stored per segment group):
///   `<q_i, d_j> <= <q_i, d_0> + R <= m_i + R`, so `u_i = min(1, m_i + R)`;
/// - a new query row i is within `||q_i - q_p||` of each seen row p:
///   `u_i = min(1, min_p (u_p + ||q_i - q_p||))`, and also `<q_i, d_0> + R_0` where R_0 is the
///   radius of rows `0..to.r_c` (one dot per new row: 1/r_c of the work it may save).
///
/// Memtable documents carry no radius and are never pruned (R = 2, the diameter).
struct Bound<'q> {
    q: &'q [f32],
    dim: usize,
    from: Budget,
    to: Budget,
    /// `dist[(i - from.r_q) * from.r_q + p] = ||q_i - q_p||` for new rows i and seen rows p.
    dist: Vec<f32>,
}

impl<'q> Bound<'q> {
    fn new(q: &'q [f32], dim: usize, from: Budget, to: Budget) -> Bound<'q> {
        let (fq, tq) = (from.r_q as usize, to.r_q as usize);
        let mut dist = Vec::with_capacity((tq - fq) * fq);
        for i in fq..tq {
            for p in 0..fq {
                let (a, b) = (&q[i * dim..(i + 1) * dim], &q[p * dim..(p + 1) * dim]);
                dist.push(
                    a.iter()
                        .zip(b)
                        .map(|(x, y)| (x - y) * (x - y))
                        .sum::<f32>()
                        .sqrt()
                        + 1e-5,
                );
            }
        }
        Bound {
            q,
            dim,
            from,
            to,
            dist,
        }
    }

    fn upper(&self, c: &Cand, segs: &View) -> f32 {
        let (fq, fc, tq, tc) = (
            self.from.r_q as usize,
            self.from.r_c as usize,
            self.to.r_q as usize,
            self.to.r_c as usize,
        );
        let r = if tc <= fc {
            0.0
        } else {
            match &c.doc {
                DocRef::Seg(si, o) => segs[*si].0.radius(*o as usize, fc, tc) + 1e-5,
                DocRef::Mem(_) => 2.0,
            }
        };
        let seen: Vec<f32> = c.maxes[..fq].iter().map(|m| (m + r).min(1.0)).collect();
        let mut total: f32 = seen.iter().sum();
        // For new rows also: <q_i, d_j> <= <q_i, d_0> + (radius of rows 0..to.r_c): one dot each.
        let v0 = match &c.doc {
            DocRef::Seg(si, o) => {
                let seg = &segs[*si].0;
                seg.rows(*o as usize, 0, 1)
                    .ok()
                    .map(|v| (v, seg.radius(*o as usize, 0, tc) + 1e-5))
            }
            DocRef::Mem(_) => None,
        };
        for i in fq..tq {
            let row = &self.dist[(i - fq) * fq..(i - fq + 1) * fq];
            let by_query = seen
                .iter()
                .zip(row)
                .map(|(u, d)| u + d)
                .fold(1.0f32, f32::min);
            let by_doc = v0.as_ref().map_or(1.0, |(v, r)| {
                score::dot(&self.q[i * self.dim..(i + 1) * self.dim], v) + r + 1e-5
            });
            total += by_query.min(by_doc);
        }
        total
    }
}
