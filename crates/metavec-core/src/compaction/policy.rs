//! Which segments the background compaction merges: size tiers.
//!
//! A segment's tier is `floor(log_F(live documents))` for the fanout F (4 by default). When a
//! tier holds F or more segments, F of them (the first listed, the oldest) are merged into one,
//! whose size is at least F times the tier's floor: it lands at least one tier up. A merge never
//! takes more than F: when merges lag behind ingest a tier can fill with dozens of segments,
//! and merging them all at once would be one long merge whose work is lost if the process
//! stops, while F at a time commits progress every few minutes and lowers the count steadily. A document is therefore rewritten at most once
//! per tier it climbs, `log_F(N / flush size) + 1` times in all (5 times from 4,000-document
//! flushes to 1,000,000 documents at F = 4), and each tier holds fewer than F segments between
//! merges, so the segment count stays below `(F - 1)` per tier: logarithmic in N. Merging
//! everything into one segment instead rewrites the whole collection at every merge.
//!
//! Two rules come after the tiers: segments with more than `dead_ratio` of their documents
//! deleted or overwritten are rewritten (together) to give the space back, and when more than
//! `max_segments` segments remain the smallest are merged until the cap holds.

use std::collections::BTreeMap;

/// One sealed segment as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentStat {
    pub id: u64,
    /// Documents in the segment, live or not.
    pub docs: u64,
    /// Of them, deleted or overwritten.
    pub dead: u64,
}

impl SegmentStat {
    pub fn live(&self) -> u64 {
        self.docs.saturating_sub(self.dead)
    }
}

/// The size-tiered policy's knobs (from [`crate::CollectionOptions`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TieredPolicy {
    /// Segments of one tier that trigger their merge; also the size ratio between tiers (>= 2).
    pub fanout: usize,
    /// More segments than this after the tier rule: the smallest are merged.
    pub max_segments: usize,
    /// A segment with more than this fraction of dead documents is rewritten.
    pub dead_ratio: f64,
}

impl TieredPolicy {
    fn fanout(&self) -> u64 {
        self.fanout.max(2) as u64
    }

    /// `floor(log_F(live))`, with empty segments in tier 0.
    pub fn tier(&self, live: u64) -> u32 {
        let f = self.fanout();
        let (mut x, mut t) = (live.max(1), 0);
        while x >= f {
            x /= f;
            t += 1;
        }
        t
    }

