//! Per-collection figures for Prometheus that no request produces: sizes, WAL bytes, segment
//! counts, and the count and total duration of flushes, compactions and snapshots (background
//! ones included). Each scrape copies them from [`Engine::list_collections`] before rendering, so
//! a scrape sees every maintenance that finished before it.

use metavec_core::Engine;

/// Sets the gauges from the engine's collections (a read lock per collection; call it off the
/// async workers).
pub fn refresh(engine: &Engine) {
    for info in engine.list_collections() {
        let c = info.name.clone();
        let seg_bytes: u64 = info
            .segments
            .iter()
            .map(|s| s.file_bytes + s.index_bytes)
            .sum();
        metrics::gauge!("metavec_collection_docs", "collection" => c.clone())
            .set(info.live_docs as f64);
        metrics::gauge!("metavec_collection_memtable_docs", "collection" => c.clone())
            .set(info.memtable_docs as f64);
        metrics::gauge!("metavec_collection_segments", "collection" => c.clone())
            .set(info.segments.len() as f64);
        metrics::gauge!("metavec_collection_segment_bytes", "collection" => c.clone())
            .set(seg_bytes as f64);
        metrics::gauge!("metavec_wal_bytes", "collection" => c.clone()).set(info.wal_bytes as f64);
        let m = info.maintenance;
        for (name, n, secs) in [
            ("flush", m.flushes, m.flush_seconds),
            ("compaction", m.compactions, m.compaction_seconds),
            ("snapshot", m.snapshots, m.snapshot_seconds),
        ] {
            metrics::counter!("metavec_maintenance_total", "collection" => c.clone(), "work" => name)
                .absolute(n);
            // Counters hold integers: the total duration is exported in milliseconds.
            metrics::counter!("metavec_maintenance_milliseconds_total", "collection" => c.clone(), "work" => name)
                .absolute((secs * 1e3).round() as u64);
        }
        // Documents and bytes written by flushes and merges: (flush + compaction) / flush is the
        // write amplification of the segments.
        for (name, docs, bytes) in [
            ("flush", m.flushed_docs, m.flushed_bytes),
            ("compaction", m.compacted_docs, m.compacted_bytes),
        ] {
            metrics::counter!("metavec_maintenance_documents_total", "collection" => c.clone(), "work" => name)
                .absolute(docs);
            metrics::counter!("metavec_maintenance_bytes_total", "collection" => c.clone(), "work" => name)
                .absolute(bytes);
        }
    }
}
