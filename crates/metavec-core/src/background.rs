//! Where maintenance runs: flushes and merges build HNSW graphs and token indexes with rayon, and
//! a parallel build is one long stream of tasks. On the global pool, a search's own parallel
//! rerank queued behind it (rayon workers drain their local queues before they look at injected
//! work), so searches stalled for the length of a build. Builds run on a pool of their own
//! instead, and every maintenance thread runs at a lower scheduling priority, so a search takes
//! the cores it needs and the builds use the rest.

use std::sync::OnceLock;

/// How much lower than the process's priority maintenance threads run (`nice` steps).
pub const NICE_STEPS: i32 = 10;

/// Runs `f` on the maintenance pool: parallel iterators inside it use that pool's threads, not
/// the global pool searches use. Falls back to the calling thread if the pool cannot start.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Some(p) => p.install(f),
        None => f(),
    }
}

fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .thread_name(|i| format!("maintenance-{i}"))
            .start_handler(|_| lower_priority())
            .build()
            .inspect_err(
                |e| tracing::warn!(error = %e, "no maintenance pool; builds share the search pool"),
            )
            .ok()
    })
    .as_ref()
}

/// Lowers the calling thread's scheduling priority by [`NICE_STEPS`] (on Linux a nice value is
/// per thread). Best effort: where the system refuses, the thread keeps its priority.
pub fn lower_priority() {
    // Threads inherit their creator's nice value: start rayon's global pool (the searches' pool)
    // first, so it is never spawned from a lowered thread.
    let _ = rayon::current_num_threads();
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        if let Ok(now) = rustix::process::getpriority_process(Some(tid)) {
            let _ = rustix::process::setpriority_process(Some(tid), (now + NICE_STEPS).min(19));
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
    fn builds_run_on_the_maintenance_pool_at_lower_priority() {
        let base = thread_nice();
        let (name, nice) = install(|| {
            (
                std::thread::current().name().map(str::to_string),
                thread_nice(),
            )
        });
        assert!(name.unwrap_or_default().starts_with("maintenance-"));
        if cfg!(target_os = "linux") && base + NICE_STEPS <= 19 {
            assert_eq!(nice, base + NICE_STEPS);
        }
        // Parallel work inside runs on the same pool, not the global one.
        use rayon::prelude::*;
        let names: Vec<String> = install(|| {
            (0..64)
                .into_par_iter()
                .map(|_| std::thread::current().name().unwrap_or("").to_string())
                .collect()
        });
        assert!(
            names.iter().all(|n| n.starts_with("maintenance-")),
            "{names:?}"
        );
        assert_eq!(thread_nice(), base, "the caller's priority is untouched");
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
