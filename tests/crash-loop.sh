#!/usr/bin/env bash
# The long crash loop: 100 rounds of start -> stream upserts/deletes/compactions/snapshots ->
# kill -9 at a random moment -> restart -> verify every acknowledged operation.
set -euo pipefail
cd "$(dirname "$0")/.."
METAVEC_CRASH_ROUNDS=${1:-100} cargo test --release -p metavec --test grpc crash_loop -- --nocapture
