//! Per-arch MaxSim kernels. Each is checked against the scalar reference by a proptest in `score`.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod kernel;

use super::Kernel;

/// The best kernel the running CPU supports, if any beats the scalar one. `METAVEC_KERNEL=avx2`
/// (or `scalar`) caps the choice, for benchmarks and for comparing results across machines.
pub fn best() -> Option<Kernel> {
    let cap = std::env::var("METAVEC_KERNEL").unwrap_or_default();
    if cap == "scalar" {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if cap != "avx2" && std::is_x86_feature_detected!("avx512f") {
            return Some(Kernel {
                name: "avx512f",
                update: avx512::maxsim_update,
                dot: avx512::dot,
            });
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Some(Kernel {
                name: "avx2-fma",
                update: avx2::maxsim_update,
                dot: avx2::dot,
            });
        }
    }
    None
}

/// Every kernel the running CPU supports (best first), so tests can check each one against the
/// scalar reference whatever `best()` picks.
pub fn available() -> Vec<Kernel> {
    #[allow(unused_mut)]
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            out.push(Kernel {
                name: "avx512f",
                update: avx512::maxsim_update,
                dot: avx512::dot,
            });
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            out.push(Kernel {
                name: "avx2-fma",
                update: avx2::maxsim_update,
                dot: avx2::dot,
            });
        }
    }
    out
}

/// Asks the CPU to start loading every cache line of `data` into L1/L2. A hint only: no effect
/// on results. The rerank calls it for the next candidate while it scores the current one, so the
/// random reads of a candidate's rows overlap with arithmetic instead of stalling it.
pub fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = data.as_ptr().cast::<i8>();
        let bytes = std::mem::size_of_val(data);
        let mut off = 0;
        while off < bytes {
            // SAFETY: prefetch never faults and reads no memory architecturally; the address is
            // inside `data` (sse is part of the x86_64 baseline).
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.add(off))
            };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}
