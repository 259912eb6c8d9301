#!/usr/bin/env python3
"""The reference pipeline (../shared/bench/reference_pipeline.py) timed the way `metavec bench` times
metavec: the same index, the same stages and the same ground truth (imported from the reference
itself), but each budget first runs WARMUP untimed queries, as `metavec bench` runs 5 searches (and
one exact scan) before it times a budget. The reference as shipped times from its first query, so a
cold start lands in its p99 and its QPS. Prints the reference's JSON line per budget, with
`"warmup": WARMUP` added.

  .venv/bin/python benches/reference_warm.py DATA_DIR --budgets 1x1,4x8,16x64 --cands 320 --queries 100
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "bench"))
import faiss  # noqa: E402
from reference_pipeline import exact_topk  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--budgets", default="1x1,4x8,16x64")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--cands", type=int, default=200)
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    docs = np.load(Path(a.data) / "docs.npy", mmap_mode="r")
    queries = np.load(Path(a.data) / "queries.npy").astype(np.float32)
    N, Mc, D = docs.shape

    t0 = time.perf_counter()
    v0 = np.ascontiguousarray(docs[:, 0], dtype=np.float32)
    index = faiss.IndexHNSWFlat(D, a.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = a.ef_construction
    index.add(v0)
    index.hnsw.efSearch = max(a.cands, 64)
    store = np.ascontiguousarray(docs, dtype=np.float32)
    build_s = time.perf_counter() - t0

    def one(q, rq, rc):
        _, cand = index.search(np.ascontiguousarray(q[:1]), a.cands)
        c = cand[0][cand[0] >= 0]
        x = store[c, :rc]
        s = (x.reshape(-1, D) @ q.T).reshape(len(c), rc, rq).max(1).sum(1)
        return c[np.argsort(-s)[:a.k]]

    for budget in a.budgets.split(","):
        rq, rc = map(int, budget.lower().split("x"))
        gt = exact_topk(a.data, docs, queries, rq, rc, a.k)
        nq = min(a.queries, len(queries))
        lat, hits = [], 0
        with threadpool_limits(1):
            faiss.omp_set_num_threads(1)
            for i in range(min(a.warmup, nq)):
                one(queries[i, :rq], rq, rc)
            for i in range(nq):
                q = queries[i, :rq]
                t = time.perf_counter()
                top = one(q, rq, rc)
                lat.append(time.perf_counter() - t)
                hits += len(set(top.tolist()) & set(gt[i].tolist()))
        lat = np.array(lat) * 1e3
        print(json.dumps({"pipeline": "faiss_hnsw_v0+numpy_maxsim", "n_docs": N, "doc_vectors": Mc, "dim": D,
                          "budget": [rq, rc], "cands": a.cands, "build_s": round(build_s, 2),
                          "qps_1thread": round(nq / (lat.sum() / 1e3), 1),
                          "p50_ms": round(float(np.median(lat)), 3), "p99_ms": round(float(np.percentile(lat, 99)), 3),
                          f"recall@{a.k}": round(hits / (nq * a.k), 4), "queries": nq, "warmup": a.warmup,
                          "load1": round(os.getloadavg()[0], 2)}), flush=True)


if __name__ == "__main__":
    main()
