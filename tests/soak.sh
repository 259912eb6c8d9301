#!/usr/bin/env bash
# Soak: one server on loopback under concurrent streaming upserts, deletes, searches at mixed
# budgets (and cascades), Flush/Compact/CreateSnapshot, for SECS seconds (default 600); then
# every acknowledged operation is checked against the oracle and exact search against a scan.
#   tests/soak.sh [--secs N]
# Prints one "soak: ..." line with ops/s by kind, search p50/p99 and the error count (0).
set -euo pipefail
secs=600
if [[ "${1:-}" == "--secs" ]]; then secs="$2"; fi
cd "$(dirname "$0")/.."
METAVEC_SOAK_SECS="$secs" cargo test --release -q -p metavec --test grpc \
  soak::soak_holds_every_acknowledged_operation_and_exact_search -- --exact --nocapture 2>&1 \
  | grep -E "^soak|panicked|test result" 
