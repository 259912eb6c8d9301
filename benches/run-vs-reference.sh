#!/usr/bin/env bash
# metavec bench and the reference pipeline (faiss HNSW on vector 0 + numpy MaxSim) on the same data,
# same machine, one after the other, both warmed up the same way (benches/reference_warm.py runs the
# reference's own stages after 5 untimed queries per budget, as `metavec bench` does); then metavec
# again on the same files with each other dtype (f32, int8; the first run is the collection's
# default, bf16, with its quality against f32), and the ratios on
# medians and on QPS with p99 beside them (benches/ratios.py). Every metavec run measures the plain
# search with only a budget (the collection's default candidate stage) and each budget as a
# two-stage cascade (the trained budget below it keeping 100, then the budget).
# Usage: benches/run-vs-reference.sh [OUT_DIR] [NPY_DIR]
#   NPY_DIR: docs.npy / queries.npy (and qrels.tsv) to use; default: metavec's synthetic set,
#   written to OUT_DIR (PROFILE=easy or hard). DTYPES="f32 int8" by default ("" skips them);
#   REF_CANDS=320.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/metavec-bench}
npy=${2:-}
dtypes=${DTYPES-"f32 int8"}
cands=${REF_CANDS:-320}
mkdir -p "$out"
cargo build --release -p metavec
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet numpy faiss-cpu threadpoolctl
common=(--budgets 1x1,4x8,16x64 --queries 100 --cascade 100 --vector0 --json)
if [ -n "$npy" ]; then
  src=(--npy-dir "$npy")
  [ -f "$npy/qrels.tsv" ] && src+=(--qrels "$npy/qrels.tsv")
  data=$npy
else
  ./target/release/metavec bench --profile "${PROFILE:-easy}" --write-npy "$out" --no-baseline --budgets 1x1 --queries 100 > /dev/null
  src=(--npy-dir "$out")
  data=$out
fi
./target/release/metavec bench "${src[@]}" "${common[@]}" --plot "$out/curve.svg" | tee "$out/metavec.jsonl"
.venv/bin/python benches/reference_warm.py "$data" --budgets 1x1,4x8,16x64 --cands "$cands" \
  --queries 100 | tee "$out/reference.jsonl"
for d in $dtypes; do
  ./target/release/metavec bench "${src[@]}" --dtype "$d" "${common[@]}" --no-baseline \
    | tee "$out/metavec-$d.jsonl"
done
python3 benches/ratios.py "$out/reference.jsonl" "$out"/metavec*.jsonl | tee "$out/ratios.md"
