//! HNSW over vector 0 of each document of a segment (hnsw_rs), persisted beside the segment.
//!
//! Three hnsw_rs edges are handled here:
//! - its `DistDot` asserts when two unit vectors dot to a hair above 1.0 by rounding; [`UnitDot`]
//!   clamps `1 - dot` at zero instead;
//! - it has no delete: searches take a filter of allowed ids (the segment's tombstones);
//! - a reloaded `Hnsw<'b, ..>` borrows its `HnswIo` loader: [`self_cell`] keeps both together.
//!
//! `save` dumps under a temporary basename, fsyncs, then renames to the final names, so a crash
//! never leaves half-written files under the names the manifest lists (the manifest also records
//! each file's length and crc32, checked before hnsw_rs reads them).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use anndists::dist::Distance;
use hnsw_rs::api::AnnT;
use hnsw_rs::hnsw::Hnsw;
use hnsw_rs::hnswio::HnswIo;

/// hnsw_rs's cap on layers; its examples use 16.
const MAX_LAYER: usize = 16;
const SUFFIXES: [&str; 2] = ["hnsw.graph", "hnsw.data"];

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("hnsw index {path}: {message}")]
    Io { path: PathBuf, message: String },
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

/// Distance for unit vectors: `max(0, 1 - <a, b>)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitDot;

impl Distance<f32> for UnitDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - crate::score::dot(a, b)).max(0.0)
    }
}

type Graph<'a> = Hnsw<'a, f32, UnitDot>;

self_cell::self_cell!(
    struct Loaded {
        owner: HnswIo,
        #[not_covariant]
        dependent: Graph,
    }
);

enum Inner {
    Empty,
    Built(Box<Graph<'static>>),
    Loaded(Loaded),
}

/// The vector-0 graph of one segment; data ids are document ordinals.
pub struct VectorIndex {
    inner: Inner,
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

impl VectorIndex {
    /// Builds over `vectors.len() / dim` unit vectors (row-major); data ids 0..n.
    pub fn build(vectors: &[f32], dim: usize, params: HnswParams) -> VectorIndex {
        let n = vectors.len().checked_div(dim).unwrap_or(0);
        if n == 0 {
            return VectorIndex {
                inner: Inner::Empty,
                len: 0,
                dim,
            };
        }
        let mut g: Graph<'static> = Hnsw::new(
            params.m.clamp(2, 256),
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
        VectorIndex {
            inner: Inner::Built(Box::new(g)),
            len: n,
            dim,
        }
    }

    /// File names (not paths) `save` writes for `basename`.
    pub fn file_names(basename: &str) -> Vec<String> {
        SUFFIXES.iter().map(|s| format!("{basename}.{s}")).collect()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the graph as `<basename>.hnsw.graph` and `<basename>.hnsw.data` in `dir`, atomically.
    /// Returns the paths written (none for an empty index).
    pub fn save(&self, dir: &Path, basename: &str) -> Result<Vec<PathBuf>, IndexError> {
        let tmp_base = format!("{basename}.tmp");
        let dumped = match &self.inner {
            Inner::Empty => return Ok(Vec::new()),
            Inner::Built(g) => g.file_dump(dir, &tmp_base),
            Inner::Loaded(l) => l.with_dependent(|_, g| g.file_dump(dir, &tmp_base)),
        }
        .map_err(|e| err(dir, format!("dump failed: {e}")))?;
        if dumped != tmp_base {
            return Err(err(
                dir,
                format!("hnsw_rs dumped under {dumped:?}, expected {tmp_base:?}"),
            ));
        }
        let mut out = Vec::new();
        for (tmp, fin) in Self::file_names(&tmp_base)
            .iter()
            .zip(Self::file_names(basename))
        {
            let (tmp, fin) = (dir.join(tmp), dir.join(fin));
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| err(&tmp, e.to_string()))?;
            std::fs::rename(&tmp, &fin).map_err(|e| err(&fin, e.to_string()))?;
            out.push(fin);
        }
        std::fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| err(dir, e.to_string()))?;
        Ok(out)
    }

    /// Reloads what `save` wrote; checks the dimension and the point count.
    pub fn load(
        dir: &Path,
        basename: &str,
        dim: usize,
        expected_len: usize,
    ) -> Result<VectorIndex, IndexError> {
        if expected_len == 0 {
            return Ok(VectorIndex {
                inner: Inner::Empty,
                len: 0,
                dim,
            });
        }
        let path = dir.join(format!("{basename}.hnsw.graph"));
        for name in Self::file_names(basename) {
            let p = dir.join(name);
            if !p.is_file() {
                return Err(err(&p, "file is missing"));
            }
        }
        // hnsw_rs asserts on malformed input; the manifest's crc check runs first, and a panic that
        // still happens is turned into an error rather than taking the process down.
        let loaded = catch_unwind(AssertUnwindSafe(|| {
            Loaded::try_new(HnswIo::new(dir, basename), |io| {
                io.load_hnsw_with_dist::<f32, UnitDot>(UnitDot)
            })
        }))
        .map_err(|_| err(&path, "hnsw_rs panicked while reading the graph"))?
        .map_err(|e| err(&path, format!("cannot reload: {e}")))?;
        let (n, d) = loaded.with_dependent(|_, g| {
            (
                g.get_nb_point(),
                g.get_point_indexation().get_data_dimension(),
            )
        });
        if n != expected_len || d != dim {
            return Err(err(
                &path,
                format!("graph holds {n} points of dim {d}, expected {expected_len} of dim {dim}"),
            ));
        }
        let mut loaded = loaded;
        loaded.with_dependent_mut(|_, g| g.set_searching_mode(true));
        Ok(VectorIndex {
            inner: Inner::Loaded(loaded),
            len: n,
            dim,
        })
    }

    /// Top-`k` ids by dot product with `query`, best first, as (id, dot). Only ids with
    /// `allow(id)` are returned. `ef` is raised to at least `k`.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        allow: &(dyn Fn(usize) -> bool + Sync),
    ) -> Vec<(usize, f32)> {
        if k == 0 || self.len == 0 || query.len() != self.dim {
            return Vec::new();
        }
        let k = k.min(self.len);
        let ef = ef.max(k);
        let filter = |id: &usize| allow(*id);
        let found = match &self.inner {
            Inner::Empty => return Vec::new(),
            Inner::Built(g) => g.search_filter(query, k, ef, Some(&filter)),
            Inner::Loaded(l) => {
                l.with_dependent(|_, g| g.search_filter(query, k, ef, Some(&filter)))
            }
        };
        found
            .into_iter()
            .map(|n| (n.d_id, 1.0 - n.distance))
            .collect()
    }
}

#[cfg(test)]
mod tests;
