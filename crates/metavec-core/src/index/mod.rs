//! HNSW over vector 0 of each document of a segment: hnsw_rs builds it, metavec persists and
//! searches it.
//!
//! A segment's graph is the file `seg-<id>.hnsw` (kind `HNSW` 1.0, see [`walk`]):
//! the int8 copy of vector 0 and the adjacency lists exactly as the walk reads them, written by
//! metavec through its storage seam and mapped at open, so no graph structure lives on the heap
//! and hnsw_rs's own structures are dropped as soon as the graph is built. Segments written
//! before that file existed carry hnsw_rs's dump (`.hnsw.graph` + `.hnsw.data`), which is still read (checked
//! first, see below) and frozen into an owned copy.
//!
//! hnsw_rs 0.3.5 edges handled here:
//! - its `DistDot` asserts when two unit vectors dot to a hair above 1.0 by rounding, and its
//!   search asserts every distance is `>= 0`; [`UnitDot`] returns `max(0, 1 - dot)`, which is also
//!   never NaN (`f32::max` drops a NaN operand), so no input vector can trip those asserts;
//! - it has no delete, and its own search is slow (an `Arc` per candidate, a `HashMap` of visited
//!   points, and a filtered walk without early exit): searches walk a frozen copy of the graph
//!   instead ([`walk`]), made right after `build` or `load`; the hnsw_rs structure is kept only
//!   until a freshly built graph is saved;
//! - `load_hnsw_with_dist` compares the distance's full `type_name` with the one recorded in the
//!   dump: [`UnitDot`] must keep its path `metavec_core::index::UnitDot`, or graphs written before
//!   a move no longer load;
//! - on malformed input its loader does not only return errors: it panics, calls
//!   `std::process::exit(1)` (a truncated `.hnsw.data`), can attempt allocations of any size read
//!   from the file (abort), and reads a vector through a raw slice of the length in the header
//!   (out of bounds if the record is short). [`VectorIndex::load`] therefore walks both files itself
//!   first ([`check_dump`]) and only hands well-formed ones to hnsw_rs, inside `catch_unwind`;
//! - `Hnsw::new` exits the process for `max_nb_connection > 256`, and the dump stores it as a
//!   `u8`: `m` is clamped to `2..=255`. The dump also refuses any `max_layer` other than 16.
//!
//! `save` dumps under a temporary basename, fsyncs, renames to the final names and fsyncs the
//! directory, so a crash never leaves half-written files under the final names.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use anndists::dist::Distance;
use hnsw_rs::api::AnnT;
use hnsw_rs::hnsw::Hnsw;
use hnsw_rs::hnswio::HnswIo;

use crate::io::Storage;

pub mod tokens;

/// hnsw_rs's layer count; its dump refuses any other value (`NB_LAYER_MAX`).
const MAX_LAYER: usize = 16;
/// `max_nb_connection` is dumped as a `u8`.
const MAX_M: usize = 255;
const SUFFIXES: [&str; 2] = ["hnsw.graph", "hnsw.data"];

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("hnsw index {path}: {message}")]
    Io { path: PathBuf, message: String },
    /// A file-system operation of `save` failed (kept whole so that ENOSPC stays ENOSPC).
    #[error("hnsw index {path}: {source}")]
    Storage {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<IndexError> for crate::Error {
    fn from(e: IndexError) -> crate::Error {
        match e {
            IndexError::Storage { path, source } => crate::Error::io(path, source),
            IndexError::Io { path, message } => {
                crate::Error::io(path, std::io::Error::other(message))
            }
        }
    }
}

fn storage_err(path: &Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Storage {
        path: path.to_path_buf(),
        source,
    }
}

fn err(path: &Path, message: impl Into<String>) -> IndexError {
    IndexError::Io {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Build parameters.
#[derive(Debug, Clone, Copy)]
pub struct HnswParams {
    pub m: usize,
    pub ef_construction: usize,
}

/// Distance for unit vectors: `max(0, 1 - <a, b>)`; never negative, never NaN.
///
/// Its type path is recorded in every saved graph and checked on reload: do not move or rename it.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitDot;

impl Distance<f32> for UnitDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        // `score::dot` is the dispatched kernel (AVX2, or eight independent accumulators).
        (1.0 - crate::score::dot(a, b)).max(0.0)
    }
}

type Graph<'a> = Hnsw<'a, f32, UnitDot>;

/// The vector-0 graph of one segment; data ids are document ordinals. Searches walk its frozen
/// form ([`walk`]): the mapped `.hnsw` file, or an owned copy (just built, or read from a legacy
/// hnsw_rs dump).
pub struct VectorIndex {
    frozen: walk::Frozen,
    len: usize,
    dim: usize,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("len", &self.len)
            .field("dim", &self.dim)
            .finish()
    }
}

