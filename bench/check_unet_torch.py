"""Checks bench/unet_torch.py against the real diffusers: the tiny-ddpm-cifar10 UNet2DModel and its recorded
outputs (reference_io.safetensors, made by diffusers 0.40 / torch 2.11). Exits non-zero on a mismatch.

    /usr/bin/python3 bench/check_unet_torch.py [--shared ../shared/testdata]

The weights are loaded three ways, each with load_state_dict(strict=True): the torch.save .bin, the
safetensors file, and the safetensors file with pre-2023 attention names (query/key/value/proj_attn).
"""

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unet_torch  # noqa: E402

# Float32 on another torch version and another attention kernel (diffusers uses SDPA): agreement is
# expected to ~1e-6 on outputs of magnitude ~1; 1e-5 leaves room without hiding a real mistake.
TOL = 1e-5


def validate(shared, log=print):
    """Runs the check and returns the worst max|diff| over all weight files and outputs; raises
    AssertionError when any exceeds TOL."""
    d = os.path.join(shared, "diffusers", "tiny-ddpm-cifar10")
    cfg = unet_torch.load_config(os.path.join(d, "unet", "config.json"))
    ref = unet_torch.read_safetensors(os.path.join(d, "reference_io.safetensors"))
    sample = torch.from_numpy(ref["sample"])
    timesteps = torch.from_numpy(ref["timesteps"])

    sources = {
        "diffusion_pytorch_model.bin": lambda: torch.load(os.path.join(d, "unet", "diffusion_pytorch_model.bin"),
                                                          map_location="cpu"),
        "diffusion_pytorch_model.safetensors": lambda: unet_torch.read_safetensors(
            os.path.join(d, "unet", "diffusion_pytorch_model.safetensors")),
        "legacy_attention_names.safetensors": lambda: unet_torch.read_safetensors(
            os.path.join(d, "unet", "legacy_attention_names.safetensors")),
    }
    worst = 0.0
    bad = []
    for name, load in sources.items():
        model = unet_torch.from_config(cfg)
        unet_torch.load_state_dict(model, load())
        with torch.no_grad():
            outs = {
                "expected": model(sample, timesteps),
                "expected_t42": model(sample, 42),
            }
        for key, got in outs.items():
            want = ref[key]
            err = float(np.max(np.abs(got.numpy().astype(np.float64) - want.astype(np.float64))))
            worst = max(worst, err)
            ok = err <= TOL
            if not ok:
                bad.append(f"{name} {key}")
            log(f"{name:40s} {key:13s} max|diff| = {err:.3e}  (|want| max {np.abs(want).max():.3f})"
                f"  {'ok' if ok else 'MISMATCH'}")
    log(f"params: {unet_torch.param_count(model)}; worst max|diff| = {worst:.3e} (tolerance {TOL:g})")
    if bad:
        raise AssertionError(f"unet_torch does not reproduce diffusers' UNet2DModel: {', '.join(bad)}")
    return worst


def default_shared():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("DDPM_SHARED_TESTDATA", os.path.join(here, "..", "..", "shared", "testdata"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=default_shared(), help="the shared testdata folder")
    args = ap.parse_args()
    try:
        validate(args.shared)
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
