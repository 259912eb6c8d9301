#!/usr/bin/env bash
# Candidates that follow the budget (issue #15): on the hard synthetic profile (documents of a
# topic nearly coincide at vector 0 and differ deeper), metavec's default candidate stage (the
# token index) against vector-0 candidates only and against the reference pipeline (faiss HNSW on
# vector 0 + numpy MaxSim) at 200 / 1,000 / 2,000 / 5,000 / 10,000 candidates, same data, one
# after the other on the same machine. Segments are made as `metavec serve` makes them (a flush
# every 64 MB of memtable), plus one run sealed into a single segment.
#
# Usage: benches/candidates.sh [DOCS] [OUT_DIR]     (default 50000, /tmp/metavec-candidates-DOCS)
# Resumable: a step whose output file exists is skipped, so an interrupted run picks up where it
# stopped (delete a file to redo its step).
set -euo pipefail
cd "$(dirname "$0")/.."
docs=${1:-50000}
out=${2:-/tmp/metavec-candidates-$docs}
mkdir -p "$out"
cargo build --release --workspace
bin=./target/release/metavec
common=(--profile hard --dim 64 --doc-vectors 16 --query-vectors 8 --queries 100 --no-baseline)
if [ ! -s "$out/metavec-segments.txt" ]; then
  # Writes the data set once (docs.npy / queries.npy) for the other runs.
  $bin bench "${common[@]}" --docs "$docs" --memtable-mb 64 --vector0 --write-npy "$out/data" \
    --plot "$out/curve.svg" > "$out/metavec-segments.txt.tmp"
  mv "$out/metavec-segments.txt.tmp" "$out/metavec-segments.txt"
fi
if [ ! -s "$out/metavec-one-segment.txt" ]; then
  $bin bench --profile hard --npy-dir "$out/data" --queries 100 --no-baseline \
    > "$out/metavec-one-segment.txt.tmp"
  mv "$out/metavec-one-segment.txt.tmp" "$out/metavec-one-segment.txt"
fi
if [ ! -s "$out/metavec-vector0-collection.txt" ]; then
  # Ingest and flush cost without the token index (the same segments, HNSW only).
  $bin bench --profile hard --npy-dir "$out/data" --queries 20 --no-baseline --memtable-mb 64 \
    --candidate-index vector0 --budgets 1x1 > "$out/metavec-vector0-collection.txt.tmp"
  mv "$out/metavec-vector0-collection.txt.tmp" "$out/metavec-vector0-collection.txt"
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet numpy faiss-cpu threadpoolctl
for c in 200 1000 2000 5000 10000; do
  f="$out/reference-$c.txt"
  [ -s "$f" ] && continue
  ( cd ../shared/bench && "$OLDPWD/.venv/bin/python" reference_pipeline.py "$out/data" \
      --budgets 1x1,2x4,4x8,8x16 --cands "$c" --queries 100 ) > "$f.tmp"
  mv "$f.tmp" "$f"
done
cat "$out"/metavec-*.txt "$out"/reference-*.txt
