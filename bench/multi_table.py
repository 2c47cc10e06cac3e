"""Prints bench/gpu_multi.sh's table from its output directory: the loss agreement across GPU counts and
the throughput and scaling efficiency (speedup over 1 GPU / GPUs) of ours and PyTorch DDP.

    python3 bench/multi_table.py $OUT
"""

import csv
import glob
import json
import os
import re
import sys


def losses(path):
    with open(path) as f:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(f)}


def loss_table(out):
    d = os.path.join(out, "loss")
    runs = {}
    for p in glob.glob(os.path.join(d, "loss*.csv")):
        runs[int(re.search(r"loss(\d+)\.csv$", p).group(1))] = losses(p)
    for p in glob.glob(os.path.join(d, "resume*to1.csv")):
        runs[os.path.basename(p)[:-4]] = losses(p)
    if 1 not in runs:
        print("loss: no 1-GPU run (PART=loss not run, or it failed: see stderr.txt)\n")
        return
    ref = runs[1]
    print("Loss, MNIST, global batch 256, seed 0 (the same batches and noise on every GPU count):")
    print(f"| run | steps | loss @1 | @100 | @300 | mean 251-300 | max abs diff vs 1 GPU | max rel diff |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for k in sorted(runs, key=lambda k: (isinstance(k, str), k)):
        r = runs[k]
        common = sorted(set(r) & set(ref))
        diff = max((abs(r[s] - ref[s]) for s in common), default=float("nan"))
        rel = max((abs(r[s] - ref[s]) / abs(ref[s]) for s in common if ref[s]), default=float("nan"))
        tail = [r[s] for s in range(251, 301) if s in r]
        name = f"{k} GPU" if isinstance(k, int) else k
        print(f"| {name} | {len(r)} | {r.get(1, float('nan')):.4f} | {r.get(100, float('nan')):.4f} | "
              f"{r.get(300, float('nan')):.4f} | {sum(tail) / max(1, len(tail)):.4f} | {diff:.2e} | {rel:.2e} |")
    print()


def speed_table(out):
    path = os.path.join(out, "multi.jsonl")
    if not os.path.exists(path):
        print("speed: no figures")
        return
    rows = {}
    for line in open(path):
        r = json.loads(line)
        impl, preset, pb, n = r["label"].split()
        rows[(impl, preset, int(pb), int(n[1:]))] = r
    impls = sorted({k[0] for k in rows}, key=lambda s: (s != "ours", s))
    print("Training throughput, images/s over all GPUs (speedup over 1 GPU, scaling efficiency = speedup / GPUs):")
    head = "| preset | per-GPU batch | GPUs | " + " | ".join(impls) + " |"
    print(head)
    print("|" + " --- |" * (3 + len(impls)))
    for preset, pb, n in sorted({k[1:] for k in rows}, key=lambda k: (k[0] != "mnist", k[1], k[2])):
        cells = []
        for impl in impls:
            r, one = rows.get((impl, preset, pb, n)), rows.get((impl, preset, pb, 1))
            if r is None:
                cells.append("-")
                continue
            ips = r["images_per_s"]
            if one and n > 1:
                s = ips / one["images_per_s"]
                cells.append(f"{ips:,.0f} ({s:.2f}x, {100 * s / n:.0f}%)")
            else:
                cells.append(f"{ips:,.0f}")
        print(f"| {preset} | {pb} | {n} | " + " | ".join(cells) + " |")
    dev = next(iter(rows.values())).get("device", "?")
    print(f"\ndevice: {dev}; first call (compile) seconds: " + ", ".join(
        f"{k[0]} {k[1]} {k[2]}x{k[3]}: {r.get('first_call_s', 0):.0f}" for k, r in sorted(rows.items())))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/out"
    check = os.path.join(out, "check.txt")
    if os.path.exists(check):
        lines = [l.strip() for l in open(check) if l.startswith(("---", "ok", "FAIL", "PASS"))]
        print("Sharded step vs plain step (train.test, tiny model): " + "; ".join(lines) + "\n")
    loss_table(out)
    speed_table(out)


if __name__ == "__main__":
    main()
