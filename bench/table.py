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

    modes = ["eager", "compile", "cudagraphs"]
    o64 = ours(what="train", batch=64, precision="fp32", steps_per_call=1, cache="warm")
    o64c = ours(what="train", batch=64, precision="fp32", steps_per_call=1, cache="cold")
    o64k = ours(what="train", batch=64, precision="fp32", steps_per_call=10)
    o256 = ours(what="train", batch=256, precision="fp32")
    obf = ours(what="train", batch=64, precision="bf16")
    oddpm = ours(what="sample", sampler="ddpm", n=64)
    oddim = ours(what="sample", sampler="ddim", n=256)
    t64 = {m: torch(m, what="train", batch=64) for m in modes}
    tbf = torch("eager-bf16", what="train", batch=64)
    t256 = {m: torch(m, what="train", batch=256) for m in modes}
    tddpm = {m: torch(m, what="sample", sampler="ddpm", n=64) for m in modes}
    tddim = {m: torch(m, what="sample", sampler="ddim", n=256) for m in modes}

    lines = [
        f"Card: {card}. Model: the `mnist` preset UNet (2,734,945 parameters, 0.58 GFLOP per 28x28 image forward).",
        "",
        "| figure | ours | PyTorch eager | torch.compile | torch.compile, CUDA graphs |",
        "| --- | --- | --- | --- | --- |",
        f"| training step, batch 64, images/s (steady state) | {ips(o64)} (1 step/call); {ips(o64k)} (10 steps/call) | "
        + " | ".join(ips(t64[m]) for m in modes) + " |",
        f"| training step, batch 64, bf16 compute, images/s | {ips(obf)} | {ips(tbf)} (autocast) | | |",
        f"| training step, batch 256, images/s | {ips(o256)} | " + " | ".join(ips(t256[m]) for m in modes) + " |",
        f"| first training step (compile, autotune), s: cold / warm cache | {secs(o64c, 'first_call_s')} / {secs(o64, 'first_call_s')}"
        f" (10 steps/call: {secs(o64k, 'first_call_s')} cold) | "
        + " | ".join(secs(t64[m], "first_call_s") for m in modes) + " |",
        f"| DDPM 1000 steps, 64 samples, s (wall, weights to PNG) | {secs(oddpm)} | "
        + " | ".join(secs(tddpm[m]) for m in modes) + " |",
        f"| DDIM 100 steps, 256 samples, s | {secs(oddim)} | " + " | ".join(secs(tddim[m]) for m in modes) + " |",
        f"| the full recipe: 40 epochs batch 64 + 64 DDPM samples, s (* extrapolated from the steady step) | {recipe(o64c, oddpm)} | "
        + " | ".join(recipe(t64[m], tddpm[m]) for m in modes) + " |",
        f"| peak GPU memory, training batch 64, MiB (nvidia-smi, whole process) | {mem(o64)} | "
        + " | ".join(mem(t64[m]) for m in modes) + " |",
        f"| achieved TFLOP/s at batch 64 (% of the dense TF32 peak, {PEAK_TF32}) | {tfl(o64, PEAK_TF32)} | "
        + " | ".join(tfl(t64[m], PEAK_TF32) for m in modes) + " |",
        f"| achieved TFLOP/s at batch 256 (% of the dense TF32 peak) | {tfl(o256, PEAK_TF32)} | "
        + " | ".join(tfl(t256[m], PEAK_TF32) for m in modes) + " |",
    ]
    print("\n".join(lines))
    if len(sys.argv) > 4 and sys.argv[3] == "--json":
        with open(sys.argv[4], "w") as f:
            json.dump({"card": card, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
