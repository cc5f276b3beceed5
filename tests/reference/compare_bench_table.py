#!/usr/bin/python3
"""The targets table from compare_bench.sh's output (stdin): per workload and round, dgseg's
images/s, the faster PyTorch layout's, their ratio, and the medians; training GFLOP/s against
sgemm in the same process.

    ONEDNN_MAX_CPU_ISA=AVX2 ROUNDS=3 tests/reference/compare_bench.sh | \\
        tests/reference/compare_bench_table.py
"""
import json
import statistics
import sys

runs = {}  # (round, workload) -> {"dgseg": obj, "torch": [objs]}
cpu = ""
for line in sys.stdin:
    if line.startswith("cpu:"):
        cpu = line.strip()
        continue
    head, _, body = line.partition("{")
    if not body:
        continue
    words = head.split()
    rnd, tool = words[0], words[-1]
    workload = " ".join(words[1:-1])
    obj = json.loads("{" + body)
    slot = runs.setdefault((rnd, workload), {"dgseg": None, "torch": []})
    if tool == "dgseg":
        slot["dgseg"] = obj
    else:
        slot["torch"].append(obj)

print(cpu)
print("| workload | dgseg | best PyTorch | ratios | median |")
print("|---|---|---|---|---:|")
workloads = []
for (_, w) in runs:
    if w not in workloads:
        workloads.append(w)
for w in workloads:
    rows = [v for (r, ww), v in sorted(runs.items()) if ww == w and v["dgseg"] and v["torch"]]
    d = [v["dgseg"]["images_per_s"] for v in rows]
    t = [max(o["images_per_s"] for o in v["torch"]) for v in rows]
    ratios = [a / b for a, b in zip(d, t)]
    print("| %s | %s | %s | %s | %.2f |" % (
        w, " ".join("%.2f" % x for x in d), " ".join("%.2f" % x for x in t),
        " ".join("%.2f" % x for x in ratios), statistics.median(ratios)))
for w in workloads:
    rows = [v["dgseg"] for (r, ww), v in sorted(runs.items()) if ww == w and v["dgseg"]]
    if rows and rows[0]["mode"] == "train" and rows[0]["model"].startswith("deeplab"):
        g = [o["gflops_per_s"] for o in rows]
        s = [o["sgemm_gflops_per_s"] for o in rows]
        print("| %s GFLOP/s vs sgemm | %s | sgemm %s | %s | %.0f%% |" % (
            w, " ".join("%.0f" % x for x in g), " ".join("%.0f" % x for x in s),
            " ".join("%.0f%%" % (100 * a / b) for a, b in zip(g, s)),
            100 * statistics.median([a / b for a, b in zip(g, s)])))
