//! The only memmap2 user. Invariant: metavec maps sealed files only — written once to a `.tmp` name,
//! fsynced, renamed, and never opened for writing again. Deletion unlinks the name; the mapping stays
//! valid until dropped. A process that truncates a sealed file behind metavec's back breaks this
//! contract (as it would for any mmap-based store, e.g. tantivy, lmdb).
#![allow(unsafe_code)]

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// A read-only map of a sealed file.
#[derive(Debug)]
pub struct MappedFile {
    map: Option<memmap2::Mmap>,
    path: PathBuf,
}

impl MappedFile {
    pub fn open(path: &Path) -> Result<MappedFile> {
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        // Mapping zero bytes fails on Linux; an empty file has nothing to map.
        let map = if len == 0 {
            None
        } else {
            // SAFETY: `Mmap::map` is unsafe because the slice it yields is only sound while nobody
            // changes or truncates the file. The map is read-only (`Mmap`, not `MmapMut`; the file
            // is opened read-only), and the file is sealed (see the module doc): written once,
            // renamed into place and never opened for writing again, so the bytes behind
            // `bytes()` stay valid and unchanged for the map's life, also after an unlink.
            Some(unsafe { memmap2::Mmap::map(&file) }.at(path)?)
        };
        Ok(MappedFile {
            map,
            path: path.to_path_buf(),
        })
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tells the kernel the access pattern is random (rerank jumps between candidates).
    pub fn advise_random(&self) {
        if let Some(m) = &self.map {
            let _ = m.advise(memmap2::Advice::Random);
        }
    }
}
