//! The exact ground truth of `metavec bench scale`, kept as documents are ingested: for every
//! query and every trained budget, the MaxSim top k over every document sent so far, from the
//! values the server stores (normalised rows; vectors 1.. through the collection's dtype).

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use metavec_core::score::compact;
use metavec_core::Dtype;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Documents per GEMM: `[Q * r_q, D] x [D, CHUNK * r_c]` (about 3 MB of scores at 50 queries x
/// 16 vectors x 32 vectors).
const CHUNK: usize = 16;

/// Rounds every value to what `dtype` can hold (bf16 and f16; f32 and int8 are sent as they
/// are), so that the f32 a client sends is already what a segment stores.
pub fn round_for(dtype: Dtype, values: &mut [f32]) {
    match dtype {
        Dtype::Bf16 => values
            .iter_mut()
            .for_each(|x| *x = half::bf16::from_f32(*x).to_f32()),
        Dtype::F16 => values
            .iter_mut()
            .for_each(|x| *x = half::f16::from_f32(*x).to_f32()),
        Dtype::F32 | Dtype::Int8 => {}
    }
}

/// What a sealed segment holds for a document sent as `values`: every row normalised as the
/// server does at ingest, vector 0 kept f32, vectors 1.. encoded with `dtype` and decoded.
/// (A document still in the memtable is scored from the normalised f32; with values already
/// rounded by [`round_for`] the two differ by the rounding of the normalisation only.)
pub fn stored(dtype: Dtype, dim: usize, values: &mut [f32]) -> Result<(), String> {
    metavec_core::document::normalize_rows(values, dim, "document").map_err(|e| e.to_string())?;
    let rest = &mut values[dim..];
    let decoded = match dtype {
        Dtype::F32 => return Ok(()),
        Dtype::Bf16 => compact::decode_bf16(&compact::encode_bf16(rest)),
        Dtype::F16 => compact::decode_f16(&compact::encode_f16(rest)),
        Dtype::Int8 => {
            let (v, s) = compact::encode_int8(rest, dim);
            compact::decode_int8(&v, &s, dim)
        }
    };
    rest.copy_from_slice(&decoded);
    Ok(())
}

/// Scores documents against a fixed query set at every budget of a ladder.
pub struct Scorer {
    /// The first `rq_max` rows of every query, normalised: `[queries * rq_max, dim]`.
    queries: Vec<f32>,
    nq: usize,
    rq_max: usize,
    rc_max: usize,
    dim: usize,
    budgets: Vec<(usize, usize)>,
}

impl Scorer {
    /// `queries`: each `M_q * dim` values (unit rows); `budgets`: (r_q, r_c), nested.
    pub fn new(
        queries: &[Vec<f32>],
        budgets: &[(usize, usize)],
        dim: usize,
    ) -> Result<Self, String> {
        let rq_max = budgets.iter().map(|b| b.0).max().unwrap_or(1);
        let rc_max = budgets.iter().map(|b| b.1).max().unwrap_or(1);
        let mut q = Vec::with_capacity(queries.len() * rq_max * dim);
        for v in queries {
            q.extend_from_slice(&v[..rq_max * dim]);
        }
        metavec_core::document::normalize_rows(&mut q, dim, "query").map_err(|e| e.to_string())?;
        Ok(Scorer {
            queries: q,
            nq: queries.len(),
            rq_max,
            rc_max,
            dim,
            budgets: budgets.to_vec(),
        })
    }

    /// Scores per document: `out[d * L + q * B + b]` is the MaxSim of query `q` at budget `b`
    /// with document `d` of `docs` (`[n, m_c, dim]`, stored values), `L = queries * budgets`.
    /// One GEMM per [`CHUNK`] documents, chunks on all threads.
    pub fn score(&self, docs: &[f32], m_c: usize) -> Vec<f32> {
        let (dim, rq, rc) = (self.dim, self.rq_max, self.rc_max);
        let per = m_c * dim;
        let nb = self.budgets.len();
        let lists = self.nq * nb;
        let a = MatRef::from_row_major_slice(&self.queries, self.nq * rq, dim);
        docs.par_chunks(CHUNK * per)
            .flat_map_iter(|chunk| {
                let n = chunk.len() / per;
                // The first r_c rows of each document, contiguous.
                let mut rows = Vec::with_capacity(n * rc * dim);
                for d in chunk.chunks_exact(per) {
                    rows.extend_from_slice(&d[..rc * dim]);
                }
                let cols = n * rc;
                let mut s = vec![0f32; self.nq * rq * cols];
                let b = MatRef::from_row_major_slice(&rows, cols, dim);
                let dst = MatMut::from_row_major_slice_mut(&mut s, self.nq * rq, cols);
                matmul(dst, Accum::Replace, a, b.transpose(), 1.0f32, Par::Seq);
                let mut out = vec![0f32; n * lists];
                // maxes[i * nb + b]: max over the first r_c(b) document rows of query row i.
                let mut maxes = vec![0f32; rq * nb];
                for d in 0..n {
                    for q in 0..self.nq {
                        for i in 0..rq {
                            let row = &s[(q * rq + i) * cols + d * rc..][..rc];
                            let mut m = f32::NEG_INFINITY;
                            let mut c = 0;
                            for (bi, &(_, r_c)) in self.budgets.iter().enumerate() {
                                while c < r_c {
                                    m = m.max(row[c]);
                                    c += 1;
                                }
                                maxes[i * nb + bi] = m;
                            }
                        }
                        for (bi, &(r_q, _)) in self.budgets.iter().enumerate() {
                            let mut sum = 0f32;
                            for i in 0..r_q {
                                sum += maxes[i * nb + bi];
                            }
                            out[d * lists + q * nb + bi] = sum;
                        }
                    }
                }
                out
            })
            .collect()
    }
}

/// The exact top `k` of every (query, budget) over the documents merged so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub k: usize,
    pub budgets: usize,
    /// `tops[q * budgets + b]`: (score, document index), best first; equal scores by the lower
    /// index (the server's order: score descending, then id ascending, ids zero-padded).
    pub tops: Vec<Vec<(f32, u32)>>,
}

