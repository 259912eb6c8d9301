#!/usr/bin/env bash
# metavec bench and the reference pipeline (faiss HNSW on vector 0 + numpy MaxSim) on the same
# synthetic data, same machine, one after the other; then metavec again on the same files with
# each compact dtype (quality against f32 included). Every metavec run also measures each budget as
# a two-stage cascade (the trained budget below it keeping 100, then the budget).
# Usage: benches/run-vs-reference.sh [OUT_DIR]   (DTYPES="bf16 int8" by default; "" skips them)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/metavec-bench}
dtypes=${DTYPES-"bf16 int8"}
mkdir -p "$out"
cargo build --release -p metavec
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet numpy faiss-cpu threadpoolctl
./target/release/metavec bench --budgets 1x1,4x8,16x64 --queries 100 --candidates 320 \
  --cascade 100 --write-npy "$out" --plot "$out/curve.svg" | tee "$out/metavec.txt"
( cd ../shared/bench && "$OLDPWD/.venv/bin/python" reference_pipeline.py "$out" --budgets 1x1,4x8,16x64 \
  --cands 320 --queries 100 ) | tee "$out/reference.txt"
for d in $dtypes; do
  ./target/release/metavec bench --npy-dir "$out" --dtype "$d" --budgets 1x1,4x8,16x64 --queries 100 \
    --candidates 320 --cascade 100 --no-baseline | tee "$out/metavec-$d.txt"
done
