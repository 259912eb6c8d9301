#!/usr/bin/env python3
"""The Docker build context as .dockerignore filters it: its size (at most --max-mb) and whether
`cargo metadata` loads from it (the manifests find every file they name). No Docker engine needed.

Usage: python3 deploy/docker/check-context.py [--max-mb 50] [--root .]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile


def compile_pattern(p):
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over '/'-separated paths."""
    p = p.strip().lstrip("/")
    out, i = "", 0
    while i < len(p):
        c = p[i]
        if p.startswith("**", i):
            # `**/` matches any number of directories, `**` at the end anything.
            if p.startswith("**/", i):
                out += "(?:.*/)?"
                i += 3
            else:
                out += ".*"
                i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = p.find("]", i)
            if j < 0:
                out += re.escape(c)
            else:
                out += "[" + p[i + 1 : j].replace("!", "^", 1) + "]"
                i = j
        else:
            out += re.escape(c)
        i += 1
    return re.compile("^" + out + "$")


def load(root):
    rules = []
    path = os.path.join(root, ".dockerignore")
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            neg = line.startswith("!")
            rules.append((neg, compile_pattern(line[1:] if neg else line)))
    return rules


def excluded(rel, rules):
    """Docker's rule: the last matching pattern wins; a pattern matching a parent excludes all below."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    out = False
    for neg, rx in rules:
        if any(rx.match(p) for p in prefixes):
            out = not neg
    return out


def context(root, rules):
    for dirpath, dirnames, filenames in os.walk(root):
        reldir = os.path.relpath(dirpath, root)
        reldir = "" if reldir == "." else reldir.replace(os.sep, "/")
        # Prune directories excluded whole (no negation can bring a child back here).
        if not any(neg for neg, _ in rules):
            dirnames[:] = [
                d for d in dirnames if not excluded(f"{reldir}/{d}".lstrip("/"), rules)
            ]
        for name in filenames:
            rel = f"{reldir}/{name}".lstrip("/")
            if not excluded(rel, rules):
                yield rel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-mb", type=float, default=50.0)
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    rules = load(root)
    files = list(context(root, rules))
    total = sum(os.path.getsize(os.path.join(root, f)) for f in files)
    everything = sum(
        os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs
        if not os.path.islink(os.path.join(d, f))
    )
    mb = total / 1e6
    print(f"docker context: {len(files)} files, {mb:.1f} MB (the tree holds {everything / 1e6:.1f} MB)")
    biggest = sorted(files, key=lambda f: -os.path.getsize(os.path.join(root, f)))[:5]
    for f in biggest:
        print(f"  {os.path.getsize(os.path.join(root, f)) / 1e6:8.2f} MB  {f}")
    ok = True
    if mb > a.max_mb:
        print(f"FAIL: the context is {mb:.1f} MB, over {a.max_mb} MB: extend .dockerignore")
        ok = False
    for need in ["Cargo.toml", "Cargo.lock", "crates/metavec/src/main.rs", "proto/metavec/v1/metavec.proto"]:
        if need not in files:
            print(f"FAIL: .dockerignore leaves out {need}, which the image build needs")
            ok = False
    # The manifests must load from the context alone (every target path they name is in it).
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            dst = os.path.join(tmp, f)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(os.path.join(root, f), dst)
        r = subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--offline", "--no-deps"],
            cwd=tmp, capture_output=True, text=True,
        )
        if r.returncode != 0:
            print("FAIL: cargo metadata does not load from the context:\n" + r.stderr)
            ok = False
        else:
            print("cargo metadata loads from the context")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
