//! The rerank: candidates extended stage by stage to exact MaxSim at each stage's budget over
//! the r_c prefix only (running per-query-vector maxima carry over between nested budgets).

use rayon::prelude::*;
use smallvec::SmallVec;

use super::bounds::Bound;
use super::request::{
    hit_order, SearchRequest, SearchStats, Stage, StageStats, PROGRESSIVE_BATCH, PROGRESSIVE_FIRST,
};
use crate::collection::View;
use crate::config::{Budget, Dtype};
use crate::error::Result;
use crate::score;
use crate::Document;
use std::sync::Arc;

/// Where a candidate's vectors are.
#[derive(Debug, Clone)]
pub(super) enum DocRef {
    /// Memtable or frozen-run document, shared without the state lock.
    Mem(Arc<Document>),
    /// Segment index in the view, ordinal.
    Seg(usize, u32),
}

/// A candidate with its running per-query-vector maxima (a lower bound of every deeper budget's
/// maxima, because budgets are nested prefixes).
#[derive(Debug, Clone)]
pub(super) struct Cand {
    pub(super) doc: DocRef,
    /// Inline up to 16 query vectors (MetaEmbed's M_q): no allocation per candidate.
    pub(super) maxes: SmallVec<[f32; 16]>,
    pub(super) score: f32,
    /// An upper bound of the vector-0 dot product (the graph walk's int8 score plus its slack;
    /// infinite where unknown): what lets a (1,1) stage skip candidates that cannot be kept.
    pub(super) upper: f32,
    /// The token index's approximate score (NaN for other candidates).
    pub(super) approx: f32,
}

fn cand_id<'a>(c: &'a Cand, view: &'a View) -> &'a str {
    match &c.doc {
        DocRef::Mem(d) => &d.id,
        DocRef::Seg(si, o) => view.seg(*si).doc_id(*o as usize),
    }
}

/// Keeps the best `keep` candidates, sorted best first.
fn keep_best(cands: &mut Vec<Cand>, keep: usize, view: &View) {
    // Ids (a lookup in the segment's metadata) only break ties.
    let cmp = |a: &Cand, b: &Cand| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| hit_order((a.score, cand_id(a, view)), (b.score, cand_id(b, view))))
    };
    if cands.len() > keep && keep > 0 {
        cands.select_nth_unstable_by(keep - 1, cmp);
    }
    cands.truncate(keep);
    cands.sort_by(cmp);
}

/// What every stage extension needs: the query rows, the kernel and the segment view.
struct Scorer<'a> {
    q: &'a [f32],
    /// `q` quantised for int8 rows' integer kernel; `None` in an exact search (int8 rows then
    /// meet the f32 query, as the exact scan always has) and where no segment stores int8.
    quant: Option<score::compact::QuantQuery>,
    /// `q` rounded to bf16 for bf16 rows' kernel; `None` as `quant` is.
    bf16: Option<score::compact::Bf16Query>,
    /// `bf16` in the tile layout, where the kernels score bf16 rows on tiles.
    tiles: Option<score::compact::TileQuery>,
    dim: usize,
    kern: score::Kernel,
    compact: score::compact::CompactKernel,
    view: &'a View,
}