/// Copies what a search needs out of an hnsw_rs graph of `n` points (data ids `0..n`).
fn freeze(g: &Graph<'_>, n: usize, dim: usize) -> Result<walk::Frozen, String> {
    let mut vectors = vec![0f32; n * dim];
    let mut neighbours: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
    let mut seen = vec![false; n];
    for p in g.get_point_indexation() {
        let o = p.get_origin_id();
        let v = p.get_v();
        if o >= n || seen[o] || v.len() != dim {
            return Err(format!(
                "graph point with data id {o} (dim {}) does not fit {n} points of dim {dim}",
                v.len()
            ));
        }
        seen[o] = true;
        vectors[o * dim..(o + 1) * dim].copy_from_slice(v);
        // hnsw_rs keeps 16 neighbour lists per point; the point is in layers 0..=level.
        let level = p.get_point_id().0 as usize;
        neighbours[o] = p
            .get_neighborhood_id()
            .into_iter()
            .take(level + 1)
            .map(|layer| layer.into_iter().map(|nb| nb.d_id as u32).collect())
            .collect();
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(format!("graph has no point with data id {missing}"));
    }
    walk::Frozen::new(dim, vectors, &neighbours)
}

/// hnsw_rs's graph over `vectors` (data ids 0..n), in searching mode.
fn build_graph(vectors: &[f32], dim: usize, params: HnswParams) -> Graph<'static> {
    let n = vectors.len() / dim;
    let mut g: Graph<'static> = Hnsw::new(
        params.m.clamp(2, MAX_M),
        n,
        MAX_LAYER,
        params.ef_construction.max(1),
        UnitDot,
    );
    let items: Vec<(&[f32], usize)> = vectors
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| (v, i))
        .collect();
    g.parallel_insert_slice(&items);
    g.set_searching_mode(true);
    g
}

impl VectorIndex {
    fn empty(dim: usize) -> VectorIndex {
        VectorIndex {
            frozen: walk::Frozen::default(),
            len: 0,
            dim,
        }
    }

    /// Builds over `vectors.len() / dim` unit vectors (row-major); data ids 0..n. hnsw_rs's
    /// structures are dropped before this returns.
    pub fn build(vectors: &[f32], dim: usize, params: HnswParams) -> VectorIndex {
        let n = vectors.len().checked_div(dim).unwrap_or(0);
        if n == 0 {
            return Self::empty(dim);
        }
        let g = build_graph(vectors, dim, params);
        let frozen = freeze(&g, n, dim).expect("a graph just built holds data ids 0..n");
        VectorIndex {
            frozen,
            len: n,
            dim,
        }
    }

    /// File names (not paths) `save` writes for `basename`.
    pub fn file_names(basename: &str) -> Vec<String> {
        vec![walk::Frozen::file_name(basename)]
    }

