//! Upper bounds of a candidate's score at a deeper budget, from what a cascade has already
//! computed: what lets the last stage skip candidates that cannot reach the k-th score.

use super::rerank::{Cand, DocRef};
use crate::collection::View;
use crate::config::Budget;
use crate::score;

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
pub(super) struct Bound<'q> {
    q: &'q [f32],
    dim: usize,
    from: Budget,
    to: Budget,
    /// `dist[(i - from.r_q) * from.r_q + p] = ||q_i - q_p||` for new rows i and seen rows p.
    dist: Vec<f32>,
}

impl<'q> Bound<'q> {
    pub(super) fn new(q: &'q [f32], dim: usize, from: Budget, to: Budget) -> Bound<'q> {
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

    pub(super) fn upper(&self, c: &Cand, view: &View) -> f32 {
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
                DocRef::Seg(si, o) => view.seg(*si).radius(*o as usize, fc, tc) + 1e-5,
                DocRef::Mem(_) => 2.0,
            }
        };
        let seen: Vec<f32> = c.maxes[..fq].iter().map(|m| (m + r).min(1.0)).collect();
        let mut total: f32 = seen.iter().sum();
        // For new rows also: <q_i, d_j> <= <q_i, d_0> + (radius of rows 0..to.r_c): one dot each.
        let v0 = match &c.doc {
            DocRef::Seg(si, o) => {
                let seg = &view.seg(*si);
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
