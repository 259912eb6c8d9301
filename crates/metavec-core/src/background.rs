//! Where maintenance runs: flushes and merges build HNSW graphs and token indexes with rayon, and
//! a parallel build is one long stream of tasks. On the global pool, a search's own parallel
//! rerank queued behind it (rayon workers drain their local queues before they look at injected
//! work), so searches stalled for the length of a build. Builds run on a pool of their own
//! instead, and every maintenance thread runs at a lower scheduling priority, so a search takes
//! the cores it needs and the builds use the rest.

//!
//! Flushes and merges have pools of their own too: a flush is on the write path (at twice the
//! memtable limit writers wait for it), a merge is not. On one shared pool a flush's build queued
//! behind a merge's for the whole merge (measured: ingest stopped for minutes while a merge of
//! 120,000 documents built its graph). Merges run further down in priority than flushes, so a
//! flush takes the cores it needs and a merge uses what is left.

use std::cell::Cell;
use std::sync::OnceLock;

/// Which maintenance pool a thread's builds go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Flushes (and anything not marked otherwise).
    Flush,
    /// Merges: compactions and shrink-to-budget.
    Merge,
}

impl Lane {
    /// How much lower than the process's priority this lane's threads run (`nice` steps).
    pub const fn nice_steps(self) -> i32 {
        match self {
            Lane::Flush => 10,
            Lane::Merge => 15,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Lane::Flush => "maintenance",
            Lane::Merge => "merge",
        }
    }
}

thread_local! {
    static LANE: Cell<Lane> = const { Cell::new(Lane::Flush) };
}

/// Runs `f` with this thread's builds sent to `lane`'s pool.
pub fn with_lane<R>(lane: Lane, f: impl FnOnce() -> R) -> R {
    let before = LANE.with(|l| l.replace(lane));
    let out = f();
    LANE.with(|l| l.set(before));
    out
}

/// Runs `f` on the calling thread's lane's maintenance pool: parallel iterators inside it use that
/// pool's threads, not the global pool searches use. Falls back to the calling thread if the pool
/// cannot start.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match pool(LANE.with(Cell::get)) {
        Some(p) => p.install(f),
        None => f(),
    }
}

fn pool(lane: Lane) -> Option<&'static rayon::ThreadPool> {
    static POOLS: [OnceLock<Option<rayon::ThreadPool>>; 2] = [OnceLock::new(), OnceLock::new()];
    POOLS[lane as usize]
        .get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
                .thread_name(move |i| format!("{}-{i}", lane.name()))
                .start_handler(move |_| lower_priority(lane))
                .build()
                .inspect_err(
                    |e| tracing::warn!(error = %e, "no maintenance pool; builds share the search pool"),
                )
                .ok()
        })
        .as_ref()
}

/// Lowers the calling thread's scheduling priority by `lane`'s steps (on Linux a nice value is per
/// thread). Best effort: where the system refuses, the thread keeps its priority.
pub fn lower_priority(lane: Lane) {
    // Threads inherit their creator's nice value: start rayon's global pool (the searches' pool)
    // first, so it is never spawned from a lowered thread.
    let _ = rayon::current_num_threads();
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        if let Ok(now) = rustix::process::getpriority_process(Some(tid)) {
            let _ =
                rustix::process::setpriority_process(Some(tid), (now + lane.nice_steps()).min(19));
        }
    }
}

/// The calling thread's nice value (for tests and diagnostics; 0 where unknown).
pub fn thread_nice() -> i32 {
    #[cfg(target_os = "linux")]
    {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_run_on_their_lanes_pool_at_lower_priority() {
        let base = thread_nice();
        for (lane, prefix) in [(Lane::Flush, "maintenance-"), (Lane::Merge, "merge-")] {
            let (name, nice) = with_lane(lane, || {
                install(|| {
                    (
                        std::thread::current().name().map(str::to_string),
                        thread_nice(),
                    )
                })
            });
            assert!(name.unwrap_or_default().starts_with(prefix), "{lane:?}");
            if cfg!(target_os = "linux") && base + lane.nice_steps() <= 19 {
                assert_eq!(nice, base + lane.nice_steps(), "{lane:?}");
            }
            // Parallel work inside runs on the same pool, not the global one.
            use rayon::prelude::*;
            let names: Vec<String> = with_lane(lane, || {
                install(|| {
                    (0..64)
                        .into_par_iter()
                        .map(|_| std::thread::current().name().unwrap_or("").to_string())
                        .collect()
                })
            });
            assert!(names.iter().all(|n| n.starts_with(prefix)), "{names:?}");
        }
        // Outside `with_lane`, builds go to the flush pool again.
        let name = install(|| std::thread::current().name().map(str::to_string));
        assert!(name.unwrap_or_default().starts_with("maintenance-"));
        assert_eq!(thread_nice(), base, "the caller's priority is untouched");
    }

    /// A flush's build starts while a merge's build keeps the merge pool busy.
    #[test]
    fn a_flush_build_does_not_wait_for_a_merge_build() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let release = Arc::new(AtomicBool::new(false));
        let merging = {
            let release = release.clone();
            std::thread::spawn(move || {
                with_lane(Lane::Merge, || {
                    install(|| {
                        use rayon::prelude::*;
                        (0..rayon::current_num_threads() * 4)
                            .into_par_iter()
                            .for_each(|_| {
                                while !release.load(Ordering::Acquire) {
                                    std::thread::sleep(std::time::Duration::from_millis(1));
                                }
                            })
                    })
                })
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        // With one shared pool the flush's job would wait for `release`, which only comes after.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(install(|| 42)));
        let ran = rx.recv_timeout(std::time::Duration::from_secs(20));
        release.store(true, Ordering::Release);
        merging.join().unwrap();
        assert_eq!(ran, Ok(42), "the flush pool was held by the merge");
    }
}

/// Gives memory the allocator holds but no longer uses back to the system; called after every
/// flush and merge, which free a memtable's documents and a build's scratch (hundreds of MB).
/// glibc's malloc keeps such memory in its arenas (one per thread that allocated): measured at
/// 100,000 x 32 x 128, the server's anonymous memory after ingest was 4-6 KB a document above
/// what a restart needs (benches/README.md, "Memory"). `malloc_trim` returns the free pages of
/// every arena. Elsewhere, and with another global allocator, this does nothing that matters.
pub fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let started = std::time::Instant::now();
        glibc::trim();
        tracing::debug!(
            us = started.elapsed().as_micros() as u64,
            "returned free heap to the system"
        );
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod glibc {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }

    pub fn trim() {
        // SAFETY: `malloc_trim` takes no pointers, touches only glibc's own arenas under their
        // locks, and may be called from any thread at any time (glibc >= 2.8).
        unsafe {
            malloc_trim(0);
        }
    }
}
