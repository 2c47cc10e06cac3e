"""Guided runs of diffusers on configurations the CI fixture (tiny-cond-gray-16) does not cover, compared
with `ddpm sample --class`: class_embed_type "timestep" (with --null-label), other prediction types, and
DDIM with eta > 0. Outside CI: it needs diffusers (the GPU machine's /opt/torch/.venv has torch; run it
where diffusers imports) and .bin/ddpm.

    python bench/check_guidance_diffusers.py [--ddpm .bin/ddpm] [--work /tmp/guidance-check]

For each case: a random-weight UNet2DModel (1x16x16) in a DDPMPipeline directory, a guided run of
diffusers' scheduler at scale 3 on the CPU in float32 (labels [1, 8], null label 10, both branches in one
doubled batch), with x_T and the step noise recorded; then ddpm sample on the same directory with
--init/--noise, and the max abs difference of x_0. Prints one line per case and exits 1 if any is over
its tolerance. Written from diffusers' documented API (UNet2DModel, DDPMScheduler, DDIMScheduler).
"""

import argparse
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unet_torch  # noqa: E402  (write_safetensors / read_safetensors only)

SCALE = 3.0
LABELS = [1, 8]
NULL = 10

# name, UNet class settings, prediction_type, scheduler, steps, eta, tolerance
CASES = [
    ("timestep_eps_ddpm20", {"class_embed_type": "timestep"}, "epsilon", "ddpm", 20, None, 1e-4),
    ("timestep_v_ddim10", {"class_embed_type": "timestep"}, "v_prediction", "ddim", 10, 0.0, 3e-3),
    ("learned_sample_ddim10_eta1", {"num_class_embeds": 11}, "sample", "ddim", 10, 1.0, 1e-3),
    ("learned_v_ddpm20", {"num_class_embeds": 11}, "v_prediction", "ddpm", 20, None, 1e-4),
]


def run_case(name, emb, prediction, kind, steps, eta, work, seed):
    from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(16, 32),
                       layers_per_block=1, norm_num_groups=8, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), **emb).eval()
    ddpm = DDPMScheduler(prediction_type=prediction, variance_type="fixed_large", clip_sample=True)
    folder = os.path.join(work, name)
    DDPMPipeline(unet=unet, scheduler=ddpm).save_pretrained(folder)
    sched = DDIMScheduler.from_config(ddpm.config) if kind == "ddim" else ddpm
    sched.set_timesteps(steps)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn((len(LABELS), 1, 16, 16), generator=gen)
    x_T = x.clone()
    labels = torch.tensor(LABELS)
    both = torch.cat([labels, torch.full_like(labels, NULL)])
    noise = []
    with torch.no_grad():
        for t in sched.timesteps:
            m = unet(torch.cat([x, x]), t, class_labels=both).sample
            cond, uncond = m.chunk(2)
            m = uncond + SCALE * (cond - uncond)
            if kind == "ddim":
                z = torch.randn(x.shape, generator=gen)
                noise.append(z)
                x = sched.step(m, t, x, eta=eta, variance_noise=z).prev_sample
            else:
                # DDPMScheduler draws torch.randn(shape, generator) for t > 0: draw the same numbers first.
                state = gen.get_state()
                z = torch.randn(x.shape, generator=gen)
                gen.set_state(state)
                if int(t) > 0:
                    noise.append(z)
                x = sched.step(m, t, x, generator=gen).prev_sample
    ref = os.path.join(folder, "guided_run.safetensors")
    unet_torch.write_safetensors(ref, {"x_T": x_T.numpy(), "noise": torch.stack(noise).numpy(), "x_0": x.numpy()})
    return folder, ref


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ddpm", default=".bin/ddpm")
    ap.add_argument("--work", default="/tmp/guidance-check")
    args = ap.parse_args()
    try:
        import diffusers
    except ImportError:
        print("check_guidance_diffusers: diffusers is not installed here; nothing checked")
        return 0
    os.makedirs(args.work, exist_ok=True)
    failed = False
    print(f"diffusers {diffusers.__version__}, torch {torch.__version__}; guidance {SCALE}, labels {LABELS}, null {NULL}")
    for i, (name, emb, prediction, kind, steps, eta, tol) in enumerate(CASES):
        folder, ref = run_case(name, emb, prediction, kind, steps, eta, args.work, 100 + i)
        out = os.path.join(folder, "ours.safetensors")
        cmd = [args.ddpm, "sample", "--model", folder, "--scheduler", kind, "--steps", str(steps),
               "--class", ",".join(map(str, LABELS)), "--guidance", str(SCALE), "--null-label", str(NULL),
               "--init", ref + "#x_T", "--noise", ref + "#noise", "--out", out, "--exact"]
        if eta is not None:
            cmd += ["--eta", str(eta)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            print(f"{name:28s} FAILED to run: {p.stderr.strip().splitlines()[-1:]}")
            failed = True
            continue
        got = unet_torch.read_safetensors(out)["sample"]
        want = unet_torch.read_safetensors(ref)["x_0"]
        err = float(np.max(np.abs(got.astype(np.float64) - want)))
        ok = err <= tol
        failed |= not ok
        print(f"{name:28s} max|ours - diffusers| = {err:.3g} (tolerance {tol:g}) {'ok' if ok else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
