"""PyTorch's side of bench/cpu_bench.sh: the bundled MNIST UNet (bench/unet_torch.py, the same network and
weights as `ddpm`) on the CPU, on a given number of threads. Prints two numbers, wall and CPU (all
threads' user + system time, which a machine shared with other work inflates less):

    --what forward: the median ms per image of a forward pass at --batch
    --what train:   the median ms per image of a training step (MSE on eps, AdamW) at --batch
    --what sample:  the seconds of the default `ddpm sample` done in PyTorch: load the model, DDIM 10 steps
                    (eta 0) of --batch images, end to end

    /usr/bin/python3 bench/cpu_torch.py --what forward --batch 64 --threads 1 --reps 5
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unet_torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--what", choices=["forward", "train", "sample"], default="forward")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    start, cpu0 = time.perf_counter(), time.process_time()
    cfg = unet_torch.load_config(os.path.join(ROOT, "models/mnist/unet/config.json"))
    m = unet_torch.from_config(cfg, seed=0)
    sd = unet_torch.read_safetensors(os.path.join(ROOT, "models/mnist/unet/diffusion_pytorch_model.safetensors"))
    unet_torch.load_state_dict(m, {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in sd.items()})
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, 1, 28, 28, generator=g)
    t = torch.randint(0, 1000, (a.batch,), generator=g)
    times, cpus = [], []
    if a.what == "sample":
        # DDIM (Song et al. 2021, Eq. 12) with eta 0 on the linear schedule, 10 of T = 1000 steps
        # (leading spacing: 900, 800, ..., 0), what `ddpm sample` runs for the bundled model.
        betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
        abar = torch.cumprod(1 - betas, 0)
        ts = list(range(900, -1, -100))
        m.eval()
        with torch.no_grad():
            xt = torch.randn(a.batch, 1, 28, 28, generator=g)
            for i, ti in enumerate(ts):
                eps = m(xt, torch.full((a.batch,), ti, dtype=torch.long))
                ab = abar[ti].item()
                abp = abar[ts[i + 1]].item() if i + 1 < len(ts) else 1.0
                x0 = ((xt - (1 - ab) ** 0.5 * eps) / ab**0.5).clamp(-1, 1)
                xt = abp**0.5 * x0 + (1 - abp) ** 0.5 * eps
        print(f"{time.perf_counter() - start:.2f} {time.process_time() - cpu0:.2f}")
        return
    if a.what == "forward":
        m.eval()
        with torch.no_grad():
            m(x, t)
            for _ in range(a.reps):
                t0, c0 = time.perf_counter(), time.process_time()
                m(x, t)
                times.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
    else:
        m.train()
        opt = torch.optim.AdamW(m.parameters(), lr=2e-4, weight_decay=0.01)
        eps = torch.randn_like(x)
        for i in range(a.reps + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(m(x, t), eps)
            loss.backward()
            opt.step()
            if i > 0:
                times.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
    print(f"{statistics.median(times) * 1000 / a.batch:.2f} {statistics.median(cpus) * 1000 / a.batch:.2f}")


if __name__ == "__main__":
    main()
