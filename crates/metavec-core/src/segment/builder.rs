//! The write side of a segment: docs in, a sealed file + its HNSW graph out.

use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::config::CollectionConfig;
use crate::error::{Error, IoContext, Result};
use crate::format::{align_up, encode_preamble, FileKind, ALIGN, PREAMBLE_LEN};
use crate::index::tokens::{TokenIndex, TokenParams};
use crate::index::{HnswParams, VectorIndex};
use crate::io::{file_crc, tmp_path, RealFs, Storage, StorageWriter};

use super::{GroupMeta, SegmentMeta, BLOCK_TARGET_BYTES, FOOTER_MAGIC, HEADER_LEN};

/// A document as the builder reads it: id, M_c * D normalised floats, payload.
pub trait DocSource: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn id(&self, i: usize) -> &str;
    /// Vectors `start..end` of document `i` as f32; the range never crosses a layout group
    /// boundary.
    fn rows(&self, i: usize, start: usize, end: usize) -> Result<Cow<'_, [f32]>>;
    fn payload(&self, i: usize) -> Option<&str>;
}

/// What a build wrote: the segment file, and every index file with its crc and length.
#[derive(Debug, Clone)]
pub struct BuiltSegment {
    pub id: u64,
    pub path: PathBuf,
    pub file_len: u64,
    pub n_docs: u64,
    pub index_files: Vec<(String, u64, u32)>,
}

/// Writes segment `id` of `docs` into `dir` (atomically: tmp, fsync, rename, dir fsync) and builds,
/// persists and checksums its HNSW graph over vector 0.
pub fn build_segment(
    dir: &Path,
    id: u64,
    cfg: &CollectionConfig,
    docs: &dyn DocSource,
) -> Result<BuiltSegment> {
    build_segment_with(&RealFs, dir, id, cfg, docs)
}

/// [`build_segment`] writing the segment file through `storage`. On failure every file of the
/// segment (temporary or final: the segment file, its graph files) is removed again, so a failed
/// build leaves nothing behind for a later one to trip over.
pub fn build_segment_with(
    storage: &dyn Storage,
    dir: &Path,
    id: u64,
    cfg: &CollectionConfig,
    docs: &dyn DocSource,
) -> Result<BuiltSegment> {
    let path = dir.join(super::file_name(id));
    let started = std::time::Instant::now();
    let file_len = match write_segment_file(storage, &path, id, cfg, docs) {
        Ok(len) => len,
        Err(e) => {
            let _ = storage.remove(&tmp_path(&path));
            return Err(e);
        }
    };
    tracing::debug!(
        segment = id,
        docs = docs.len(),
        ms = started.elapsed().as_millis() as u64,
        "segment file written"
    );
    build_index(storage, dir, id, cfg, docs, path.clone(), file_len).inspect_err(|_| {
        let basename = super::index_basename(id);
        let mut graph = VectorIndex::file_names(&basename);
        graph.push(TokenIndex::file_name(&basename));
        for p in std::iter::once(path).chain(graph.iter().map(|n| dir.join(n))) {
            if let Err(e) = storage.remove(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %p.display(), error = %e, "could not remove a half-made segment's file; it goes at next open");
                }
            }
        }
    })
}

/// The HNSW half of [`build_segment_with`], once the segment file is in place.
fn build_index(
    storage: &dyn Storage,
    dir: &Path,
    id: u64,
    cfg: &CollectionConfig,
    docs: &dyn DocSource,
    path: PathBuf,
    file_len: u64,
) -> Result<BuiltSegment> {
    let dim = cfg.dim as usize;
    let mut v0 = Vec::with_capacity(docs.len() * dim);
    for i in 0..docs.len() {
        v0.extend_from_slice(&docs.rows(i, 0, 1)?);
    }
    let params = HnswParams {
        m: cfg.hnsw.m as usize,
        ef_construction: cfg.hnsw.ef_construction as usize,
    };
    let started = std::time::Instant::now();
    let index = crate::background::install(|| VectorIndex::build(&v0, dim, params));
    let basename = super::index_basename(id);
    let mut written = index.save_with(storage, dir, &basename)?;
    drop(index);
    tracing::debug!(
        segment = id,
        ms = started.elapsed().as_millis() as u64,
        "graph built"
    );
    let started = std::time::Instant::now();
    let nv = cfg.token_vectors() as usize;
    if nv > 0 && !docs.is_empty() {
        let mut params = TokenParams::new(nv);
        params.centroids = cfg.candidates.centroids as usize;
        params.seed ^= id;
        let n = docs.len();
        let bounds = cfg.group_bounds();
        let fetch = |range: std::ops::Range<usize>, out: &mut Vec<f32>| {
            range
                .into_iter()
                .try_for_each(|i| token_rows(docs, &bounds, nv, i, out))
        };
        let tokens = crate::background::install(|| TokenIndex::build_with(dim, n, params, &fetch))?;
        written.push(tokens.save_with(storage, dir, &basename)?);
        tracing::debug!(
            segment = id,
            ms = started.elapsed().as_millis() as u64,
            "token index built"
        );
    }
    let mut index_files = Vec::new();
    for p in written {
        let (crc, len) = file_crc(&p)?;
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        index_files.push((name, len, crc));
    }
    Ok(BuiltSegment {
        id,
        path,
        file_len,
        n_docs: docs.len() as u64,
        index_files,
    })
}

/// Appends the first `nv` vectors of document `i` to `out`, read group by group (a read never
/// crosses a layout group; `bounds` are the groups' ends).
fn token_rows(
    docs: &dyn DocSource,
    bounds: &[u32],
    nv: usize,
    i: usize,
    out: &mut Vec<f32>,
) -> Result<()> {
    let mut start = 0usize;
    for &end in bounds {
        if start >= nv {
            break;
        }
        let end = (end as usize).min(nv);
        out.extend_from_slice(&docs.rows(i, start, end)?);
        start = end;
    }
    Ok(())
}