    /// File names of the hnsw_rs dump that segments written before the `.hnsw` file carry.
    pub fn legacy_file_names(basename: &str) -> Vec<String> {
        SUFFIXES.iter().map(|s| format!("{basename}.{s}")).collect()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the graph (its file; in memory, mapped or owned).
    pub fn byte_len(&self) -> usize {
        if self.len == 0 {
            0
        } else {
            self.frozen.byte_len()
        }
    }

    /// Writes the graph as `<basename>.hnsw` in `dir`, atomically and fsynced. Returns the paths
    /// written (none for an empty index: `load` with `expected_len == 0` needs no file).
    pub fn save(&self, dir: &Path, basename: &str) -> crate::Result<Vec<PathBuf>> {
        self.save_with(&crate::io::RealFs, dir, basename)
    }

    /// [`VectorIndex::save`] through `storage`.
    pub fn save_with(
        &self,
        storage: &dyn Storage,
        dir: &Path,
        basename: &str,
    ) -> crate::Result<Vec<PathBuf>> {
        if self.len == 0 {
            return Ok(Vec::new());
        }
        Ok(vec![self.frozen.save_with(storage, dir, basename)?])
    }

    /// Builds a graph over `vectors` and writes it the way segments before the `.hnsw` file stored
    /// it: hnsw_rs's dump, `<basename>.hnsw.graph` and `<basename>.hnsw.data` (for compatibility
    /// tests; nothing writes this format any more).
    #[doc(hidden)]
    pub fn write_legacy_dump(
        vectors: &[f32],
        dim: usize,
        params: HnswParams,
        dir: &Path,
        basename: &str,
    ) -> Result<Vec<PathBuf>, IndexError> {
        let g = build_graph(vectors, dim, params);
        let storage = crate::io::RealFs;
        let tmp_base = format!("{basename}.tmp");
        let result = dump(&g, &storage, dir, basename, &tmp_base);
        if result.is_err() {
            for name in Self::legacy_file_names(&tmp_base) {
                let _ = storage.remove(&dir.join(name));
            }
        }
        result
    }

    /// Opens segment `basename`'s graph in `dir`: the mapped `.hnsw` file, or (older segments)
    /// hnsw_rs's dump, checked and then frozen. Checks the dimension and the point
    /// count; a malformed file is a corruption error naming it.
    pub fn load(
        dir: &Path,
        basename: &str,
        dim: usize,
        expected_len: usize,
    ) -> crate::Result<VectorIndex> {
        if expected_len == 0 {
            return Ok(Self::empty(dim));
        }
        if dir.join(walk::Frozen::file_name(basename)).exists() {
            return Ok(VectorIndex {
                frozen: walk::Frozen::open(dir, basename, dim, expected_len)?,
                len: expected_len,
                dim,
            });
        }
        let path = dir.join(format!("{basename}.hnsw.graph"));
        let frozen = Self::load_legacy(dir, basename, dim, expected_len)
            .map_err(|e| crate::Error::corruption(&path, 0, e.to_string()))?;
        Ok(VectorIndex {
            frozen,
            len: expected_len,
            dim,
        })
    }

    fn load_legacy(
        dir: &Path,
        basename: &str,
        dim: usize,
        expected_len: usize,
    ) -> Result<walk::Frozen, IndexError> {
        check_dump(dir, basename, dim, expected_len)?;
        let path = dir.join(format!("{basename}.hnsw.graph"));
        // check_dump leaves hnsw_rs nothing to choke on; should it panic anyway (an assert we did
        // not anticipate), the panic becomes an error instead of taking the process down.
        catch_unwind(AssertUnwindSafe(|| {
            let io = HnswIo::new(dir, basename);
            let g = io
                .load_hnsw_with_dist::<f32, UnitDot>(UnitDot)
                .map_err(|e| format!("cannot reload: {e}"))?;
            let (n, d) = (
                g.get_nb_point(),
                g.get_point_indexation().get_data_dimension(),
            );
            if n != expected_len || d != dim {
                return Err(format!(
                    "graph holds {n} points of dim {d}, expected {expected_len} of dim {dim}"
                ));
            }
            freeze(&g, n, dim)
        }))
        .map_err(|_| err(&path, "hnsw_rs panicked while reading the graph"))?
        .map_err(|e| err(&path, e))
    }

    /// Top-`k` ids by (approximate: the walk scores an int8 copy) dot product with `query`, best
    /// first, as (id, dot). Only ids with
    /// `allow(id)` are returned; the walk still passes through the others, so a filter never
    /// cuts the graph. `ef` (the beam) is raised to at least `k`.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        allow: &(dyn Fn(usize) -> bool + Sync),
    ) -> Vec<(usize, f32)> {
        self.frozen.search(query, k.min(self.len), ef, Some(allow))
    }

