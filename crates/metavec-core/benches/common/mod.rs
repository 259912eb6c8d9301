//! Helpers shared by the harness-free benches (`search`, `ops`).

use std::time::Duration;

/// A numeric knob from the environment, e.g. `MV_DOCS`.
pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0.5 = median) of the latencies; sorts them.
pub fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}