thread_local! {
    /// The small groups' bf16 rows of one candidate, side by side for one tile call.
    static TILE_ROWS: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
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
    let (q, dim, kern, view) = (s.q, s.dim, s.kern, s.view);
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
        let forms = score::QueryForms {
            int8: s.quant.as_ref().map(|x| x.rows(dim, qa, qb)),
            bf16: s.bf16.as_ref().map(|x| x.rows(dim, qa, qb)),
            bf16_tiles: s.tiles.as_ref().map(|t| (t, qa)),
        };
        match &c.doc {
            DocRef::Mem(d) => {
                (kern.update)(qs, qb - qa, dim, &d.vectors[ra * dim..rb * dim], maxes);
                bytes += (rb - ra) as u64 * mem_row_bytes;
            }
            DocRef::Seg(si, o) => {
                parts.clear();
                bytes += view.seg(*si).range(*o as usize, ra, rb, parts)?;
                if let Some(pages) = pages.as_deref_mut() {
                    for p in parts.iter() {
                        for (start, len) in p.spans() {
                            push_pages(start, len, pages);
                        }
                    }
                }
                let update = |p: &score::Rows<'_>, maxes: &mut [f32]| {
                    p.update(&kern, &ck, qs, forms, qb - qa, dim, maxes)
                };
                // On tiles a call costs ~0.2 us however few rows it brings: the small groups'
                // bf16 rows (1, 3, 4, 8 of them) are copied side by side and scored in one call,
                // the large ones where they lie.
                let small =
                    |p: &score::Rows<'_>| matches!(p, score::Rows::Bf16(d) if d.len() < 16 * dim);
                if s.tiles.is_some() && parts.iter().filter(|p| small(p)).count() > 1 {
                    TILE_ROWS.with_borrow_mut(|merged| {
                        merged.clear();
                        for p in parts.iter() {
                            match p {
                                score::Rows::Bf16(d) if small(p) => merged.extend_from_slice(d),
                                p => update(p, maxes),
                            }
                        }
                        update(&score::Rows::Bf16(merged), maxes);
                    });
                } else {
                    parts.iter().for_each(|p| update(p, maxes));
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
                s.view.seg(*si).range(*o as usize, 0, 1, parts)?;
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

/// Candidates a rerank task scores (the unit of its parallelism).
const RERANK_CHUNK: usize = 64;

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
            if s.view.seg(*si).range(*o as usize, ra, tc, parts).is_ok() {
                parts
                    .iter()
                    .for_each(|p| p.prefetch(&s.compact, s.bf16.is_some(), s.dim));
            }
        }
    }
}

/// Runs the stages of `req` (its cascade, then its budget) over fresh `cands`, leaving the best
/// `k` sorted best first, and records what each stage did in `stats`.
pub(super) fn run_stages(
    view: &View,
    req: &SearchRequest,
    q: &[f32],
    dim: usize,
    cands: &mut Vec<Cand>,
    stats: &mut SearchStats,
) -> Result<()> {
    let plan = Plan::of(req, Budget::new(0, 0), req.budget, req.k);
    run_stages_with(&Scorer::new(view, req, q, dim), &plan, cands, stats)
}

/// What [`run_stages_with`] runs: from candidates at `start` (fresh ones at `(0, 0)`), each
/// stage in turn (the last one's `keep` is the hits kept).
struct Plan {
    start: Budget,
    stages: Vec<Stage>,
    prune: bool,
    count_pages: bool,
}

impl Plan {
    /// `req`'s cascade stages (when it starts from scratch), then `budget` keeping `keep`.
    fn of(req: &SearchRequest, start: Budget, budget: Budget, keep: u32) -> Plan {
        let cascade = if start == Budget::new(0, 0) {
            &req.stages[..]
        } else {
            &[]
        };
        Plan {
            start,
            stages: cascade
                .iter()
                .copied()
                .chain(std::iter::once(Stage { budget, keep }))
                .collect(),
            prune: req.prune,
            count_pages: req.count_pages,
        }
    }
}

impl<'a> Scorer<'a> {
    /// The query's forms and the kernels for a search of `req` over `view`.
    fn new(view: &'a View, req: &SearchRequest, q: &'a [f32], dim: usize) -> Scorer<'a> {
        // An exact search scores every dtype against the f32 query, as the exact scan does.
        let stores =
            |d: Dtype| !req.exact && (0..view.segments().len()).any(|si| view.seg(si).stores(d));
        let compact = score::compact::compact_kernel();
        let bf16 = stores(Dtype::Bf16).then(|| score::compact::Bf16Query::new(q));
        let tiles = bf16
            .as_ref()
            .filter(|_| compact.bf16_tiles.is_some() && score::compact::TileQuery::fits(dim))
            .map(|b| score::compact::TileQuery::new(&b.bits, dim));
        Scorer {
            q,
            quant: stores(Dtype::Int8).then(|| score::compact::QuantQuery::new(q, dim)),
            bf16,
            tiles,
            dim,
            kern: score::kernel(),
            compact,
            view,
        }
    }
}

