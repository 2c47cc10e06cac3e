"""Builds docs/guidance.md's measured part from the output folder of bench/gpu_guidance.sh.

    python3 bench/guidance_doc.py OUTDIR [--images docs/images] > docs/guidance-table.md

Reads OUTDIR/mnist.jsonl and OUTDIR/fashion-mnist.jsonl (one JSON line per guidance scale, written by
bench/guidance), copies OUTDIR/<data>-guidance.png to IMAGES/guidance-<data>.png, draws the trade-off
plot IMAGES/guidance-tradeoff.png (classifier accuracy and FIDs against the guidance scale) and prints
the markdown table with the best scale per data set. Needs only PIL (python3-pil) and the standard library.
"""

import argparse
import json
import math
import os
import shutil
import sys

from PIL import Image, ImageDraw

DATASETS = [("mnist", "MNIST"), ("fashion-mnist", "Fashion-MNIST")]
COLORS = {"mnist": (31, 119, 180), "fashion-mnist": (214, 39, 40)}


def read(outdir):
    rows = {}
    for key, _ in DATASETS:
        path = os.path.join(outdir, key + ".jsonl")
        if os.path.exists(path):
            with open(path) as f:
                rows[key] = sorted((json.loads(l) for l in f if l.startswith("{")), key=lambda r: r["guidance"])
    return rows


def table(rows, summary):
    out = []
    first = next(iter(rows.values()))[0]
    out.append(f"Measured with `bench/gpu_guidance.sh` ({summary}): {first['per_class']} samples per class "
               f"({first['n']} per scale), {first['sampler'].upper()} {first['steps']} steps eta {first['eta']:g}, "
               f"the same seeds at every scale; our classifier of each data set, real images = the test split "
               f"({first['ref_n']} images, 1,000 per class, never trained on).\n")
    out.append("| data set | guidance S | accuracy (requested class) | classifier FID | mean per-class FID | sampling time (s) |")
    out.append("| --- | --- | --- | --- | --- | --- |")
    for key, name in DATASETS:
        for r in rows.get(key, []):
            out.append(f"| {name} | {r['guidance']:g} | {100 * r['accuracy']:.2f}% | {r['fid']:.2f} | "
                       f"{r['mean_class_fid']:.2f} | {r['sample_s']:.1f} |")
    out.append("")
    for key, name in DATASETS:
        rs = rows.get(key, [])
        if not rs:
            out.append(f"- {name}: no results.")
            continue
        acc = max(rs, key=lambda r: r["accuracy"])
        fid = min(rs, key=lambda r: r["fid"])
        cls = min(rs, key=lambda r: r["mean_class_fid"])
        out.append(f"- {name}: highest accuracy {100 * acc['accuracy']:.2f}% at S = {acc['guidance']:g}; lowest FID "
                   f"{fid['fid']:.2f} at S = {fid['guidance']:g}; lowest mean per-class FID {cls['mean_class_fid']:.2f} "
                   f"at S = {cls['guidance']:g}.")
    return "\n".join(out) + "\n"


def plot(rows, path):
    """Two panels against the guidance scale: accuracy (%), and FID (solid) / mean per-class FID (dashed)."""
    W, H, pad = 900, 400, 60
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    scales = sorted({r["guidance"] for rs in rows.values() for r in rs})
    panels = [
        ("classifier accuracy on the requested class (%)", [("accuracy", 100, False)], False),
        ("classifier FID (log scale): all (solid), per class (dashed)", [("fid", 1, False), ("mean_class_fid", 1, True)], True),
    ]
    pw = (W - 3 * pad) // 2
    for pi, (title, series, logy) in enumerate(panels):
        x0, y0, x1, y1 = pad + pi * (pw + pad), 40, pad + pi * (pw + pad) + pw, H - 70
        tr = (lambda v: math.log10(max(v, 1e-9))) if logy else (lambda v: v)
        vals = [tr(r[k] * m) for rs in rows.values() for r in rs for k, m, _ in series]
        lo, hi = min(vals), max(vals)
        if hi == lo:
            hi = lo + 1
        lo, hi = lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)
        sx = lambda s: x0 + (s - scales[0]) / max(scales[-1] - scales[0], 1e-9) * (x1 - x0)
        sy = lambda v: y1 - (v - lo) / (hi - lo) * (y1 - y0)  # v already transformed
        d.rectangle([x0, y0, x1, y1], outline="black")
        d.text((x0, 15), title, fill="black")
        for s in scales:
            d.line([sx(s), y1, sx(s), y1 + 4], fill="black")
            d.text((sx(s) - 4, y1 + 8), f"{s:g}", fill="black")
        d.text(((x0 + x1) // 2 - 40, y1 + 24), "guidance scale S", fill="black")
        for k in range(5):
            v = lo + (hi - lo) * k / 4
            d.line([x0 - 4, sy(v), x0, sy(v)], fill="black")
            d.text((x0 - 48, sy(v) - 6), f"{10 ** v if logy else v:.3g}", fill="black")
        for key, rs in rows.items():
            for k, m, dashed in series:
                pts = [(sx(r["guidance"]), sy(tr(r[k] * m))) for r in rs]
                for a, b in zip(pts, pts[1:]):
                    if dashed:
                        n = 8
                        for i in range(0, n, 2):
                            p = (a[0] + (b[0] - a[0]) * i / n, a[1] + (b[1] - a[1]) * i / n)
                            q = (a[0] + (b[0] - a[0]) * (i + 1) / n, a[1] + (b[1] - a[1]) * (i + 1) / n)
                            d.line([p, q], fill=COLORS[key], width=2)
                    else:
                        d.line([a, b], fill=COLORS[key], width=2)
                for p in pts:
                    d.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=COLORS[key])
    for i, (key, name) in enumerate(DATASETS):
        if key in rows:
            d.rectangle([pad + 160 * i, H - 16, pad + 10 + 160 * i, H - 6], fill=COLORS[key])
            d.text((pad + 16 + 160 * i, H - 18), name, fill="black")
    img.save(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--images", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "images"))
    args = ap.parse_args()
    rows = read(args.outdir)
    if not rows:
        sys.exit(f"no <data>.jsonl in {args.outdir}")
    summary = "one GPU"
    spath = os.path.join(args.outdir, "summary.txt")
    if os.path.exists(spath):
        with open(spath) as f:
            lines = f.read().splitlines()
        summary = "; ".join(lines[:2])
    os.makedirs(args.images, exist_ok=True)
    for key, _ in DATASETS:
        src = os.path.join(args.outdir, key + "-guidance.png")
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(args.images, f"guidance-{key}.png"))
    plot(rows, os.path.join(args.images, "guidance-tradeoff.png"))
    sys.stdout.write(table(rows, summary))


if __name__ == "__main__":
    main()
