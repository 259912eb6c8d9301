use std::path::{Path, PathBuf};
use std::sync::Arc;

use metavec_core::synth::{generate, SynthData, SynthSpec};
use metavec_core::{
    Collection, CollectionConfig, CollectionOptions, Document, Engine, EngineOptions,
};

pub fn engine_with(dir: &Path, memtable_max_bytes: usize) -> Engine {
    Engine::open(
        dir,
        EngineOptions {
            collection: CollectionOptions {
                memtable_max_bytes,
                ..Default::default()
            },
        },
    )
    .unwrap()
}

pub fn ladder(cfg: &CollectionConfig) -> Vec<(u32, u32)> {
    cfg.budgets.iter().map(|b| (b.r_q, b.r_c)).collect()
}

/// Synthetic data shaped for `cfg`.
pub fn synth(cfg: &CollectionConfig, docs: usize, queries: usize, seed: u64) -> SynthData {
    generate(&SynthSpec::new(
        docs,
        queries,
        cfg.dim as usize,
        &ladder(cfg),
        seed,
    ))
}

/// Upserts `range` of the synthetic docs in batches.
pub fn load(coll: &Arc<Collection>, data: &SynthData, range: std::ops::Range<usize>, batch: usize) {
    let ids: Vec<usize> = range.collect();
    for chunk in ids.chunks(batch) {
        let docs = chunk
            .iter()
            .map(|&i| Document::new(SynthData::id(i), data.doc(i).to_vec()))
            .collect();
        coll.upsert(docs).unwrap();
    }
}

/// Fraction of `truth`'s ids found in `got`.
pub fn recall(got: &[String], truth: &[String]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    truth.iter().filter(|t| got.contains(t)).count() as f64 / truth.len() as f64
}

/// The directory of collection `name` in the data directory `data`: `collections/<name>.<gen>`
/// (or `collections/<name>` for a collection created before directory generations).
pub fn collection_dir(data: &Path, name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(data.join("collections"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n == name
                || n.strip_prefix(name)
                    .and_then(|r| r.strip_prefix('.'))
                    .is_some_and(|g| g.parse::<u64>().is_ok())
        })
        .collect();
    assert_eq!(found.len(), 1, "one directory for {name}: {found:?}");
    found.remove(0)
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}
