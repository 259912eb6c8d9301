#!/usr/bin/env bash
# Runs every fuzz target for N seconds each (default 600), one at a time.
#   benches/fuzz.sh [SECS]
# Each target prints "fuzz target NAME: CASES cases in T s, no failure" or fails with the
# minimal (shrunk) mutation list. See docs/FUZZING.md.
set -euo pipefail
secs="${1:-600}"
cd "$(dirname "$0")/.."
cargo build --release -p metavec-core --test fuzz -q
cargo build --release -p metavec-api --test fuzz -q
for t in fuzz_wal_record_decoder fuzz_wal_file_scan fuzz_manifest_decoder fuzz_segment_open fuzz_segment_open_int8; do
  METAVEC_FUZZ_SECS="$secs" cargo test --release -q -p metavec-core --test fuzz "$t" -- --exact --nocapture 2>&1 | grep -E "fuzz target|panicked|FAILED|failed" || true
done
for t in fuzz_proto_conversion; do
  METAVEC_FUZZ_SECS="$secs" cargo test --release -q -p metavec-api --test fuzz "$t" -- --exact --nocapture 2>&1 | grep -E "fuzz target|panicked|FAILED|failed" || true
done
