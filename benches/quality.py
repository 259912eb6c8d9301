#!/usr/bin/env python3
"""The quality of each dtype's search against f32, per budget, from `metavec bench --json` lines.

  python3 benches/quality.py METAVEC.jsonl [METAVEC-bf16.jsonl ...]

Prints a Markdown table: one row per (dtype, candidate stage, cascade, budget) with recall@10 of the
search against its own exact scan, recall@10 of the dtype's exact top 10 and of the search's top 10
against the exact f32 top 10 (compact dtypes only), and nDCG@10 (with --qrels: the search's ranking,
the dtype's exact ranking, f32's exact ranking). Nothing is computed that the files do not hold.
"""
import json
import sys


def fmt(v):
    return "" if v is None else f"{v:.4f}"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print("| budget | dtype | path | recall@10 vs own exact | exact vs f32 exact | search vs f32 exact "
          "| nDCG@10 search | nDCG@10 exact | nDCG@10 f32 exact |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in sys.argv[1:]:
        with open(path) as f:
            for line in f:
                if not line.startswith("{") or '"budget"' not in line:
                    continue
                m = json.loads(line)
                if m.get("layout") == "contiguous":
                    continue
                how = [m.get("candidates_from", "")]
                if m.get("stage"):
                    how.append("cascade " + m["stage"])
                print(f"| {m['budget']} | {m.get('dtype', 'f32')} | {' '.join(how)} | {fmt(m.get('recall_at_10'))} "
                      f"| {fmt(m.get('exact_recall_vs_f32'))} | {fmt(m.get('search_recall_vs_f32'))} "
                      f"| {fmt(m.get('ndcg_at_10_search'))} | {fmt(m.get('ndcg_at_10'))} | {fmt(m.get('ndcg_at_10_f32'))} |")


if __name__ == "__main__":
    main()
