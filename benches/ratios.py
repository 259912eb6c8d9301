#!/usr/bin/env python3
"""metavec against the reference pipeline, per budget, on medians and on QPS with p99 beside them.

  python3 benches/ratios.py REFERENCE.jsonl METAVEC.jsonl [METAVEC-bf16.jsonl ...]

REFERENCE.jsonl: the JSON lines of benches/reference_warm.py (or ../shared/bench/reference_pipeline.py).
METAVEC*.jsonl: the JSON lines of `metavec bench --json` on the same data. Prints a Markdown table: one
row per metavec row (dtype, candidate stage, cascade) with p50 and QPS of both pipelines, their ratios
(reference / metavec for p50, metavec / reference for QPS: above 1 means metavec is faster), both p99 and
both recalls. Nothing is computed that the files do not hold.
"""
import json
import sys


def lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    ref = {"x".join(map(str, r["budget"])): r for r in lines(sys.argv[1]) if "budget" in r}
    print("| budget | metavec path | metavec p50 ms | ref p50 ms | p50 ratio | metavec QPS | ref QPS "
          "| QPS ratio | metavec p99 ms | ref p99 ms | metavec recall | ref recall |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in sys.argv[2:]:
        for m in lines(path):
            b = m.get("budget")
            if b not in ref or "p50_ms" not in m:
                continue
            r = ref[b]
            rrec = next((v for k, v in r.items() if k.startswith("recall@")), None)
            how = [m.get("dtype", "f32"), m.get("layout", ""), m.get("candidates_from", "")]
            if m.get("stage"):
                how.append("cascade " + m["stage"])
            print(f"| {b} | {' '.join(h for h in how if h)} | {m['p50_ms']:.3f} | {r['p50_ms']:.3f} "
                  f"| {r['p50_ms'] / m['p50_ms']:.2f}x | {m['qps_1_thread']:.0f} | {r['qps_1thread']:.0f} "
                  f"| {m['qps_1_thread'] / r['qps_1thread']:.2f}x | {m['p99_ms']:.3f} | {r['p99_ms']:.3f} "
                  f"| {m['recall_at_10']:.3f} | {rrec} |")


if __name__ == "__main__":
    main()
