"""PyTorch reference for docs/benchmarks.md: the same UNet (bench/unet_torch.py, built from the bundled
model's config.json, the same parameter count as ours), the same training step (closed-form jump, MSE
on eps, AdamW lr 2e-4 wd 0.01, EMA 0.999 every step) and the same samplers, timed the way
`ddpm bench` times ours. Prints one JSON object per line.

    python bench/torch_bench.py --what train --mode eager --batch 64 --steps 2000
    python bench/torch_bench.py --what sample --mode compile --sampler ddpm --steps 1000 --n 64

Modes: eager (fp32 with TF32 matmuls and convolutions allowed, as a user would set), eager-bf16
(autocast), compile (torch.compile default), cudagraphs (torch.compile mode="reduce-overhead"), and
compile-bf16 / cudagraphs-bf16 (the compiled modes under bf16 autocast).
The compiled modes use AdamW(fused=True), the fastest optimizer PyTorch ships; eager uses the default
(foreach), what the lesson's code runs.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unet_torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV = "cuda"


def model_for(mode, weights=True):
    cfg = unet_torch.load_config(os.path.join(ROOT, "models/mnist/unet/config.json"))
    m = unet_torch.from_config(cfg, seed=0)
    if weights:
        sd = unet_torch.read_safetensors(os.path.join(ROOT, "models/mnist/unet/diffusion_pytorch_model.safetensors"))
        unet_torch.load_state_dict(m, {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in sd.items()})
    return cfg, m.to(DEV)


def compiled(m, mode):
    mode = mode.removesuffix("-bf16")
    if mode == "compile":
        return torch.compile(m)
    if mode == "cudagraphs":
        return torch.compile(m, mode="reduce-overhead")
    return m


def sync_time():
    if DEV == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def peak_mib():
    return torch.cuda.max_memory_allocated() / 2**20 if DEV == "cuda" else 0.0


def device_name():
    return torch.cuda.get_device_name() if DEV == "cuda" else "cpu"


def train(args):
    cfg, m = model_for(args.mode, weights=False)
    with torch.no_grad():
        m.conv_out.weight.zero_()
        m.conv_out.bias.zero_()
    params = [p for p in m.parameters()]
    fused = DEV == "cuda" and not args.mode.startswith("eager")
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01, **({"fused": True} if fused else {}))
    ema = [p.detach().clone() for p in params]
    net = compiled(m, args.mode)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    ab = torch.cumprod(1 - betas, 0).float().to(DEV)
    g = torch.Generator(device=DEV).manual_seed(0)
    data = torch.rand(4096, cfg["in_channels"], 28, 28, device=DEV, generator=g) * 2 - 1
    bf16 = args.mode.endswith("-bf16")

    def step(i):
        idx = torch.randint(0, data.shape[0], (args.batch,), device=DEV, generator=g)
        x0 = data[idx]
        t = torch.randint(0, 1000, (args.batch,), device=DEV, generator=g)
        eps = torch.randn(x0.shape, device=DEV, generator=g)
        a = ab[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        with torch.autocast(DEV, dtype=torch.bfloat16, enabled=bf16):
            pred = net(xt, t)
        loss = F.mse_loss(pred.float(), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            if hasattr(torch, "_foreach_lerp_"):
                torch._foreach_lerp_(ema, params, 1 - 0.999)
            else:  # torch 1.13 (the CPU smoke test here)
                for e, q in zip(ema, params):
                    e.lerp_(q, 1 - 0.999)
        return loss

    DEV == "cuda" and torch.cuda.reset_peak_memory_stats()
    t0 = sync_time()
    step(0)
    first = sync_time() - t0
    for i in range(20):  # warm-up: cudagraphs records after a few calls
        step(i)
    t1 = sync_time()
    for i in range(args.steps):
        loss = step(i)
    el = sync_time() - t1
    flops = 3 * args.fwd_flops * args.batch
    print(json.dumps({"what": "train", "impl": "pytorch", "mode": args.mode, "batch": args.batch,
                      "params": sum(p.numel() for p in params), "first_call_s": first, "steps": args.steps,
                      "step_ms": el * 1000 / args.steps, "images_per_s": args.steps * args.batch / el,
                      "tflops": flops / (el / args.steps) / 1e12, "last_loss": loss.item(),
                      "peak_mem_mib": peak_mib(),
                      "torch": torch.__version__, "device": device_name()}), flush=True)


def sample(args):
    t0 = time.perf_counter()
    DEV == "cuda" and torch.cuda.reset_peak_memory_stats()
    cfg, m = model_for(args.mode)
    m.eval()
    net = compiled(m, args.mode)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float32).to(DEV)
    alphas = 1 - betas
    ab = torch.cumprod(alphas, 0)
    g = torch.Generator(device=DEV).manual_seed(0)
    shape = (args.n, cfg["in_channels"], 28, 28)
    x = torch.randn(shape, device=DEV, generator=g)
    T = 1000
    if args.sampler == "ddpm":
        ts = list(range(T - 1, -1, -T // args.steps))[: args.steps]
    else:
        ts = list(range(0, T, T // args.steps))[::-1]
    with torch.no_grad():
        for i, t in enumerate(ts):
            prev = ts[i + 1] if i + 1 < len(ts) else -1
            eps = net(x, torch.full((args.n,), t, device=DEV, dtype=torch.long))
            a, ap = ab[t], (ab[prev] if prev >= 0 else torch.tensor(1.0, device=DEV))
            x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
            if args.sampler == "ddpm":  # diffusers DDPMScheduler, variance fixed_large, clip_sample
                beta_t = 1 - a / ap
                x = (ap.sqrt() * beta_t / (1 - a)) * x0 + ((1 - beta_t).sqrt() * (1 - ap) / (1 - a)) * x
                if t > 0:
                    x = x + beta_t.sqrt() * torch.randn(shape, device=DEV, generator=g)
            else:  # DDIM, eta 0
                x = ap.sqrt() * x0 + (1 - ap).sqrt() * eps
    img = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
    grid_path = "/tmp/torch_samples.npy"
    np.save(grid_path, img)  # stands in for the PNG: the same device-to-host copy and a file write
    wall = time.perf_counter() - t0
    print(json.dumps({"what": "sample", "impl": "pytorch", "mode": args.mode, "sampler": args.sampler,
                      "steps": args.steps, "n": args.n, "wall_s": wall,
                      "peak_mem_mib": peak_mib(),
                      "torch": torch.__version__, "device": device_name()}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--what", choices=["train", "sample"], default="train")
    p.add_argument("--mode", choices=["eager", "eager-bf16", "compile", "compile-bf16", "cudagraphs", "cudagraphs-bf16"], default="eager")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--sampler", choices=["ddpm", "ddim"], default="ddpm")
    p.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke test")
    p.add_argument("--fwd-flops", type=float, default=581439488, help="forward FLOPs per image (unet.Model.FLOPs)")
    args = p.parse_args()
    global DEV
    DEV = args.device
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    train(args) if args.what == "train" else sample(args)


if __name__ == "__main__":
    main()