    /// The segments to merge next (ids, in the order given), or `None` when the collection is
    /// in shape.
    pub fn plan(&self, segments: &[SegmentStat]) -> Option<Vec<u64>> {
        let mut tiers: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for s in segments {
            tiers.entry(self.tier(s.live())).or_default().push(s.id);
        }
        let f = self.fanout.max(2);
        if let Some(mut ids) = tiers.into_values().find(|ids| ids.len() >= f) {
            ids.truncate(f);
            return Some(ids);
        }
        let heavy: Vec<u64> = segments
            .iter()
            .filter(|s| s.docs > 0 && s.dead as f64 / s.docs as f64 > self.dead_ratio)
            .map(|s| s.id)
            .collect();
        if !heavy.is_empty() {
            return Some(heavy);
        }
        let cap = self.max_segments.max(1);
        if segments.len() > cap {
            let mut by_size: Vec<&SegmentStat> = segments.iter().collect();
            by_size.sort_by_key(|s| (s.live(), s.id));
            let take = (segments.len() - cap + 1).max(2);
            let chosen: Vec<u64> = by_size[..take].iter().map(|s| s.id).collect();
            return Some(
                segments
                    .iter()
                    .map(|s| s.id)
                    .filter(|id| chosen.contains(id))
                    .collect(),
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(fanout: usize) -> TieredPolicy {
        TieredPolicy {
            fanout,
            max_segments: 64,
            dead_ratio: 0.3,
        }
    }

    fn stat(id: u64, docs: u64) -> SegmentStat {
        SegmentStat { id, docs, dead: 0 }
    }

    #[test]
    fn tiers_are_powers_of_the_fanout() {
        let p = policy(4);
        assert_eq!(
            [0, 1, 3, 4, 15, 16, 4095, 4096].map(|n| p.tier(n)),
            [0, 0, 0, 1, 1, 2, 5, 6]
        );
    }

    #[test]
    fn a_full_tier_merges_and_nothing_else_does() {
        let p = policy(4);
        let three = [stat(1, 1000), stat(2, 1000), stat(3, 1000)];
        assert_eq!(p.plan(&three), None);
        let four = [
            stat(7, 20_000),
            stat(1, 1000),
            stat(2, 1000),
            stat(3, 1000),
            stat(4, 1000),
        ];
        assert_eq!(p.plan(&four), Some(vec![1, 2, 3, 4]));
        // A tier that filled while merges lagged: F at a time, the oldest first.
        let lagging: Vec<SegmentStat> = (1..=10).map(|id| stat(id, 8000)).collect();
        assert_eq!(p.plan(&lagging), Some(vec![1, 2, 3, 4]));
        let rest: Vec<SegmentStat> = lagging[4..]
            .iter()
            .copied()
            .chain([stat(11, 32_000)])
            .collect();
        assert_eq!(p.plan(&rest), Some(vec![5, 6, 7, 8]));
    }

    #[test]
    fn dead_segments_are_rewritten_and_the_cap_merges_the_smallest() {
        let p = policy(4);
        let dead = [
            stat(1, 1000),
            SegmentStat {
                id: 2,
                docs: 1000,
                dead: 400,
            },
        ];
        assert_eq!(p.plan(&dead), Some(vec![2]));
        let capped = TieredPolicy {
            max_segments: 2,
            ..p
        };
        let segs = [stat(1, 100_000), stat(2, 10), stat(3, 1000)];
        assert_eq!(capped.plan(&segs), Some(vec![2, 3]));
    }

    /// Simulates a collection that only grows: flushes of `flush` documents, the policy run to
    /// a fixed point after each one. Returns (rewrites per document, most segments seen).
    fn simulate(p: &TieredPolicy, flushes: usize, flush: u64) -> (f64, usize) {
        let mut segs: Vec<SegmentStat> = Vec::new();
        let (mut next, mut rewritten, mut most) = (1u64, 0u64, 0usize);
        for _ in 0..flushes {
            segs.push(stat(next, flush));
            next += 1;
            while let Some(ids) = p.plan(&segs) {
                let docs: u64 = segs
                    .iter()
                    .filter(|s| ids.contains(&s.id))
                    .map(|s| s.live())
                    .sum();
                segs.retain(|s| !ids.contains(&s.id));
                segs.push(stat(next, docs));
                next += 1;
                rewritten += docs;
            }
            most = most.max(segs.len());
        }
        (rewritten as f64 / (flushes as u64 * flush) as f64, most)
    }

    #[test]
    fn a_million_documents_are_rewritten_a_logarithmic_number_of_times() {
        // 250 flushes of 4,000 documents: about what a 64 MiB memtable gives at 32 x 128 f32.
        let (rewrites, most) = simulate(&policy(4), 250, 4000);
        assert!(rewrites <= 4.0, "{rewrites} rewrites per document");
        assert!(most <= 3 * 5, "{most} segments");
        // Merging everything whenever there are more than 8 segments: linear, not logarithmic.
        let all = TieredPolicy {
            fanout: usize::MAX,
            max_segments: 8,
            dead_ratio: 0.3,
        };
        let (rewrites_all, _) = simulate(&all, 250, 4000);
        assert!(rewrites_all > 10.0, "{rewrites_all}");
    }

    proptest! {
        #[test]
        fn rewrites_per_document_stay_within_the_tier_bound(
            fanout in 2usize..10,
            flushes in 1usize..300,
            flush in 1u64..5000,
        ) {
            let p = policy(fanout);
            let (rewrites, most) = simulate(&p, flushes, flush);
            // Every merge lifts its documents at least one tier, and no segment passes N's tier.
            let n = flushes as u64 * flush;
            let climb = (p.tier(n) - p.tier(flush)) as f64;
            prop_assert!(rewrites <= climb, "{rewrites} rewrites, {climb} tiers to climb");
            let tiers = p.tier(n) as usize + 1;
            prop_assert!(most <= (fanout - 1) * tiers + 1, "{most} segments");
        }
    }
}
