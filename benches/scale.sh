#!/usr/bin/env bash
# The scale runs of issue #17: a real `metavec serve` filled over gRPC by `metavec bench scale`,
# measured at 25/50/75/100% (ingest rate, write amplification, RssAnon, disk, p50/p99 and
# recall@10 per budget, recovery after kill -9, a clean reopen at the end):
#   1. 1,000,000 docs x 32 vectors x 128 dims, bf16, hard profile;
#   2.    50,000 docs x 64 vectors x 2048 dims, bf16, the server capped at 4 GiB (memory cgroup v1,
#      page cache included; needs root, else it runs uncapped and says so).
# Each run has its own directory under OUT (default /work/scale); rerunning this script resumes
# an interrupted run where its last acknowledged stream ended, and skips a finished one.
# Usage: benches/scale.sh [OUT]   (RUNS="1" or "2" for one of them; extra flags via EXTRA)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/work/scale}}
runs=${RUNS:-"1 2"}
cargo build --release --workspace
mkdir -p "$out"
# The run (and every server it restarts) uses a copy, so a rebuild meanwhile changes nothing.
bin=$out/metavec
cp target/release/metavec "$bin.tmp" && mv "$bin.tmp" "$bin"
for run in $runs; do
  case $run in
    1) dir=$out/1m-32x128-bf16
       args=(--docs 1000000 --dim 128 --doc-vectors 32 --query-vectors 16) ;;
    2) dir=$out/50k-64x2048-bf16-4g
       args=(--docs 50000 --dim 2048 --doc-vectors 64 --query-vectors 16 --memory-limit-mb 4096) ;;
    *) echo "unknown run $run (1 or 2)" >&2; exit 2 ;;
  esac
  echo "== run $run: $dir"
  # shellcheck disable=SC2086
  "$bin" bench scale --data-dir "$dir" "${args[@]}" --dtype bf16 --profile hard \
    --checkpoints 4 --plot "$dir/scale" ${EXTRA:-} | tee -a "$dir.txt"
done
