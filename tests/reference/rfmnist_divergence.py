#!/usr/bin/python3
"""How far apart two Rotated Fashion-MNIST runs drift when only rounding differs.

Reads the weights that rfmnist_divergence.sh wrote after the same numbers of updates (dgseg's
checkpoints, rfmnist_reduced.py's --dump-steps files) and prints, per step and pair, the relative
distance ||a - b|| / ||b|| over all model weights and the largest element difference. Pairs:
dgseg against the PyTorch reference with dgseg's initial weights and batches (--match-dgseg), and
that PyTorch run against itself with every initial weight moved by one float32 ulp
(--perturb-ulp 1), i.e. the drift that rounding alone produces in one implementation.

Usage: rfmnist_divergence.py DIR   (DIR as written by rfmnist_divergence.sh)
"""
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from make_fixtures import read_safetensors  # noqa: E402


def load(path):
    """The model weights of a checkpoint or dump, as float64 (optimizer state left out)."""
    tensors, _ = read_safetensors(path)
    return {k: a.astype(np.float64) for k, (a, dt) in tensors.items()
            if dt == "F32" and not k.startswith("optim.")}


def distance(a, b):
    if sorted(a) != sorted(b):
        sys.exit(f"tensor names differ: {sorted(set(a) ^ set(b))}")
    d = sum(float(np.sum((a[k] - b[k]) ** 2)) for k in b)
    n = sum(float(np.sum(b[k] ** 2)) for k in b)
    m = max(float(np.max(np.abs(a[k] - b[k]))) for k in b)
    return (d / n) ** 0.5, m


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    root = sys.argv[1]
    steps = sorted(int(m.group(1)) for f in os.listdir(os.path.join(root, "dgseg"))
                   if (m := re.fullmatch(r"step-(\d+)\.safetensors", f)))
    if not steps:
        sys.exit(f"{root}/dgseg: no step-N.safetensors files")
    print("| updates | dgseg vs PyTorch: relative | max abs | PyTorch vs PyTorch 1 ulp: "
          "relative | max abs |")
    print("|---:|---:|---:|---:|---:|")
    for s in steps:
        name = f"step-{s}.safetensors"
        dg, pt, pu = (load(os.path.join(root, d, name)) for d in ("dgseg", "torch", "torch-ulp"))
        r1, m1 = distance(dg, pt)
        r2, m2 = distance(pu, pt)
        print(f"| {s} | {r1:.2e} | {m1:.2e} | {r2:.2e} | {m2:.2e} |")
    # The evaluations: dgseg's metrics.jsonl and the references' --json files.
    dg = {}
    with open(os.path.join(root, "dgseg", "run", "test-rot75", "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r["kind"] == "eval":
                dg[r["step"]] = (r["val_acc"], r["test_acc"])
    refs = []
    for d in ("torch", "torch-ulp"):
        with open(os.path.join(root, d + ".json")) as f:
            evals = json.load(f)["runs"][0]["evals"]
            refs.append({e["step"]: (e["val_acc"], e["test_acc"]) for e in evals})
    print()
    print("| step | validation dgseg / PyTorch / PyTorch 1 ulp | test dgseg / PyTorch / PyTorch "
          "1 ulp | test dgseg − PyTorch | test PyTorch 1 ulp − PyTorch |")
    print("|---:|---|---|---:|---:|")
    gaps = ([], [])
    for s in sorted(refs[0]):
        v = [100 * x[s][0] for x in (dg, *refs)]
        t = [100 * x[s][1] for x in (dg, *refs)]
        gaps[0].append(abs(t[0] - t[1]))
        gaps[1].append(abs(t[2] - t[1]))
        print(f"| {s} | {v[0]:.2f} / {v[1]:.2f} / {v[2]:.2f} | {t[0]:.2f} / {t[1]:.2f} / "
              f"{t[2]:.2f} | {t[0] - t[1]:+.2f} | {t[2] - t[1]:+.2f} |")
    for name, g in zip(("dgseg", "PyTorch 1 ulp"), gaps):
        print(f"{name} vs PyTorch: mean |test gap| {np.mean(g):.2f}, largest {max(g):.2f} points")


if __name__ == "__main__":
    main()
