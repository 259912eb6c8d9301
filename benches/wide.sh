#!/usr/bin/env bash
# A collection larger than the memory it is served from: wide bf16 vectors (default 12,000 docs x 64
# x 2048, a 3.1 GB segment) built once, measured in RAM, then measured again from a process whose
# memory cgroup (page cache included) is capped below the collection's size (default 1.5 GiB), after
# dropping the page cache. Budgets up to (8,16) have a hot set that fits (the grouped layout keeps
# each budget's prefix together); (16,64) would not and is left out.
# Needs root (cgroup v1 memory controller at /sys/fs/cgroup/memory, /proc/sys/vm/drop_caches) and
# ~20 GB of disk under OUT. Usage: benches/wide.sh [OUT_DIR]   (DOCS, DIM, LIMIT_MB override)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/metavec-wide}
docs=${DOCS:-12000}
dim=${DIM:-2048}
limit_mb=${LIMIT_MB:-1536}
budgets=1x1,2x4,4x8,8x16
cargo build --release -p metavec
bin=$PWD/target/release/metavec
rm -rf "$out" && mkdir -p "$out"
echo "== build and measure in RAM"
"$bin" bench --docs "$docs" --dim "$dim" --doc-vectors 64 --query-vectors 16 --dtype bf16 \
  --budgets "$budgets" --queries 100 --write-npy "$out/npy" --data-dir "$out/db" | tee "$out/in-ram.txt"
rm -f "$out/npy/docs.npy"   # only the queries are needed from here on
du -sh "$out/db" | tee -a "$out/in-ram.txt"
echo "== again, capped at $limit_mb MiB (page cache included), cold page cache"
cg=/sys/fs/cgroup/memory/metavec-wide
mkdir -p "$cg"
echo $((limit_mb << 20)) > "$cg/memory.limit_in_bytes"
sync && echo 3 > /proc/sys/vm/drop_caches
( echo $BASHPID > "$cg/cgroup.procs"
  exec "$bin" bench --npy-dir "$out/npy" --data-dir "$out/db" --budgets "$budgets" --queries 100 ) \
  | tee "$out/capped.txt"
echo "max memory used by the capped run: $(( $(cat "$cg/memory.max_usage_in_bytes") >> 20 )) MiB" \
  | tee -a "$out/capped.txt"
