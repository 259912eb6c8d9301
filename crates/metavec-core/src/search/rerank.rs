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
    dim: usize,
    kern: score::Kernel,
    compact: score::compact::CompactKernel,
    view: &'a View,
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
        };
        match &c.doc {
            DocRef::Mem(d) => {
                (kern.update)(qs, qb - qa, dim, &d.vectors[ra * dim..rb * dim], maxes);
                bytes += (rb - ra) as u64 * mem_row_bytes;
            }
            DocRef::Seg(si, o) => {
                parts.clear();
                bytes += view.seg(*si).range(*o as usize, ra, rb, parts)?;
                for p in parts.iter() {
                    if let Some(pages) = pages.as_deref_mut() {
                        for (start, len) in p.spans() {
                            push_pages(start, len, pages);
                        }
                    }
                    p.update(&kern, &ck, qs, forms, qb - qa, dim, maxes);
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
    run_stages_with(&Scorer::new(view, req, q, dim), req, cands, stats)
}

impl<'a> Scorer<'a> {
    /// The query's forms and the kernels for a search of `req` over `view`.
    fn new(view: &'a View, req: &SearchRequest, q: &'a [f32], dim: usize) -> Scorer<'a> {
        // An exact search scores every dtype against the f32 query, as the exact scan does.
        let stores =
            |d: Dtype| !req.exact && (0..view.segments().len()).any(|si| view.seg(si).stores(d));
        Scorer {
            q,
            quant: stores(Dtype::Int8).then(|| score::compact::QuantQuery::new(q, dim)),
            bf16: stores(Dtype::Bf16).then(|| score::compact::Bf16Query::new(q)),
            dim,
            kern: score::kernel(),
            compact: score::compact::compact_kernel(),
            view,
        }
    }
}

/// [`run_stages`] with the query's forms and kernels already made.
fn run_stages_with(
    scorer: &Scorer<'_>,
    req: &SearchRequest,
    cands: &mut Vec<Cand>,
    stats: &mut SearchStats,
) -> Result<()> {
    let (view, q, dim) = (scorer.view, scorer.q, scorer.dim);
    let k = req.k as usize;
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
                    let pg = req.count_pages.then_some(&mut pages);
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
                let pg = req.count_pages.then_some(&mut pages);
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
        } else if i > 0 && i + 1 == plan.len() && req.prune && cands.len() > k {
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

/// A search at one budget whose candidates end in token-index ones ranked by approximate score
/// (`cands[fixed..]`, best first). The first `fixed` and the best [`PROGRESSIVE_FIRST`] (at least
/// `k`) of the ranked are scored. The (approximate, exact) score pairs seen give a least-squares
/// line, raised by the largest residual above it: the exact score a candidate of a given
/// approximate score may be expected to reach. The ranked candidates are then read on
/// [`PROGRESSIVE_BATCH`] at a time (each batch refitting the line) while the next one's expected
/// reach still meets the k-th exact score. How far down the approximate order the rerank reads
/// thus follows how well that order ranks: where the codes are fine the pairs lie close to the
/// line and it ends soon after the first batch; where they are coarse (a small segment of a large
/// collection) or the budget is much deeper than the index, the residuals are wide and it reads
/// on, up to every candidate. A heuristic, not a bound: recall is measured (benches/README.md).
/// Leaves the best `k` sorted best first; `stats` holds one stage, the sum of the batches'.
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
    // Every candidate of a batch keeps its exact score (the residuals need them all); the
    // query's forms are made once for all batches.
    let scorer = Scorer::new(view, req, q, dim);
    let mut keep_all = req.clone();
    let mut score = |batch: &mut Vec<Cand>, stats: &mut SearchStats| -> Result<u64> {
        keep_all.k = batch.len().max(1) as u32;
        run_stages_with(&scorer, &keep_all, batch, stats)?;
        Ok(stats.docs_scored)
    };
    let mut scored = score(cands, stats)?;
    // The (approximate, exact) pairs seen, and from them the highest exact score a candidate of
    // approximate score `a` may be expected to reach: a least-squares line through the pairs,
    // raised by the largest residual above it. `None`: the line does not rise with the
    // approximate score, which then says nothing (read on).
    let mut pairs: Vec<(f64, f64)> = Vec::new();
    let mut fit = |batch: &[Cand]| -> Option<(f64, f64)> {
        pairs.extend(
            batch
                .iter()
                .filter(|c| !c.approx.is_nan())
                .map(|c| (c.approx as f64, c.score as f64)),
        );
        let n = pairs.len() as f64;
        if n < 2.0 {
            return None;
        }
        let (ma, me) = pairs
            .iter()
            .fold((0.0, 0.0), |(x, y), (a, e)| (x + a / n, y + e / n));
        let (cov, var) = pairs.iter().fold((0.0, 0.0), |(c, v), (a, e)| {
            (c + (a - ma) * (e - me), v + (a - ma) * (a - ma))
        });
        if cov <= 0.0 || var <= 0.0 {
            return None;
        }
        let slope = cov / var;
        let above = pairs
            .iter()
            .map(|(a, e)| e - (me + slope * (a - ma)))
            .fold(0.0f64, f64::max);
        Some((slope, me - slope * ma + above))
    };
    let mut reach = fit(cands);
    keep_best(cands, k, view);
    while let Some(next) = rest.first() {
        let kth = match cands.len() {
            n if n >= k => cands[k - 1].score,
            _ => f32::NEG_INFINITY,
        };
        if let Some((slope, lift)) = reach {
            if slope * next.approx as f64 + lift < kth as f64 {
                break;
            }
        }
        let tail = rest.split_off(PROGRESSIVE_BATCH.min(rest.len()));
        let mut batch = std::mem::replace(&mut rest, tail);
        scored += score(&mut batch, stats)?;
        reach = fit(&batch);
        cands.append(&mut batch);
        keep_best(cands, k, view);
    }
    stats.docs_scored = scored;
    // One stage: the sum of the batches'.
    let parts = stats.stages.split_off(before);
    if let Some(head) = parts.first() {
        let mut one = head.clone();
        for p in &parts[1..] {
            one.scored += p.scored;
            one.pruned += p.pruned;
            one.dot_products += p.dot_products;
            one.vector_bytes_read += p.vector_bytes_read;
            one.vector_pages += p.vector_pages;
        }
        one.kept = cands.len() as u64;
        stats.stages.push(one);
    }
    Ok(())
}
