//! The manifest: the one commit point of a collection's sealed state.
//!
//! `MANIFEST` = preamble (kind "MANI") whose header is an rkyv [`Manifest`]; the preamble's crc
//! covers it. Replaced atomically (tmp, fsync, rename, dir fsync). Everything on disk that the
//! manifest does not list (segment files of a crashed flush, WAL generations below `wal_start`)
//! is garbage and is removed at open.

use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::format::{decode_preamble, encode_preamble, FileKind};
use crate::io::write_file_atomic;

pub const FILE_NAME: &str = "MANIFEST";

/// A file the manifest vouches for, with its length and crc32.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FileCheck {
    pub name: String,
    pub len: u64,
    pub crc: u32,
}

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SegmentEntry {
    pub id: u64,
    pub n_docs: u64,
    pub file_len: u64,
    /// The HNSW files, checked in full at open (they are read in full anyway).
    pub index_files: Vec<FileCheck>,
    /// Tombstones: bit `ord` set = document `ord` is deleted or overwritten.
    pub dead: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Manifest {
    /// Incremented on every commit.
    pub version: u64,
    pub next_segment_id: u64,
    /// First WAL generation not covered by the segments.
    pub wal_start: u64,
    /// Highest WAL sequence number written before the last commit.
    pub last_seq: u64,
    pub segments: Vec<SegmentEntry>,
    /// Vectors per document kept in sealed segments; 0 = all M_c. Set by a shrink-to-budget
    /// compaction to one of the trained r_c boundaries.
    pub stored_vectors: u32,
}

impl Manifest {
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(FILE_NAME);
        let bytes = std::fs::read(&path).at(&path)?;
        Self::decode(&bytes, &path)
    }

    pub fn decode(bytes: &[u8], path: &Path) -> Result<Manifest> {
        let (_, header) = decode_preamble(bytes, FileKind::Manifest, path)?;
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(header.len());
        aligned.extend_from_slice(header);
        rkyv::from_bytes::<Manifest, rkyv::rancor::Error>(&aligned)
            .map_err(|e| Error::corruption(path, 32, format!("manifest does not validate: {e}")))
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain owned data cannot fail except on allocation failure.
        let body = rkyv::to_bytes::<rkyv::rancor::Error>(self).expect("manifest serialises");
        encode_preamble(FileKind::Manifest, 0, &body)
    }

    pub fn store(&self, dir: &Path) -> Result<()> {
        write_file_atomic(&dir.join(FILE_NAME), &self.encode())
    }

    /// [`Manifest::store`] through `storage` (the collection's storage seam).
    pub fn store_with(&self, storage: &dyn crate::io::Storage, dir: &Path) -> Result<()> {
        crate::io::write_file_atomic_with(storage, &dir.join(FILE_NAME), &self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_flip() {
        let m = Manifest {
            version: 3,
            next_segment_id: 9,
            wal_start: 4,
            last_seq: 100,
            segments: vec![SegmentEntry {
                id: 2,
                n_docs: 10,
                file_len: 4096,
                index_files: vec![FileCheck {
                    name: "seg.hnsw.graph".into(),
                    len: 7,
                    crc: 1,
                }],
                dead: vec![5],
            }],
            stored_vectors: 8,
        };
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes, Path::new("M")).unwrap(), m);
        for i in (0..bytes.len()).filter(|i| !(28..32).contains(i)) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(
                Manifest::decode(&bad, Path::new("M")).is_err(),
                "flip at {i}"
            );
        }
    }
}