fn write_segment_file(
    storage: &dyn Storage,
    path: &Path,
    id: u64,
    cfg: &CollectionConfig,
    docs: &dyn DocSource,
) -> Result<u64> {
    let dim = cfg.dim as usize;
    let n = docs.len();
    let tmp = tmp_path(path);
    let file = storage.create(&tmp).at(&tmp)?;
    // Writes of several MiB leave the page cache in 2 MiB folios (on a filesystem with large
    // folios), which the reader's huge-page map then maps whole (io::MappedFile).
    let mut w = BufWriter::with_capacity(8 << 20, StorageWriter(&*file));
    let bounds = cfg.group_bounds();

    let mut header = Vec::with_capacity(HEADER_LEN);
    header.push(cfg.dtype.code());
    header.extend_from_slice(&[0u8; 3]);
    header.extend_from_slice(&cfg.dim.to_le_bytes());
    header.extend_from_slice(&cfg.doc_vectors.to_le_bytes());
    header.extend_from_slice(&(bounds.len() as u32).to_le_bytes());
    header.extend_from_slice(&(n as u64).to_le_bytes());
    header.extend_from_slice(&id.to_le_bytes());
    debug_assert_eq!(header.len(), HEADER_LEN);
    let pre = encode_preamble(FileKind::Segment, 0, &header);
    debug_assert_eq!(pre.len(), PREAMBLE_LEN + HEADER_LEN);
    w.write_all(&pre).at(&tmp)?;
    let mut pos = pre.len() as u64;

    let mut groups = Vec::with_capacity(bounds.len());
    let mut start = 0u32;
    for &end in &bounds {
        let width = (end - start) as usize;
        let dtype = cfg.dtype.of_group(start);
        let doc_bytes = width * dtype.row_bytes(dim);
        let docs_per_block = (BLOCK_TARGET_BYTES / doc_bytes.max(1)).max(1);
        pad_to(&mut w, &mut pos, &tmp)?;
        let offset = pos;
        let mut block_crcs = Vec::with_capacity(n.div_ceil(docs_per_block));
        let mut crc = crc32fast::Hasher::new();
        let mut radii = Vec::with_capacity(n);
        let mut enc = Vec::with_capacity(doc_bytes);
        let mut stored = Vec::new();
        for i in 0..n {
            let v = docs.rows(i, start as usize, end as usize)?;
            let v0 = docs.rows(i, 0, 1)?;
            enc.clear();
            crate::score::encode_rows(dtype, &v, dim, &mut enc);
            debug_assert_eq!(enc.len(), doc_bytes);
            // Radii bound what a search will compute, so they are taken on the stored values.
            let v: &[f32] = if dtype == crate::config::Dtype::F32 {
                &v
            } else {
                stored.clear();
                let rows = crate::score::Rows::of_slot(dtype, &enc, dim, width, 0, width);
                rows.decode_into(dim, &mut stored);
                &stored
            };
            radii.push(
                v.chunks_exact(dim)
                    .map(|r| {
                        r.iter()
                            .zip(v0.iter())
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum::<f32>()
                            .sqrt()
                    })
                    .fold(0.0f32, f32::max),
            );
            crc.update(&enc);
            w.write_all(&enc).at(&tmp)?;
            if (i + 1) % docs_per_block == 0 || i + 1 == n {
                block_crcs.push(std::mem::take(&mut crc).finalize());
            }
        }
        let len = (n * doc_bytes) as u64;
        pos += len;
        groups.push(GroupMeta {
            start,
            width: width as u32,
            offset,
            len,
            docs_per_block: docs_per_block as u32,
            block_crcs,
            radii,
        });
        start = end;
    }

    let meta = SegmentMeta {
        segment_id: id,
        dim: cfg.dim,
        doc_vectors: cfg.doc_vectors,
        dtype: cfg.dtype.code(),
        groups,
        ids: (0..n).map(|i| docs.id(i).to_string()).collect(),
        payloads: (0..n)
            .map(|i| docs.payload(i).map(str::to_string))
            .collect(),
    };
    let meta_bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&meta).map_err(|e| {
        Error::io(
            &tmp,
            std::io::Error::other(format!("encoding segment metadata: {e}")),
        )
    })?;
    pad_to(&mut w, &mut pos, &tmp)?;
    let meta_offset = pos;
    w.write_all(&meta_bytes).at(&tmp)?;
    pos += meta_bytes.len() as u64;

    let mut footer = Vec::with_capacity(super::FOOTER_LEN);
    footer.extend_from_slice(&meta_offset.to_le_bytes());
    footer.extend_from_slice(&(meta_bytes.len() as u64).to_le_bytes());
    footer.extend_from_slice(&crc32fast::hash(&meta_bytes).to_le_bytes());
    footer.extend_from_slice(&[0u8; 4]);
    footer.extend_from_slice(&FOOTER_MAGIC);
    w.write_all(&footer).at(&tmp)?;
    pos += footer.len() as u64;

    w.flush().at(&tmp)?;
    drop(w);
    file.sync_data().at(&tmp)?;
    drop(file);
    storage.rename(&tmp, path).at(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    storage.sync_dir(dir).at(dir)?;
    Ok(pos)
}

fn pad_to(w: &mut impl Write, pos: &mut u64, path: &Path) -> Result<()> {
    let aligned = align_up(*pos);
    let pad = (aligned - *pos) as usize;
    if pad > 0 {
        w.write_all(&[0u8; ALIGN][..pad]).at(path)?;
        *pos = aligned;
    }
    Ok(())
}
