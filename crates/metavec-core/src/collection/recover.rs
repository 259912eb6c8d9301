//! Opening a collection: the manifest's segments, checked against it, then the WAL replayed.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::{Bitset, Collection, CollectionOptions, Slot, State};
use crate::config::CollectionConfig;
use crate::error::{Error, IoContext, Result};
use crate::io::{file_crc, remove_if_exists};
use crate::manifest::{Manifest, SegmentEntry};
use crate::segment::{self, Segment};
use crate::wal::{self, Record, Wal};

impl Collection {
    /// Loads the manifest and its segments, removes unlisted files, replays the WAL.
    pub(super) fn recover(
        name: &str,
        dir: &Path,
        config: CollectionConfig,
        opts: CollectionOptions,
    ) -> Result<Collection> {
        let manifest = Manifest::load(dir)?;
        let depth = match manifest.stored_vectors {
            0 => config.doc_vectors,
            d => d.min(config.doc_vectors),
        };
        let stored = config.at_depth(depth);
        let seg_dir = Self::segments_dir(dir);
        let wal_dir = Self::wal_dir(dir);
        let mut state = State::default();
        for entry in &manifest.segments {
            let seg = open_segment(&seg_dir, entry, &stored, opts.verify_on_open)?;
            let dead = Bitset::from_words(entry.dead.clone());
            if dead.words().len() != (entry.n_docs as usize).div_ceil(64) {
                return Err(Error::corruption(
                    dir.join(crate::manifest::FILE_NAME),
                    0,
                    format!(
                        "tombstones of segment {} have the wrong length ({} words)",
                        entry.id,
                        dead.words().len()
                    ),
                ));
            }
            let mut entry = entry.clone();
            entry.dead.clear();
            state.add_segment(Slot {
                seg: Arc::new(seg),
                dead: Arc::new(dead),
                entry,
            });
        }
        remove_unlisted_segments(&seg_dir, &manifest)?;
        for gen in wal::list_generations(&wal_dir)? {
            if gen < manifest.wal_start {
                remove_if_exists(&wal::file_path(&wal_dir, gen))?;
            }
        }
        let mut last_seq = manifest.last_seq;
        let report = wal::replay_dir(&wal_dir, manifest.wal_start, config.doc_floats(), |rec| {
            last_seq = last_seq.max(rec.seq());
            match rec {
                Record::Upsert { docs, .. } => state.apply_upsert(docs),
                Record::Delete { ids, .. } => {
                    state.apply_delete(&ids);
                }
            }
            Ok(())
        })?;
        if report.records > 0 || report.truncated_bytes > 0 {
            tracing::info!(
                collection = name,
                records = report.records,
                files = report.files,
                truncated_bytes = report.truncated_bytes,
                "WAL replayed"
            );
        }
        state.next_seq = last_seq + 1;
        state.manifest_version = manifest.version;
        state.wal_start = manifest.wal_start;
        state.depth = depth;
        state.next_segment_id = manifest.next_segment_id;
        let gen = report
            .last_gen
            .map_or(manifest.wal_start, |g| g + 1)
            .max(manifest.wal_start);
        let wal = Wal::create_with(opts.storage.clone(), &wal_dir, gen, report.bytes)?;
        Ok(Collection {
            name: name.to_string(),
            config,
            dir: dir.to_path_buf(),
            opts,
            wal,
            state: RwLock::new(state),
            flush_lock: Mutex::new(()),
            merge_lock: Mutex::new(()),
            dropped: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            flush_signal: Mutex::new(None),
            compact_signal: Mutex::new(None),
            workers: Mutex::new(Vec::new()),
            latency: Mutex::default(),
            maintenance: Mutex::default(),
        })
    }
}

/// Opens a segment listed in the manifest after checking its file length and index crcs.
pub(crate) fn open_segment(
    seg_dir: &Path,
    entry: &SegmentEntry,
    cfg: &CollectionConfig,
    verify: bool,
) -> Result<Segment> {
    let path = seg_dir.join(segment::file_name(entry.id));
    let len = std::fs::metadata(&path).at(&path)?.len();
    if len != entry.file_len {
        return Err(Error::corruption(
            &path,
            len.min(entry.file_len),
            format!(
                "segment file is {len} bytes, the manifest says {}",
                entry.file_len
            ),
        ));
    }
    for f in &entry.index_files {
        let p = seg_dir.join(&f.name);
        let (crc, len) = file_crc(&p)?;
        if (crc, len) != (f.crc, f.len) {
            return Err(Error::corruption(
                &p,
                0,
                format!(
                    "index file checksum mismatch ({len} bytes, manifest says {})",
                    f.len
                ),
            ));
        }
    }
    let seg = Segment::open(seg_dir, entry.id, cfg)?;
    if seg.len() as u64 != entry.n_docs {
        return Err(Error::corruption(
            &path,
            0,
            format!(
                "segment holds {} docs, the manifest says {}",
                seg.len(),
                entry.n_docs
            ),
        ));
    }
    if verify {
        seg.verify()?;
    }
    Ok(seg)
}

/// Deletes segment and index files no manifest entry lists (left by a crashed flush) and `.tmp` files.
fn remove_unlisted_segments(seg_dir: &Path, manifest: &Manifest) -> Result<()> {
    for entry in std::fs::read_dir(seg_dir).at(seg_dir)? {
        let entry = entry.at(seg_dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let listed = segment::parse_file_name(name)
            .is_some_and(|id| manifest.segments.iter().any(|s| s.id == id));
        if !listed && (name.starts_with("seg-") || name.ends_with(".tmp")) {
            tracing::info!(file = %name, "removing a file no manifest lists");
            remove_if_exists(&entry.path())?;
        }
    }
    Ok(())
}
