//! The only memmap2 user. Invariant: metavec maps sealed files only — written once to a `.tmp` name,
//! fsynced, renamed, and never opened for writing again. Deletion unlinks the name; the mapping stays
//! valid until dropped. A process that truncates a sealed file behind metavec's back breaks this
//! contract (as it would for any mmap-based store, e.g. tantivy, lmdb).
#![allow(unsafe_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::error::{IoContext, Result};

/// Bytes of files mapped with huge pages ([`MappedFile::advise_scattered`]), process-wide.
static HUGE_MAPPED: AtomicU64 = AtomicU64::new(0);

/// The environment variable that sets [`huge_page_budget`] in bytes (0: never).
pub const HUGE_PAGE_BUDGET_ENV: &str = "METAVEC_HUGE_PAGE_BUDGET";

/// The most bytes of mapped files the process maps with huge pages: `METAVEC_HUGE_PAGE_BUDGET`,
/// or half the machine's memory (`MemTotal` in /proc/meminfo; 0 where that cannot be read).
pub fn huge_page_budget() -> u64 {
    static BUDGET: OnceLock<u64> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        if let Some(v) = std::env::var(HUGE_PAGE_BUDGET_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
        {
            return v;
        }
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let total_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        total_kib * 1024 / 2
    })
}

/// A read-only map of a sealed file.
#[derive(Debug)]
pub struct MappedFile {
    map: Option<memmap2::Mmap>,
    path: PathBuf,
    /// Bytes this map holds of [`HUGE_MAPPED`] (0: mapped with the default page size).
    huge: u64,
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
            huge: 0,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tells the kernel that reads jump around the file (the rerank between candidates, the
    /// candidate stage between graph nodes and posting lists).
    ///
    /// While the process's huge-page maps stay within [`huge_page_budget`] (the files fit in
    /// memory), the map asks for huge pages (`MADV_HUGEPAGE`): a fault reads the aligned 2 MiB
    /// around it, and on a filesystem with large folios (ext4 and xfs on Linux 6.16+) the kernel
    /// maps each 2 MiB with one TLB entry. On a 2 GB segment that took the rerank at (4,8) from
    /// 0.285 to 0.19 ms and the first pass over a cold file from 37 to 5 s (benches/README.md).
    /// Beyond the budget (files larger than memory, where a 2 MiB read per touched document
    /// would evict what the next query needs) it asks for no readahead (`MADV_RANDOM`).
    pub fn advise_scattered(&mut self) {
        let Some(m) = &self.map else { return };
        #[cfg(target_os = "linux")]
        {
            let (len, budget) = (m.len() as u64, huge_page_budget());
            let charged = HUGE_MAPPED.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + len <= budget).then_some(used + len)
            });
            if charged.is_ok() {
                self.huge = len;
                let _ = m.advise(memmap2::Advice::HugePage);
                return;
            }
        }
        let _ = m.advise(memmap2::Advice::Random);
    }

    /// Whether [`MappedFile::advise_scattered`] asked for huge pages.
    pub fn huge_pages(&self) -> bool {
        self.huge > 0
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        HUGE_MAPPED.fetch_sub(self.huge, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scattered_maps_take_huge_pages_within_the_budget_and_give_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealed");
        let len = 4usize << 20;
        std::fs::write(&path, vec![7u8; len]).unwrap();
        let mut map = MappedFile::open(&path).unwrap();
        map.advise_scattered();
        let fits = cfg!(target_os = "linux") && huge_page_budget() >= len as u64;
        assert_eq!(map.huge_pages(), fits);
        assert_eq!(map.bytes().len(), len);
        assert!(map.bytes().iter().all(|&b| b == 7));
        if fits {
            // Its bytes are charged while it lives (other tests' maps may be charged too).
            assert!(HUGE_MAPPED.load(Ordering::Relaxed) >= len as u64);
        }
        // An empty file has no map to advise.
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let mut none = MappedFile::open(&empty).unwrap();
        none.advise_scattered();
        assert!(!none.huge_pages());
    }
}