    /// The walk's (int8) dot products of each row of `query` with the vectors of `ids`, into
    /// `out` (row `i` at `out[i * ids.len()..]`).
    pub fn dots(&self, query: &[f32], ids: &[u32], out: &mut [f32]) {
        self.frozen.dots(query, ids, out)
    }

    /// A bound on how far [`search`](Self::search)'s score of `id` may be from the exact f32
    /// dot product with a unit query whose L1 norm is `query_l1` (the walk scores an int8 copy).
    pub fn slack(&self, query_l1: f32, id: usize) -> f32 {
        self.frozen.slack(query_l1, id)
    }

    /// Top-`k` ids by dot product with `query`, best first, as (id, dot), over every id.
    pub fn search_all(&self, query: &[f32], k: usize, ef: usize) -> Vec<(usize, f32)> {
        self.frozen.search(query, k.min(self.len), ef, None)
    }
}

/// hnsw_rs's dump of `g` under `tmp_base`, fsynced and renamed to `basename`'s names.
fn dump(
    g: &Graph<'_>,
    storage: &dyn Storage,
    dir: &Path,
    basename: &str,
    tmp_base: &str,
) -> Result<Vec<PathBuf>, IndexError> {
    for name in VectorIndex::legacy_file_names(tmp_base) {
        let p = dir.join(name);
        storage.before_external_write(&p).map_err(storage_err(&p))?;
    }
    // The files hnsw_rs writes, as one path for messages.
    let dump_path = dir.join(format!("{tmp_base}.hnsw.{{graph,data}}"));
    // hnsw_rs panics (rather than erring) when it cannot create the files.
    let dumped = catch_unwind(AssertUnwindSafe(|| g.file_dump(dir, tmp_base)))
        .map_err(|_| err(&dump_path, "hnsw_rs panicked while writing the graph"))?
        .map_err(|e| err(&dump_path, format!("dump failed: {e}")))?;
    if dumped != tmp_base {
        return Err(err(
            dir,
            format!("hnsw_rs dumped under {dumped:?}, expected {tmp_base:?}"),
        ));
    }
    let mut out = Vec::new();
    for (tmp, fin) in VectorIndex::legacy_file_names(tmp_base)
        .iter()
        .zip(VectorIndex::legacy_file_names(basename))
    {
        let (tmp, fin) = (dir.join(tmp), dir.join(fin));
        storage.sync_file(&tmp).map_err(storage_err(&tmp))?;
        storage.rename(&tmp, &fin).map_err(storage_err(&fin))?;
        out.push(fin);
    }
    storage.sync_dir(dir).map_err(storage_err(dir))?;
    Ok(out)
}

// hnsw_rs 0.3.5's dump format (private constants of src/hnswio.rs). Native byte order.
const MAGIC_DESCR_4: u32 = 0x002a_6779;
const MAGIC_LAYER: u32 = 0x000a_676f;
const MAGIC_POINT: u32 = 0x000a_678f;
const MAGIC_DATA: u32 = 0xa67f_0000;
/// Full dump mode (with point ids), the only one `file_dump` writes.
const DUMP_MODE_FULL: u8 = 1;
/// hnsw_rs refuses names longer than this.
const MAX_NAME: usize = 256;

/// Sequential little reader over one dump file; every read fails cleanly at end of file.
struct Reader {
    r: BufReader<File>,
}

