//! Per-arch MaxSim kernels. Each is checked against the scalar reference by a proptest in `score`.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
mod avx2;

use super::Kernel;

/// The best kernel the running CPU supports, if any beats the scalar one.
pub fn best() -> Option<Kernel> {
    #[cfg(target_arch = "x86_64")]
    {
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
