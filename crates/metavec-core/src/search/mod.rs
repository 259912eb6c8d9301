//! The read path: candidates (HNSW on vector 0 per segment + a scan of the memtable) ->
//! exact MaxSim at the budget over the r_c prefix only -> top-k merged across segments.
//! `exact` scans every live document at the budget: the ground truth.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::collection::{Bitset, Collection, Run};
use crate::config::{Budget, CollectionConfig, MAX_K};
use crate::document::normalize_rows;
use crate::error::{Error, Result};
use crate::score;
use crate::segment::Segment;

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

/// What a search did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchStats {
    /// Documents proposed for rerank (HNSW candidates + memtable documents, or all in exact mode).
    pub candidates: u64,
    pub docs_scored: u64,
    /// Bytes of vectors the rerank read: sum over scored docs of r_c * D * bytes per value.
    pub vector_bytes_read: u64,
    /// Query-vector x document-vector dot products computed.
    pub dot_products: u64,
    pub segments: u32,
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

/// A scored document before the merge: where it lives and its score.
#[derive(Debug, Clone, Copy)]
struct Scored {
    score: f32,
    src: Src,
}

#[derive(Debug, Clone, Copy)]
enum Src {
    Mem(u32),
    Frozen(u32),
    Seg(usize, u32),
}

/// Validates the request and returns the normalised query rows (r_q of them).
pub fn prepare_query(req: &SearchRequest, cfg: &CollectionConfig) -> Result<Vec<f32>> {
    let dim = cfg.dim as usize;
    let b = req.budget;
    if req.query.is_empty() || req.query.len() % dim != 0 {
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
    let mut q = req.query[..b.r_q as usize * dim].to_vec();
    normalize_rows(&mut q, dim, "query")?;
    Ok(q)
}

/// Total order for results: score descending, then id ascending (stable across runs).
fn better(a: (f32, &str), b: (f32, &str)) -> Ordering {
    b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1))
}

impl Collection {
    /// Budgeted MaxSim search; see the module doc.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResponse> {
        self.check_live()?;
        let started = Instant::now();
        let cfg = self.config();
        let q = prepare_query(req, cfg)?;
        let dim = cfg.dim as usize;
        let r_q = req.budget.r_q as usize;
        let r_c = req.budget.r_c as usize;
        let k = req.k as usize;
        let c = req.candidates.unwrap_or(DEFAULT_CANDIDATES).max(req.k) as usize;
        let ef = (req.ef.unwrap_or(0) as usize).max(c);
        let kern = score::kernel();
        let row_bytes = (dim * cfg.dtype.bytes_per_value()) as u64;
        let mut stats = SearchStats::default();

        // Point-in-time view; the memtable is scored under the read lock (it is small and mutable).
        let t0 = Instant::now();
        let st = self.state.read();
        if req.budget.r_c > st.depth {
            return Err(Error::FailedPrecondition(format!(
                "budget {} needs {} vectors per document, but the collection stores only the first {} \
                 (it was compacted with keep_r_c = {})",
                req.budget, req.budget.r_c, st.depth, st.depth
            )));
        }
        let mut scored: Vec<Scored> = Vec::new();
        for (i, slot) in st.mem.slots.iter().enumerate() {
            if let Some(d) = slot {
                let s = score::maxsim(&q, r_q, dim, &[&d.vectors[..r_c * dim]]);
                scored.push(Scored {
                    score: s,
                    src: Src::Mem(i as u32),
                });
            }
        }
        let mem_scored = scored.len() as u64;
        let frozen: Option<(Arc<Run>, Arc<Bitset>)> =
            st.frozen.clone().map(|r| (r, st.frozen_dead.clone()));
        let segments: Vec<(Arc<Segment>, Arc<Bitset>)> = st
            .segments
            .iter()
            .map(|s| (s.seg.clone(), s.dead.clone()))
            .collect();
        // Results from the memtable are resolved to ids now, while the lock is held.
        top_k(&mut scored, k, |s| match s {
            Src::Mem(i) => st.mem.get(i).map_or("", |d| d.id.as_str()),
            _ => "",
        });
        let mem_hits: Vec<(f32, String, Option<String>)> = scored
            .iter()
            .filter_map(|s| match s.src {
                Src::Mem(i) => st
                    .mem
                    .get(i)
                    .map(|d| (s.score, d.id.clone(), d.payload.clone())),
                _ => None,
            })
            .collect();
        drop(st);