impl Reader {
    fn open(path: &Path) -> Result<Reader, String> {
        let f = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        Ok(Reader {
            r: BufReader::with_capacity(1 << 16, f),
        })
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|e| match e.kind() {
            ErrorKind::UnexpectedEof => "file is truncated".to_string(),
            _ => format!("read failed: {e}"),
        })?;
        Ok(b)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.bytes().map(u32::from_ne_bytes)
    }

    fn i32(&mut self) -> Result<i32, String> {
        self.bytes().map(i32::from_ne_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.bytes().map(u64::from_ne_bytes)
    }

    fn usize(&mut self) -> Result<usize, String> {
        self.bytes().map(usize::from_ne_bytes)
    }

    fn f32(&mut self) -> Result<f32, String> {
        self.bytes().map(f32::from_ne_bytes)
    }

    /// A `usize` length followed by that many bytes, which must equal `want`.
    fn name(&mut self, what: &str, want: &str) -> Result<(), String> {
        let len = self.usize()?;
        if len > MAX_NAME {
            return Err(format!("{what} name of {len} bytes"));
        }
        let mut b = vec![0u8; len];
        self.r
            .read_exact(&mut b)
            .map_err(|_| "file is truncated".to_string())?;
        if b != want.as_bytes() {
            return Err(format!(
                "{what} is {:?}, expected {want:?}",
                String::from_utf8_lossy(&b)
            ));
        }
        Ok(())
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        let n = u64::try_from(n).map_err(|_| "record too large".to_string())?;
        let copied = std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink())
            .map_err(|e| format!("read failed: {e}"))?;
        if copied != n {
            return Err("file is truncated".to_string());
        }
        Ok(())
    }

    fn at_end(&mut self) -> Result<(), String> {
        let mut b = [0u8; 1];
        match self.r.read(&mut b) {
            Ok(0) => Ok(()),
            Ok(_) => Err("trailing bytes after the dump".to_string()),
            Err(e) => Err(format!("read failed: {e}")),
        }
    }
}

fn expect_magic(r: &mut Reader, want: u32, what: &str) -> Result<(), String> {
    let got = r.u32()?;
    if got != want {
        return Err(format!("bad magic {got:#010x} at {what}"));
    }
    Ok(())
}

/// Walks `<basename>.hnsw.graph` and `<basename>.hnsw.data` the way hnsw_rs's loader will, with
/// every count bounded and every reference checked, so that loader only ever sees well-formed
/// input (see the module docs for what it does otherwise). Also checks the dump is ours: distance
/// [`UnitDot`], `f32` data of `dim` floats, data ids exactly `0..expected_len`.
fn check_dump(dir: &Path, basename: &str, dim: usize, n: usize) -> Result<(), IndexError> {
    let graph_path = dir.join(format!("{basename}.hnsw.graph"));
    let data_path = dir.join(format!("{basename}.hnsw.data"));
    let order = check_graph(&graph_path, dim, n).map_err(|m| err(&graph_path, m))?;
    check_data(&data_path, dim, &order).map_err(|m| err(&data_path, m))
}

