"""PyTorch DistributedDataParallel reference for bench/gpu_multi.sh: the same UNet as ours
(bench/unet_torch.py, from the `mnist` or `cifar10` preset of unet/presets.go), the same training step
as bench/torch_bench.py (closed-form jump, MSE on eps, AdamW lr 2e-4 wd 0.01, EMA 0.999 every step on
every rank), one process per GPU, the gradient all-reduced by DDP over NCCL. --batch is per GPU; the
global batch is --batch x world size. Rank 0 prints one JSON line (images_per_s counts all GPUs).

    torchrun --standalone --nproc_per_node 4 bench/torch_ddp.py --preset cifar10 --batch 64 --steps 200
    torchrun --standalone --nproc_per_node 2 bench/torch_ddp.py --device cpu --batch 2 --steps 2   # smoke test (gloo)
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unet_torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# unet/presets.go's "cifar10" (google/ddpm-cifar10-32's architecture) as a config.json; "mnist" is the
# bundled model's config, which is the "mnist" preset.
CIFAR10 = {
    "sample_size": 32, "in_channels": 3, "out_channels": 3,
    "block_out_channels": [128, 256, 256, 256], "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": None, "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1,
    "norm_eps": 1e-6, "norm_num_groups": 32,
}

# Forward FLOPs per image, multiply-add = 2 (unet.Model.FLOPs, measured at commit 834951a).
FWD_FLOPS = {"mnist": 581439488, "cifar10": 12437946368}


def config_for(preset):
    if preset == "mnist":
        return unet_torch.load_config(os.path.join(ROOT, "models/mnist/unet/config.json"))
    if preset == "cifar10":
        return dict(CIFAR10)
    raise SystemExit(f"torch_ddp: unknown preset {preset!r}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--preset", choices=["mnist", "cifar10"], default="mnist")
    p.add_argument("--batch", type=int, default=64, help="per GPU")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--mode", choices=["eager", "compile"], default="eager")
    p.add_argument("--device", default="cuda", help="cuda (NCCL), or cpu (gloo) for a smoke test")
    args = p.parse_args()

    cuda = args.device == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", rank))
    dev = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    cfg = config_for(args.preset)
    m = unet_torch.from_config(cfg, seed=0).train().to(dev)
    with torch.no_grad():
        m.conv_out.weight.zero_()
        m.conv_out.bias.zero_()
    params = list(m.parameters())
    ddp = torch.nn.parallel.DistributedDataParallel(m, device_ids=[local] if cuda else None)
    net = torch.compile(ddp) if args.mode == "compile" else ddp
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01, **({"fused": True} if cuda else {}))
    ema = [q.detach().clone() for q in params]

    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    ab = torch.cumprod(1 - betas, 0).float().to(dev)
    g = torch.Generator(device=dev).manual_seed(1000 + rank)  # each rank draws its own part of the batch
    c, s = cfg["in_channels"], cfg["sample_size"]
    data = torch.rand(4096, c, s, s, device=dev, generator=g) * 2 - 1

    def step():
        idx = torch.randint(0, data.shape[0], (args.batch,), device=dev, generator=g)
        x0 = data[idx]
        t = torch.randint(0, 1000, (args.batch,), device=dev, generator=g)
        eps = torch.randn(x0.shape, device=dev, generator=g)
        a = ab[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        loss = F.mse_loss(net(xt, t), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # DDP all-reduces the gradient here, overlapped with the backward pass
        opt.step()
        with torch.no_grad():
            if hasattr(torch, "_foreach_lerp_"):
                torch._foreach_lerp_(ema, params, 1 - 0.999)
            else:  # torch 1.13 (the CPU smoke test here)
                for e, q in zip(ema, params):
                    e.lerp_(q, 1 - 0.999)
        return loss

    def sync():
        if cuda:
            torch.cuda.synchronize()
        dist.barrier()
        return time.perf_counter()

    t0 = sync()
    step()
    first = sync() - t0
    for _ in range(min(20, args.steps)):  # warm-up
        step()
    t1 = sync()
    for _ in range(args.steps):
        loss = step()
    el = sync() - t1
    loss = loss.detach()
    dist.all_reduce(loss)
    if rank == 0:
        gb = args.batch * world
        flops = 3 * FWD_FLOPS[args.preset] * gb
        print(json.dumps({
            "what": "train", "impl": "pytorch-ddp", "mode": args.mode, "preset": args.preset, "devices": world,
            "batch": gb, "per_device_batch": args.batch, "params": sum(q.numel() for q in params),
            "first_call_s": first, "steps": args.steps, "step_ms": el * 1000 / args.steps,
            "images_per_s": args.steps * gb / el, "tflops": flops / (el / args.steps) / 1e12,
            "last_loss": loss.item() / world, "torch": torch.__version__,
            "device": torch.cuda.get_device_name(dev) if cuda else "cpu"}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