impl Truth {
    pub fn new(queries: usize, budgets: usize, k: usize) -> Self {
        Truth {
            k,
            budgets,
            tops: vec![Vec::new(); queries * budgets],
        }
    }

    /// Merges the scores of documents `first..` (as [`Scorer::score`] lays them out).
    pub fn merge(&mut self, first: usize, scores: &[f32]) {
        let lists = self.tops.len();
        let k = self.k;
        self.tops.par_iter_mut().enumerate().for_each(|(l, top)| {
            for (d, row) in scores.chunks_exact(lists).enumerate() {
                insert(top, k, (row[l], (first + d) as u32));
            }
        });
    }

    /// The top list of query `q` at budget `b`.
    pub fn top(&self, q: usize, b: usize) -> &[(f32, u32)] {
        &self.tops[q * self.budgets + b]
    }
}

/// `a` ranks before `b`: a higher score, or the same score and a lower index.
fn better(a: (f32, u32), b: (f32, u32)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
}

fn insert(top: &mut Vec<(f32, u32)>, k: usize, c: (f32, u32)) {
    if top.len() == k && !top.last().is_some_and(|&last| better(c, last)) {
        return;
    }
    let at = top.iter().position(|&t| better(c, t)).unwrap_or(top.len());
    top.insert(at, c);
    top.truncate(k);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_maxsim_and_tops_break_ties_by_index() {
        let dim = 4;
        // Two queries of 2 vectors, documents of 4 vectors; budgets (1,1) and (2,4).
        let unit = |i: usize| {
            let mut v = vec![0f32; dim];
            v[i % dim] = 1.0;
            v
        };
        let q0: Vec<f32> = [unit(0), unit(1)].concat();
        let q1: Vec<f32> = [unit(2), unit(3)].concat();
        let scorer = Scorer::new(&[q0, q1], &[(1, 1), (2, 4)], dim).unwrap();
        let d0: Vec<f32> = [unit(0), unit(2), unit(2), unit(1)].concat();
        let d1: Vec<f32> = [unit(3), unit(0), unit(1), unit(2)].concat();
        let s = scorer.score(&[d0.clone(), d1, d0].concat(), 4);
        // doc 0: q0 (1,1) = 1, q0 (2,4) = 1 + 1, q1 (1,1) = 0, q1 (2,4) = 1 + 0.
        assert_eq!(&s[..4], &[1.0, 2.0, 0.0, 1.0]);
        assert_eq!(&s[4..8], &[0.0, 2.0, 0.0, 2.0]);
        let mut t = Truth::new(2, 2, 2);
        t.merge(0, &s);
        // q0 (2,4): all three score 2; the two lowest indices win.
        assert_eq!(t.top(0, 1), &[(2.0, 0), (2.0, 1)]);
        assert_eq!(t.top(0, 0), &[(1.0, 0), (1.0, 2)]);
        assert_eq!(t.top(1, 1), &[(2.0, 1), (1.0, 0)]);
    }
}