/// Returns the data ids in the order their points (and vectors) are stored.
fn check_graph(path: &Path, dim: usize, n: usize) -> Result<Vec<usize>, String> {
    let mut r = Reader::open(path)?;
    // Description.
    expect_magic(&mut r, MAGIC_DESCR_4, "the description")?;
    if r.u8()? != DUMP_MODE_FULL {
        return Err("not a full dump".into());
    }
    let _max_nb_connection = r.u8()?;
    let _level_scale = r.bytes::<8>()?;
    // Number of neighbour lists per point.
    let point_layers = r.u8()?;
    if usize::from(point_layers) != MAX_LAYER {
        return Err(format!("{point_layers} layers, expected {MAX_LAYER}"));
    }
    let _ef = r.usize()?;
    let nb_point = r.usize()?;
    let dimension = r.usize()?;
    if nb_point != n || dimension != dim {
        return Err(format!(
            "graph holds {nb_point} points of dim {dimension}, expected {n} of dim {dim}"
        ));
    }
    r.name("distance", std::any::type_name::<UnitDot>())?;
    r.name("data type", std::any::type_name::<f32>())?;
    // Point indexation: layers of points, each with its neighbour lists.
    let nb_layer = usize::from(r.u8()?);
    if nb_layer > MAX_LAYER {
        return Err(format!("{nb_layer} layers in the indexation"));
    }
    let mut layer_sizes = Vec::with_capacity(nb_layer);
    // Largest rank referenced per layer, checked once every layer's size is known.
    let mut max_rank: Vec<Option<usize>> = vec![None; nb_layer];
    let mut order = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    for l in 0..nb_layer {
        expect_magic(&mut r, MAGIC_LAYER, "a layer")?;
        let size = r.usize()?;
        if size > n - order.len() {
            return Err(format!("layer {l} claims {size} points"));
        }
        for rank in 0..size {
            expect_magic(&mut r, MAGIC_POINT, "a point")?;
            let id = r.usize()?;
            if id >= n || std::mem::replace(&mut seen[id], true) {
                return Err(format!("bad or repeated data id {id}"));
            }
            let (pl, pr) = (r.u8()?, r.i32()?);
            if usize::from(pl) != l || usize::try_from(pr).ok() != Some(rank) {
                return Err(format!("point {id} is misplaced"));
            }
            for _ in 0..point_layers {
                let count = r.usize()?;
                if count > n {
                    return Err(format!("point {id} claims {count} neighbours"));
                }
                for _ in 0..count {
                    let nid = r.usize()?;
                    let (nl, nr) = (usize::from(r.u8()?), r.i32()?);
                    let dist = r.f32()?;
                    let nr = usize::try_from(nr).map_err(|_| "negative neighbour rank")?;
                    if nid >= n || nl >= nb_layer || dist.is_nan() || dist < 0.0 {
                        return Err(format!("point {id} has a bad neighbour"));
                    }
                    max_rank[nl] = max_rank[nl].max(Some(nr));
                }
            }
            order.push(id);
        }
        layer_sizes.push(size);
    }
    if order.len() != n {
        return Err(format!("graph holds {} points, expected {n}", order.len()));
    }
    for (l, (max, size)) in max_rank.iter().zip(&layer_sizes).enumerate() {
        if max.is_some_and(|m| m >= *size) {
            return Err(format!("a neighbour lies beyond layer {l}"));
        }
    }
    // Entry point.
    let _entry_id = r.usize()?;
    let (el, er) = (usize::from(r.u8()?), r.i32()?);
    let entry_ok = usize::try_from(er)
        .ok()
        .is_some_and(|er| el < nb_layer && er < layer_sizes[el]);
    if !entry_ok {
        return Err("bad entry point".into());
    }
    r.at_end()?;
    Ok(order)
}

fn check_data(path: &Path, dim: usize, order: &[usize]) -> Result<(), String> {
    let vec_bytes = dim
        .checked_mul(std::mem::size_of::<f32>())
        .ok_or("dimension overflows")?;
    let want_len = order
        .len()
        .checked_mul(vec_bytes + 20)
        .and_then(|b| b.checked_add(12))
        .ok_or("size overflows")?;
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot stat: {e}"))?
        .len();
    if u64::try_from(want_len).ok() != Some(len) {
        return Err(format!("{len} bytes, expected {want_len}"));
    }
    let mut r = Reader::open(path)?;
    expect_magic(&mut r, MAGIC_DATA, "the data header")?;
    if r.usize()? != dim {
        return Err("data dimension differs".into());
    }
    for &id in order {
        expect_magic(&mut r, MAGIC_DATA, "a vector")?;
        if usize::try_from(r.u64()?).ok() != Some(id) {
            return Err(format!("vector for data id {id} is out of order"));
        }
        if usize::try_from(r.u64()?).ok() != Some(vec_bytes) {
            return Err(format!("vector for data id {id} has a bad length"));
        }
        r.skip(vec_bytes)?;
    }
    r.at_end()
}

#[cfg(test)]
mod tests;
mod walk;
