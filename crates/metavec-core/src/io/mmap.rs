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
/// or half the memory the process may use: the machine's (`MemTotal` in /proc/meminfo) or its
/// cgroup's limit (v2 `memory.max`, v1 `memory.limit_in_bytes`) if lower; 0 where neither can be
/// read.
pub fn huge_page_budget() -> u64 {
    static BUDGET: OnceLock<u64> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        if let Some(v) = std::env::var(HUGE_PAGE_BUDGET_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
        {
            return v;
        }
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let total_kib: u64 = read("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let limit = cgroup_memory_limit(&read("/proc/self/cgroup").unwrap_or_default(), read);
        (total_kib * 1024).min(limit.unwrap_or(u64::MAX)) / 2
    })
}

/// The memory limit of the cgroup in `/proc/self/cgroup` text `cgroups` (v2 `0::/path`, v1
/// `N:memory:/path`), reading its files with `read`; `None` when there is none.
fn cgroup_memory_limit(cgroups: &str, read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    cgroups
        .lines()
        .filter_map(|line| {
            let mut f = line.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            let file = match controllers {
                "" => format!("/sys/fs/cgroup{path}/memory.max"),
                c if c.split(',').any(|c| c == "memory") => {
                    format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
                }
                _ => return None,
            };
            // "max" (v2) and v1's near-2^63 "unlimited" leave the machine's memory in charge.
            read(&file)?
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|&v| v < 1 << 62)
        })
        .min()
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

    #[test]
    fn the_cgroup_limit_bounds_the_budget_in_either_cgroup_version() {
        let files = |p: &str| match p {
            "/sys/fs/cgroup/pod/a/memory.max" => Some("4294967296\n".to_string()),
            "/sys/fs/cgroup/pod/b/memory.max" => Some("max\n".to_string()),
            "/sys/fs/cgroup/memory/box/memory.limit_in_bytes" => Some("2147483648\n".into()),
            "/sys/fs/cgroup/memory/open/memory.limit_in_bytes" => {
                Some("9223372036854771712\n".into())
            }
            _ => None,
        };
        assert_eq!(cgroup_memory_limit("0::/pod/a\n", files), Some(4 << 30));
        assert_eq!(cgroup_memory_limit("0::/pod/b\n", files), None);
        let v1 = "4:memory:/box\n3:cpuset:/\n0::/\n";
        assert_eq!(cgroup_memory_limit(v1, files), Some(2 << 30));
        assert_eq!(cgroup_memory_limit("7:cpu,memory:/open\n", files), None);
        assert_eq!(cgroup_memory_limit("", files), None);
    }
}
