"""PyTorch's side of bench/cpu_bench.sh: the bundled MNIST UNet (bench/unet_torch.py, the same network and
weights as `ddpm`) on the CPU, forward ms per image at a batch size, or a training step (MSE on eps,
AdamW) at a batch size, on a given number of threads. Prints one line: the median ms per image.

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
    p.add_argument("--what", choices=["forward", "train"], default="forward")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = unet_torch.load_config(os.path.join(ROOT, "models/mnist/unet/config.json"))
    m = unet_torch.from_config(cfg, seed=0)
    sd = unet_torch.read_safetensors(os.path.join(ROOT, "models/mnist/unet/diffusion_pytorch_model.safetensors"))
    unet_torch.load_state_dict(m, {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in sd.items()})
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, 1, 28, 28, generator=g)
    t = torch.randint(0, 1000, (a.batch,), generator=g)
    times = []
    if a.what == "forward":
        m.eval()
        with torch.no_grad():
            m(x, t)
            for _ in range(a.reps):
                t0 = time.perf_counter()
                m(x, t)
                times.append(time.perf_counter() - t0)
    else:
        m.train()
        opt = torch.optim.AdamW(m.parameters(), lr=2e-4, weight_decay=0.01)
        eps = torch.randn_like(x)
        for i in range(a.reps + 1):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(m(x, t), eps)
            loss.backward()
            opt.step()
            if i > 0:
                times.append(time.perf_counter() - t0)
    print(f"{statistics.median(times) * 1000 / a.batch:.2f}")


if __name__ == "__main__":
    main()
