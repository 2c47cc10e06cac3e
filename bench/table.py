"""Builds docs/benchmarks.md's table from the JSON lines of bench/gpu_bench.sh (ours and PyTorch's).

    python bench/table.py bench.jsonl "NVIDIA H200, 143771 MiB, 580.159.04" [--json out.json]
"""

import json
import sys

# Dense tensor-core peaks of the H100/H200 SXM (the same chip; NVIDIA's data sheets), TFLOP/s.
PEAK_TF32 = 494.7
PEAK_BF16 = 989.4
STEPS_PER_EPOCH = 60000 // 64  # MNIST, batch 64, last partial batch dropped


def main():
    path, card = sys.argv[1], sys.argv[2]
    rows = [json.loads(l) for l in open(path) if l.startswith("{")]

    def find(**kw):
        for r in rows:
            if all(r.get(k) == v for k, v in kw.items()):
                return r
        return None

    def ours(**kw):
        return find(backend="xla:cuda", **kw)

    def torch(mode, **kw):
        return find(impl="pytorch", mode=mode, **kw)

    def ips(r):
        return f"{r['images_per_s'] / 1000:.1f}k" if r else "not run"

    def ips2(a, b):  # two runs of the same figure (cold and warm cache): the steady rate of each
        if a and b:
            lo, hi = sorted([a["images_per_s"], b["images_per_s"]])
            return f"{lo / 1000:.1f}-{hi / 1000:.1f}k"
        return ips(a or b)

    def secs(r, key="wall_s"):
        return f"{r[key]:.1f}" if r else "not run"

    def tfl(r, peak):
        return f"{r['tflops']:.1f} ({100 * r['tflops'] / peak:.1f}%)" if r else "not run"

    def mem(r):
        return f"{r['smi_peak_mib']:,}" if r else "not run"

    def recipe(train, sample):
        if not train or not sample:
            return "not run"
        s = train["first_call_s"] + 40 * STEPS_PER_EPOCH * train["step_ms"] / 1000 + sample["wall_s"]
        return f"{s:.0f}*"

    def cw(kind, **kw):
        return ours(cache="cold", **kw), ours(cache="warm", **kw)

    modes = ["eager", "compile", "cudagraphs"]
    o64c, o64 = cw("train", what="train", batch=64, precision="fp32")
    o256c, o256 = cw("train", what="train", batch=256, precision="fp32")
    obf = ours(what="train", batch=64, precision="bf16")
    obf256 = ours(what="train", batch=256, precision="bf16")
    oddpmc, oddpm = cw("sample", what="sample", sampler="ddpm", n=64)
    oddimc, oddim = cw("sample", what="sample", sampler="ddim", n=256)
    orec = find(what="recipe", backend="xla:cuda")
    t64 = {m: torch(m, what="train", batch=64) for m in modes}
    tbf = {m: torch(m + "-bf16", what="train", batch=64) for m in modes}
    t256 = {m: torch(m, what="train", batch=256) for m in modes}
    tddpm = {m: torch(m, what="sample", sampler="ddpm", n=64) for m in modes}
    tddim = {m: torch(m, what="sample", sampler="ddim", n=256) for m in modes}

    def cold_warm(c, w, key):
        return f"{secs(c, key)} / {secs(w, key)}"

    rec = f"{orec['wall_s']:.0f} (run)" if orec and orec.get("rc") == 0 else recipe(o64c, oddpmc)
    lines = [
        f"Card: {card}. Model: the `mnist` preset UNet (2,734,945 parameters, 0.58 GFLOP per 28x28 image forward).",
        "",
        "| figure | ours | PyTorch eager | torch.compile | torch.compile, CUDA graphs |",
        "| --- | --- | --- | --- | --- |",
        f"| training step, batch 64, images/s (steady state; ours: two runs) | {ips2(o64c, o64)} | "
        + " | ".join(ips(t64[m]) for m in modes) + " |",
        f"| training step, batch 64, bf16 compute (PyTorch: autocast), images/s | {ips(obf)} | "
        + " | ".join(ips(tbf[m]) for m in modes) + " |",
        f"| training step, batch 256, images/s (ours: two runs) | {ips2(o256c, o256)} | "
        + " | ".join(ips(t256[m]) for m in modes) + " |",
        f"| training step, batch 256, bf16 compute, images/s | {ips(obf256)} | | | |",
        f"| first training step, batch 64 (compile, autotune), s: cold / warm cache | {cold_warm(o64c, o64, 'first_call_s')} | "
        + " | ".join(secs(t64[m], "first_call_s") for m in modes) + " |",
        f"| first training step, batch 256, s: cold / warm cache | {cold_warm(o256c, o256, 'first_call_s')} | "
        + " | ".join(secs(t256[m], "first_call_s") for m in modes) + " |",
        f"| DDPM 1000 steps, 64 samples, s (wall, weights to PNG): cold / warm cache | {cold_warm(oddpmc, oddpm, 'wall_s')} | "
        + " | ".join(secs(tddpm[m]) for m in modes) + " |",
        f"| ... steady sampling step, ms | {secs(oddpm, 'steady_step_ms')} | | | |",
        f"| DDIM 100 steps, 256 samples, s: cold / warm cache | {cold_warm(oddimc, oddim, 'wall_s')} | "
        + " | ".join(secs(tddim[m]) for m in modes) + " |",
        f"| the full recipe: 40 epochs batch 64 + 64 DDPM-1000 samples, s (* extrapolated from the first and steady steps) | {rec} | "
        + " | ".join(recipe(t64[m], tddpm[m]) for m in modes) + " |",
        f"| peak GPU memory, training batch 64, MiB (nvidia-smi, whole process) | {mem(o64)} | "
        + " | ".join(mem(t64[m]) for m in modes) + " |",
        f"| achieved TFLOP/s at batch 64 (% of the dense TF32 peak, {PEAK_TF32}) | {tfl(o64, PEAK_TF32)} | "
        + " | ".join(tfl(t64[m], PEAK_TF32) for m in modes) + " |",
        f"| achieved TFLOP/s at batch 256 (% of the dense TF32 peak) | {tfl(o256, PEAK_TF32)} | "
        + " | ".join(tfl(t256[m], PEAK_TF32) for m in modes) + " |",
        f"| achieved TFLOP/s, bf16, batch 64 / 256 (% of the dense bf16 peak, {PEAK_BF16}) | {tfl(obf, PEAK_BF16)} / {tfl(obf256, PEAK_BF16)} | "
        + " | ".join(tfl(tbf[m], PEAK_BF16) for m in modes) + " |",
    ]
    print("\n".join(lines))
    if len(sys.argv) > 4 and sys.argv[3] == "--json":
        with open(sys.argv[4], "w") as f:
            json.dump({"card": card, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
