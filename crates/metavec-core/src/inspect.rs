//! Offline inspection and verification of a data directory (of a stopped server): what
//! `metavec inspect` and `metavec verify` print. Read-only: unlike opening the engine, nothing
//! is recovered, truncated or removed.

use std::path::Path;

use serde::Serialize;

use crate::catalog::Catalog;
use crate::collection::Collection;
use crate::config::CollectionConfig;
use crate::error::{Error, Result};
use crate::io::file_crc;
use crate::manifest::Manifest;
use crate::segment::{self, Segment};
use crate::wal;

#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub vectors: String,
    pub bytes: u64,
    pub blocks: usize,
    pub docs_per_block: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct SegmentReport {
    pub id: u64,
    pub file: String,
    pub docs: u64,
    pub live_docs: u64,
    pub file_bytes: u64,
    pub index_bytes: u64,
    pub hnsw_points: usize,
    pub groups: Vec<GroupReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WalReport {
    pub file: String,
    pub generation: u64,
    pub bytes: u64,
    pub records: usize,
    pub upserted_docs: usize,
    pub deleted_ids: usize,
    /// "offset: reason" of the first bad record, if any.
    pub bad_record: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CollectionReport {
    pub name: String,
    pub config: CollectionConfig,
    pub manifest_version: u64,
    pub segments: Vec<SegmentReport>,
    pub wal: Vec<WalReport>,
    /// Problems found (verify mode: every checksum checked).
    pub problems: Vec<String>,
    /// Files the manifest does not account for: files in `segments/` it does not list, `.tmp`
    /// files, WAL generations below its `wal_start`. An interrupted flush, compaction or
    /// checkpoint leaves such files; they are not damage (verify does not fail on them), and the
    /// server removes those it wrote when it opens the collection.
    pub orphans: Vec<String>,
}

/// Inspects every collection; with `verify`, checks every checksum of every file too.
/// Problems are collected per collection instead of stopping at the first.
pub fn inspect_dir(root: &Path, verify: bool) -> Result<Vec<CollectionReport>> {
    if !root.join("catalog").is_dir() {
        return Err(Error::NotFound(format!(
            "{} is not a metavec data directory (no catalog/)",
            root.display()
        )));
    }
    let catalog = Catalog::open(&root.join("catalog"))?;
    let mut out = Vec::new();
    for (name, entry) in catalog.list()? {
        let dir = root.join("collections").join(entry.dir_name(&name));
        let mut rep = CollectionReport {
            name: name.clone(),
            config: entry.config.clone(),
            manifest_version: 0,
            segments: Vec::new(),
            wal: Vec::new(),
            problems: Vec::new(),
            orphans: Vec::new(),
        };
        match Manifest::load(&dir) {
            Ok(m) => {
                rep.manifest_version = m.version;
                let stored = match m.stored_vectors {
                    0 => entry.config.clone(),
                    d => entry.config.at_depth(d),
                };
                inspect_segments(&dir, &m, &stored, verify, &mut rep);
                inspect_wal(&dir, &m, &entry.config, &mut rep);
                find_orphans(&dir, &m, &mut rep);
            }
            Err(e) => rep.problems.push(e.to_string()),
        }
        out.push(rep);
    }
    Ok(out)
}

fn inspect_segments(
    dir: &Path,
    m: &Manifest,
    cfg: &CollectionConfig,
    verify: bool,
    rep: &mut CollectionReport,
) {
    let seg_dir = Collection::segments_dir(dir);
    for e in &m.segments {
        let file = seg_dir.join(segment::file_name(e.id));
        for f in &e.index_files {
            match file_crc(&seg_dir.join(&f.name)) {
                Ok((crc, len)) if (crc, len) == (f.crc, f.len) => {}
                Ok(_) => rep.problems.push(format!(
                    "corruption in {}: checksum or length differs from the manifest",
                    seg_dir.join(&f.name).display()
                )),
                Err(err) => rep.problems.push(err.to_string()),
            }
        }
        let seg = match Segment::open(&seg_dir, e.id, cfg) {
            Ok(s) => s,
            Err(err) => {
                rep.problems.push(err.to_string());
                continue;
            }
        };
        if verify {
            if let Err(err) = seg.verify() {
                rep.problems.push(err.to_string());
            }
        }
        let dead: u64 = e.dead.iter().map(|w| w.count_ones() as u64).sum();
        rep.segments.push(SegmentReport {
            id: e.id,
            file: file.display().to_string(),
            docs: e.n_docs,
            live_docs: e.n_docs - dead,
            file_bytes: seg.file_len(),
            index_bytes: e.index_files.iter().map(|f| f.len).sum(),
            hnsw_points: seg.index().len(),
            groups: seg
                .groups()
                .iter()
                .map(|g| GroupReport {
                    vectors: format!("{}..{}", g.start, g.start + g.width),
                    bytes: g.len,
                    blocks: g.blocks,
                    docs_per_block: g.docs_per_block,
                })
                .collect(),
        });
    }
}

fn inspect_wal(dir: &Path, m: &Manifest, cfg: &CollectionConfig, rep: &mut CollectionReport) {
    let wal_dir = Collection::wal_dir(dir);
    let gens = match wal::list_generations(&wal_dir) {
        Ok(g) => g,
        Err(e) => {
            rep.problems.push(e.to_string());
            return;
        }
    };
    for gen in gens.into_iter().filter(|&g| g >= m.wal_start) {
        let path = wal::file_path(&wal_dir, gen);
        match wal::scan_file(&path, gen, cfg.doc_floats()) {
            Ok(s) => {
                // A torn tail is what a crash leaves and recovery cuts; report it, it is not damage.
                let bad_record = s.bad.map(|(off, why)| format!("{off}: {why}"));
                rep.wal.push(WalReport {
                    file: path.display().to_string(),
                    generation: gen,
                    bytes: s.bytes,
                    records: s.records,
                    upserted_docs: s.upserted_docs,
                    deleted_ids: s.deleted_ids,
                    bad_record,
                });
            }
            Err(e) => rep.problems.push(e.to_string()),
        }
    }
}

/// Files of the collection directory `dir` that `m` does not account for (see
/// [`CollectionReport::orphans`]), sorted.
fn find_orphans(dir: &Path, m: &Manifest, rep: &mut CollectionReport) {
    let listed = |name: &str| {
        m.segments.iter().any(|e| {
            segment::file_name(e.id) == name || e.index_files.iter().any(|f| f.name == name)
        })
    };
    let mut out = Vec::new();
    scan_files(dir, |n| n.ends_with(".tmp"), &mut out, rep);
    scan_files(
        &Collection::segments_dir(dir),
        |n| !listed(n),
        &mut out,
        rep,
    );
    scan_files(
        &Collection::wal_dir(dir),
        |n| wal::parse_file_name(n).is_some_and(|g| g < m.wal_start),
        &mut out,
        rep,
    );
    out.sort();
    rep.orphans = out;
}

/// Pushes to `out` the path of every file directly in `dir` whose name `orphan` accepts.
fn scan_files(
    dir: &Path,
    orphan: impl Fn(&str) -> bool,
    out: &mut Vec<String>,
    rep: &mut CollectionReport,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            rep.problems.push(Error::io(dir, e).to_string());
            return;
        }
    };
    for e in entries.flatten() {
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir && orphan(&e.file_name().to_string_lossy()) {
            out.push(e.path().display().to_string());
        }
    }
}
