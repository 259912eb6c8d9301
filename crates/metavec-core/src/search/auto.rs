//! Auto budget: the largest trained budget whose recently measured latency fits a target.

use std::time::Duration;

use super::request::{SearchRequest, SearchResponse};
use crate::collection::Collection;
use crate::config::Budget;
use crate::error::{Error, Result};

impl Collection {
    /// Feeds the per-budget latency average that auto budget reads (plain searches only).
    pub(super) fn record_latency(&self, req: &SearchRequest, res: &SearchResponse) {
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
    pub(super) fn pick_budget(&self, req: &SearchRequest, target: Duration) -> Result<Budget> {
        let cfg = self.config();
        let n = (req.query.len() / cfg.dim as usize) as u32;
        let depth = self.stored_depth();
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
}