/// [`run_stages`] with the query's forms and kernels already made.
fn run_stages_with(
    scorer: &Scorer<'_>,
    plan: &Plan,
    cands: &mut Vec<Cand>,
    stats: &mut SearchStats,
) -> Result<()> {
    let (view, q, dim) = (scorer.view, scorer.q, scorer.dim);
    let stages = &plan.stages;
    let k = stages.last().map_or(0, |s| s.keep as usize);
    let mut prev = plan.start;
    for (i, stage) in stages.iter().enumerate() {
        let b = stage.budget;
        let mut ss = StageStats {
            budget: b,
            ..Default::default()
        };
        // Scores one chunk of candidates; returns the bytes read and, with `count_pages`, the
        // pages touched.
        let chunk_run = |parts: &mut Vec<_>, chunk: &mut [Cand]| -> Result<(u64, Vec<usize>)> {
            let mut bytes = 0u64;
            let mut pages = Vec::new();
            if prev == Budget::new(0, 0) && b.r_c == 1 {
                // One row per candidate: vector 0, two candidates per kernel call,
                // the next two prefetched meanwhile.
                for i in (0..chunk.len()).step_by(2) {
                    for next in chunk.iter().skip(i + 2).take(2) {
                        prefetch(scorer, next, prev, b, parts);
                    }
                    let pg = plan.count_pages.then_some(&mut pages);
                    let end = (i + 2).min(chunk.len());
                    bytes += match &mut chunk[i..end] {
                        [x, y] => start_pair(scorer, x, y, b, parts, pg)?,
                        [x] => extend(scorer, x, prev, b, parts, pg)?,
                        _ => 0,
                    };
                }
                return Ok((bytes, pages));
            }
            for i in 0..chunk.len() {
                if let Some(next) = chunk.get(i + 1) {
                    prefetch(scorer, next, prev, b, parts);
                }
                let pg = plan.count_pages.then_some(&mut pages);
                bytes += extend(scorer, &mut chunk[i], prev, b, parts, pg)?;
            }
            Ok((bytes, pages))
        };
        let run = |cs: &mut [Cand]| -> Result<(u64, Vec<usize>)> {
            if super::on_caller(cs.len().div_ceil(RERANK_CHUNK)) {
                return chunk_run(&mut Vec::new(), cs);
            }
            cs.par_chunks_mut(RERANK_CHUNK)
                .map_init(Vec::new, chunk_run)
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
        if i == 0 && b == Budget::new(1, 1) && plan.prune && cands.len() > keep {
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
            add(run(cands)?);
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
        } else if i > 0 && i + 1 == stages.len() && plan.prune && cands.len() > k {
            // Early termination: the k best so far are scored in full first; their k-th score
            // is a threshold no pruned candidate's upper bound reaches.
            let all = cands.len();
            keep_best(cands, all, view);
            let mut rest = cands.split_off(k);
            add(run(cands)?);
            let threshold = cands.iter().map(|c| c.score).fold(f32::INFINITY, f32::min);
            let bound = Bound::new(q, dim, prev, b);
            let before = rest.len();
            rest.retain(|c| bound.upper(c, view) >= threshold - 1e-4);
            ss.pruned = (before - rest.len()) as u64;
            stats.pruned += ss.pruned;
            add(run(&mut rest)?);
            cands.append(&mut rest);
        } else {
            add(run(cands)?);
        }
        ss.scored = cands.len() as u64;
        if i == 0 {
            stats.docs_scored = ss.scored;
        }
        ss.dot_products =
            ss.scored * (b.r_q as u64 * b.r_c as u64 - prev.r_q as u64 * prev.r_c as u64);
        ss.vector_bytes_read = bytes;
        ss.vector_pages = distinct(pages);
        keep_best(cands, stage.keep as usize, view);
        ss.kept = cands.len() as u64;
        stats.dot_products += ss.dot_products;
        stats.vector_bytes_read += bytes;
        stats.vector_pages += ss.vector_pages;
        stats.stages.push(ss);
        prev = b;
    }
    Ok(())
}

/// Budgets reading at least this many document rows are first scored, in a progressive rerank, at
/// the budget of a quarter of the rows ([`partial_budget`]).
const PARTIAL_MIN_RC: u32 = 16;
/// A progressive rerank extends to the budget at least this many candidates (and `k`), best
/// partial score first, before it trusts the line their (partial, exact) pairs fit.
const PARTIAL_MIN_EXTENDED: usize = 32;
/// Share of the largest gain seen (exact minus partial score) added to the line's reach. The
/// line is fit to the best partial scores and under-reaches further down, where documents gain
/// more from their deeper rows. On manpages-1k (bf16) at (16,64), partial (16,16), the search
/// held 0.948 of the exact top 10 with a margin of 0.25 and 0.962 with 0.5 (0.958 extending every
/// candidate), in 1.35 / 1.91 ms against 2.35 ms; on 20,000 documents of the hard profile 0.995 /
/// 0.998 (0.985) in 2.06 / 2.25 ms against 3.68 ms (2026-12-04, Intel host).
const PARTIAL_MARGIN: f64 = 0.5;
/// Candidates extended between two refits of the line.
const PARTIAL_STEP: usize = 8;

/// The budget a progressive rerank at `b` scores every candidate at first: every query row, a
/// quarter of the document rows. `None` below [`PARTIAL_MIN_RC`] rows, where one more pass costs
/// more than it saves.
fn partial_budget(b: Budget) -> Option<Budget> {
    (b.r_c >= PARTIAL_MIN_RC).then(|| Budget::new(b.r_q, b.r_c / 4))
}

/// The highest `y` a point at `x` may be expected to reach, from `(x, y)` pairs seen: their
/// least-squares line, raised by the largest residual above it and by `margin` times the largest
/// `y - x`.
#[derive(Debug, Clone, Copy)]
struct Reach {
    slope: f64,
    lift: f64,
}

impl Reach {
    /// `None` when fewer than two pairs, or the line does not rise with `x` (which then says
    /// nothing: read on).
    /// Three passes over `pairs` (sums, spread, residuals), no allocation.
    fn fit(pairs: impl Iterator<Item = (f64, f64)> + Clone, margin: f64) -> Option<Reach> {
        let (n, sx, sy) = pairs.clone().fold((0.0, 0.0, 0.0), |(n, sx, sy), (x, y)| {
            (n + 1.0, sx + x, sy + y)
        });
        if n < 2.0 {
            return None;
        }
        let (mx, my) = (sx / n, sy / n);
        let (cov, var) = pairs.clone().fold((0.0, 0.0), |(c, v), (x, y)| {
            (c + (x - mx) * (y - my), v + (x - mx) * (x - mx))
        });
        if cov <= 0.0 || var <= 0.0 {
            return None;
        }
        let slope = cov / var;
        let (above, gain) = pairs.fold((0.0f64, 0.0f64), |(a, g), (x, y)| {
            (a.max(y - (my + slope * (x - mx))), g.max(y - x))
        });
        Some(Reach {
            slope,
            lift: my - slope * mx + above + margin * gain,
        })
    }

    fn at(&self, x: f32) -> f64 {
        self.slope * x as f64 + self.lift
    }
}

/// The state of a progressive rerank: candidates scored at the budget, and (deep budgets) those
/// scored only at the partial budget so far.
struct Progress<'s, 'a> {
    scorer: &'s Scorer<'a>,
    req: &'s SearchRequest,
    partial: Option<Budget>,
    k: usize,
    /// The best `k` scored at the budget, best first.
    best: Vec<Cand>,
    /// Scored at the partial budget and not extended (yet): `score` is the partial score.
    pending: Vec<Cand>,
    /// (approximate, partial, exact) score of every candidate scored at the budget (partial =
    /// exact without a partial budget).
    exact: Vec<(f32, f32, f32)>,
    /// Candidates scored (at the first budget they met).
    scored: u64,
}

impl Progress<'_, '_> {
    fn kth(&self) -> f32 {
        match self.best.get(self.k.wrapping_sub(1)) {
            Some(c) => c.score,
            None => f32::NEG_INFINITY,
        }
    }

    /// Scores `batch` from `start` to `to`, keeping every candidate.
    fn score(
        &self,
        batch: &mut Vec<Cand>,
        start: Budget,
        to: Budget,
        stats: &mut SearchStats,
    ) -> Result<()> {
        let keep = batch.len().max(1) as u32;
        let plan = Plan::of(self.req, start, to, keep);
        run_stages_with(self.scorer, &plan, batch, stats)
    }

    /// Scores fresh candidates: at the budget, or at the partial budget and then the extensions
    /// that may reach the top k.
    fn take(&mut self, mut batch: Vec<Cand>, stats: &mut SearchStats) -> Result<()> {
        self.scored += batch.len() as u64;
        let b = self.req.budget;
        match self.partial {
            None => {
                self.score(&mut batch, Budget::new(0, 0), b, stats)?;
                self.exact
                    .extend(batch.iter().map(|c| (c.approx, c.score, c.score)));
                self.best.append(&mut batch);
                keep_best(&mut self.best, self.k, self.scorer.view);
            }
            Some(p) => {
                self.score(&mut batch, Budget::new(0, 0), p, stats)?;
                self.pending.append(&mut batch);
                self.extend(p, stats)?;
            }
        }
        Ok(())
    }

    /// The exact score a candidate of a given partial score may be expected to reach.
    fn partial_reach(&self) -> Option<Reach> {
        let pairs = self.exact.iter().map(|&(_, p, e)| (p as f64, e as f64));
        Reach::fit(pairs, PARTIAL_MARGIN)
    }

    /// Extends pending candidates from `p` to the budget, best partial score first: the first
    /// [`PARTIAL_MIN_EXTENDED`] (at least `k`), then [`PARTIAL_STEP`] at a time while their
    /// partial scores' reach meets the k-th exact score.
    fn extend(&mut self, p: Budget, stats: &mut SearchStats) -> Result<()> {
        self.pending.sort_by(|x, y| y.score.total_cmp(&x.score));
        let min = PARTIAL_MIN_EXTENDED.max(self.k);
        loop {
            let n = if self.exact.len() < min {
                (min - self.exact.len()).min(self.pending.len())
            } else {
                let (kth, reach) = (self.kth() as f64, self.partial_reach());
                self.pending
                    .iter()
                    .take(PARTIAL_STEP)
                    .take_while(|c| reach.is_none_or(|r| r.at(c.score) >= kth))
                    .count()
            };
            if n == 0 {
                return Ok(());
            }
            let mut ext: Vec<Cand> = self.pending.drain(..n).collect();
            let partials: Vec<f32> = ext.iter().map(|c| c.score).collect();
            self.score(&mut ext, p, self.req.budget, stats)?;
            self.exact.extend(
                ext.iter()
                    .zip(partials)
                    .map(|(c, part)| (c.approx, part, c.score)),
            );
            self.best.append(&mut ext);
            keep_best(&mut self.best, self.k, self.scorer.view);
        }
    }

    /// Whether a ranked candidate of approximate score `approx` may still reach the top k: the
    /// partial score it may be expected to reach (the line through the (approximate, partial)
    /// pairs seen, raised by the largest residual) meets the partial score from which an
    /// extension may reach the k-th exact score. Without a partial budget, partial = exact.
    fn may_reach(&self, approx: f32) -> bool {
        let pairs = self
            .exact
            .iter()
            .filter(|(a, _, _)| !a.is_nan())
            .map(|&(a, p, _)| (a as f64, p as f64))
            .chain(
                self.pending
                    .iter()
                    .filter(|c| !c.approx.is_nan())
                    .map(|c| (c.approx as f64, c.score as f64)),
            );
        let (Some(by_approx), Some(by_partial)) = (Reach::fit(pairs, 0.0), self.partial_reach())
        else {
            return true;
        };
        let needed = (self.kth() as f64 - by_partial.lift) / by_partial.slope;
        by_approx.at(approx) >= needed
    }
}

/// A search at one budget whose candidates end in token-index ones ranked by approximate score
/// (`cands[fixed..]`, best first). The first `fixed` and the best [`PROGRESSIVE_FIRST`] (at least
/// `k`) of the ranked are scored. The (approximate, exact) score pairs seen give a [`Reach`]: the
/// exact score a candidate of a given approximate score may be expected to reach. The ranked
/// candidates are then read on [`PROGRESSIVE_BATCH`] at a time (each batch refitting the line)
/// while the next one's expected reach still meets the k-th exact score. How far down the
/// approximate order the rerank reads thus follows how well that order ranks: where the codes are
/// fine the pairs lie close to the line and it ends soon after the first batch; where they are
/// coarse (a small segment of a large collection) or the budget is much deeper than the index,
/// the residuals are wide and it reads on, up to every candidate.
///
/// A deep budget ([`partial_budget`]) scores every candidate read at a quarter of its document
/// rows first and extends to the budget only those whose partial score may reach the top k, by
/// the same kind of line fit to (partial, exact) pairs (with a margin, [`PARTIAL_MARGIN`]); the
/// extension reuses the partial maxima, so an extended candidate costs what it would have alone.
/// Heuristics, not bounds: recall is measured (benches/README.md).
/// Leaves the best `k` sorted best first; `stats` holds one stage per budget met, each the sum of
/// its batches'.
pub(super) fn run_progressive(
    view: &View,
    req: &SearchRequest,
    q: &[f32],
    dim: usize,
    cands: &mut Vec<Cand>,
    fixed: usize,
    stats: &mut SearchStats,
) -> Result<()> {
    let k = req.k as usize;
    let first = fixed + (PROGRESSIVE_FIRST as usize).max(k);
    let mut rest = cands.split_off(first.min(cands.len()));
    let before = stats.stages.len();
    // The query's forms are made once for all batches.
    let scorer = Scorer::new(view, req, q, dim);
    let mut prog = Progress {
        scorer: &scorer,
        req,
        partial: partial_budget(req.budget),
        k,
        best: Vec::new(),
        pending: Vec::new(),
        exact: Vec::new(),
        scored: 0,
    };
    prog.take(std::mem::take(cands), stats)?;
    while let Some(next) = rest.first() {
        if !prog.may_reach(next.approx) {
            break;
        }
        let tail = rest.split_off(PROGRESSIVE_BATCH.min(rest.len()));
        let batch = std::mem::replace(&mut rest, tail);
        prog.take(batch, stats)?;
    }
    stats.docs_scored = prog.scored;
    let extended = prog.exact.len() as u64;
    *cands = prog.best;
    // One stage per budget: the sum of its batches'.
    let mut merged: Vec<StageStats> = Vec::new();
    for p in stats.stages.split_off(before) {
        match merged.iter_mut().find(|m| m.budget == p.budget) {
            Some(m) => {
                m.scored += p.scored;
                m.pruned += p.pruned;
                m.dot_products += p.dot_products;
                m.vector_bytes_read += p.vector_bytes_read;
                m.vector_pages += p.vector_pages;
            }
            None => merged.push(p),
        }
    }
    let last = merged.len().saturating_sub(1);
    for (i, m) in merged.iter_mut().enumerate() {
        m.kept = if i == last {
            cands.len() as u64
        } else {
            extended
        };
    }
    stats.stages.extend(merged);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Reach;

    #[test]
    fn reach_is_the_line_raised_by_its_largest_residual_and_the_margin() {
        // Nearly y = 2x + 1, the last point above the line.
        let pairs = [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0), (3.0, 7.5)];
        let fit = |p: &[(f64, f64)], m| Reach::fit(p.iter().copied(), m);
        let r = fit(&pairs, 0.0).unwrap();
        // Every pair is at or under the reach, and the highest residual is met exactly.
        assert!(pairs.iter().all(|&(x, y)| r.at(x as f32) >= y - 1e-9));
        assert!(pairs
            .iter()
            .any(|&(x, y)| (r.at(x as f32) - y).abs() < 1e-9));
        let m = fit(&pairs, 0.5).unwrap();
        let gain = pairs.iter().map(|(x, y)| y - x).fold(0.0f64, f64::max);
        assert!((m.at(1.0) - r.at(1.0) - 0.5 * gain).abs() < 1e-9);
        // Too few pairs, or a line that does not rise, say nothing.
        assert!(fit(&pairs[..1], 0.0).is_none());
        assert!(fit(&[(0.0, 2.0), (1.0, 1.0)], 0.0).is_none());
        assert!(fit(&[(1.0, 2.0), (1.0, 3.0)], 0.0).is_none());
    }
}
