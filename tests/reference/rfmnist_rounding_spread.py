#!/usr/bin/python3
"""One Rotated Fashion-MNIST trial's test accuracy under rounding alone (rfmnist_rounding_spread.sh).

Prints, for the unperturbed PyTorch run (--match-dgseg), its one-ulp twins (ulp-P) and dgseg, the
test accuracy at the step training-domain validation selects (first maximum) and at the last
step, each beside its difference from the unperturbed PyTorch run; then the largest such
difference among the twins, the spread PyTorch shows against itself. Runs still missing are
left out.

Usage: rfmnist_rounding_spread.py DIR
"""
import json
import os
import re
import sys


def torch_run(path):
    with open(path) as f:
        r = json.load(f)["runs"][0]
    return [(e["step"], e["val_acc"], e["test_acc"]) for e in r["evals"]], r.get("train_eval_seconds")


def dgseg_run(root):
    dirs = [d for d in os.listdir(root) if d.startswith("test-")] if os.path.isdir(root) else []
    if len(dirs) != 1:
        return None
    evals = []
    with open(os.path.join(root, dirs[0], "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r["kind"] == "eval":
                evals.append((r["step"], r["val_acc"], r["test_acc"]))
    return evals


def summary(evals):
    """(selected step, test % there, test % at the last step): first maximum of validation."""
    best = max(evals, key=lambda e: e[1])
    sel = next(e for e in evals if e[1] == best[1])
    return sel[0], 100 * sel[2], 100 * evals[-1][2]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    root = sys.argv[1]
    runs = {}
    for f in sorted(os.listdir(root)):
        m = re.fullmatch(r"(torch|ulp-\d+)\.json", f)
        if m:
            runs[m.group(1)] = torch_run(os.path.join(root, f))[0]
    dg = dgseg_run(os.path.join(root, "dgseg"))
    if dg and dg[-1][0] == 1000:
        runs["dgseg"] = dg
    if "torch" not in runs:
        sys.exit(f"{root}/torch.json: missing (the unperturbed PyTorch run)")
    ref = summary(runs["torch"])
    print("| run | selected step | test at selected | − PyTorch | test at last | − PyTorch |")
    print("|---|---:|---:|---:|---:|---:|")
    order = ["torch"] + sorted((k for k in runs if k.startswith("ulp-")),
                               key=lambda k: int(k[4:])) + (["dgseg"] if "dgseg" in runs else [])
    twin = []
    for k in order:
        s = summary(runs[k])
        name = {"torch": "PyTorch", "dgseg": "dgseg"}.get(k, f"PyTorch 1 ulp (seed {k[4:]})")
        print(f"| {name} | {s[0]} | {s[1]:.2f} | {s[1] - ref[1]:+.2f} | {s[2]:.2f} | "
              f"{s[2] - ref[2]:+.2f} |")
        if k.startswith("ulp-"):
            twin += [abs(s[1] - ref[1]), abs(s[2] - ref[2])]
    if twin:
        print(f"\nPyTorch against its one-ulp twins: largest |test gap| {max(twin):.2f} points "
              f"(selected and last step, {len(twin) // 2} twins)")


if __name__ == "__main__":
    main()