        let mut frozen_scored = Vec::new();
        if let Some((run, dead)) = &frozen {
            for (i, d) in run.docs.iter().enumerate() {
                if !dead.get(i) {
                    let s = score::maxsim(&q, r_q, dim, &[&d.vectors[..r_c * dim]]);
                    frozen_scored.push(Scored {
                        score: s,
                        src: Src::Frozen(i as u32),
                    });
                }
            }
        }
        let scanned = mem_scored + frozen_scored.len() as u64;
        stats.candidates += scanned;
        stats.docs_scored += scanned;
        stats.vector_bytes_read += scanned * r_c as u64 * row_bytes;
        stats.segments = segments.len() as u32;

        // Candidates per segment.
        let q0 = &q[..dim];
        let cand: Vec<Vec<u32>> = segments
            .par_iter()
            .map(|(seg, dead)| {
                if req.exact {
                    (0..seg.len() as u32)
                        .filter(|&o| !dead.get(o as usize))
                        .collect()
                } else {
                    seg.index()
                        .search(q0, c, ef, &|o| !dead.get(o))
                        .into_iter()
                        .map(|(o, _)| o as u32)
                        .collect()
                }
            })
            .collect();
        stats.candidate_time = t0.elapsed();

        // Rerank: exact MaxSim at the budget over each candidate's r_c prefix.
        let t1 = Instant::now();
        let per_seg: Vec<Result<(Vec<Scored>, u64)>> = segments
            .par_iter()
            .zip(cand.par_iter())
            .enumerate()
            .map(|(si, ((seg, _), ords))| {
                let results: Result<Vec<(Scored, u64)>> = ords
                    .par_chunks(64)
                    .map_init(
                        || (Vec::new(), vec![0f32; r_q]),
                        |(parts, maxes), chunk| {
                            let mut out = Vec::with_capacity(chunk.len());
                            for &o in chunk {
                                let bytes = seg.prefix(o as usize, r_c, parts)?;
                                maxes.iter_mut().for_each(|m| *m = f32::NEG_INFINITY);
                                for p in parts.iter() {
                                    (kern.update)(&q, r_q, dim, p, maxes);
                                }
                                out.push((
                                    Scored {
                                        score: maxes.iter().sum(),
                                        src: Src::Seg(si, o),
                                    },
                                    bytes,
                                ));
                            }
                            Ok(out)
                        },
                    )
                    .collect::<Result<Vec<Vec<_>>>>()
                    .map(|v| v.into_iter().flatten().collect());
                let results = results?;
                let bytes = results.iter().map(|(_, b)| b).sum();
                let mut scored: Vec<Scored> = results.into_iter().map(|(s, _)| s).collect();
                let ids = seg.ids();
                top_k(&mut scored, k, |s| match s {
                    Src::Seg(_, o) => ids[o as usize].as_str(),
                    _ => "",
                });
                Ok((scored, bytes))
            })
            .collect();
        let seg_scored_count: u64 = cand.iter().map(|c| c.len() as u64).sum();
        stats.candidates += seg_scored_count;
        stats.docs_scored += seg_scored_count;
        stats.rerank_time = t1.elapsed();

        // Merge.
        let t2 = Instant::now();
        let mut all: Vec<(f32, String, Option<String>)> = mem_hits;
        if let Some((run, _)) = &frozen {
            top_k(&mut frozen_scored, k, |s| match s {
                Src::Frozen(i) => run.docs[i as usize].id.as_str(),
                _ => "",
            });
            for s in &frozen_scored {
                if let Src::Frozen(i) = s.src {
                    let d = &run.docs[i as usize];
                    all.push((s.score, d.id.clone(), d.payload.clone()));
                }
            }
        }
        for r in per_seg {
            let (top, bytes) = r?;
            stats.vector_bytes_read += bytes;
            for s in top {
                if let Src::Seg(si, o) = s.src {
                    let seg = &segments[si].0;
                    all.push((
                        s.score,
                        seg.ids()[o as usize].clone(),
                        seg.payload(o as usize).map(str::to_string),
                    ));
                }
            }
        }
        all.sort_by(|a, b| better((a.0, &a.1), (b.0, &b.1)));
        all.truncate(k);
        stats.dot_products = stats.docs_scored * (r_q * r_c) as u64;
        let hits = all
            .into_iter()
            .map(|(score, id, payload)| Hit {
                id,
                score,
                payload: if req.with_payload { payload } else { None },
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

/// Keeps the best `k` of `v` (sorted best first) using `id_of` for ties.
fn top_k<'s>(v: &mut Vec<Scored>, k: usize, id_of: impl Fn(Src) -> &'s str) {
    let cmp = |a: &Scored, b: &Scored| better((a.score, id_of(a.src)), (b.score, id_of(b.src)));
    if v.len() > k {
        v.select_nth_unstable_by(k - 1, cmp);
        v.truncate(k);
    }
    v.sort_by(cmp);
}
