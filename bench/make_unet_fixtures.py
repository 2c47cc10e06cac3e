"""Makes golden UNet2DModel fixtures for configurations that the one real diffusers fixture
(tiny-ddpm-cifar10) does not cover, for the Go UNet's tests.

    /usr/bin/python3 bench/make_unet_fixtures.py            # validate, then (re)write unet/testdata/configs/
    /usr/bin/python3 bench/make_unet_fixtures.py --check    # validate, then compare with the files there

The outputs come from bench/unet_torch.py, our PyTorch re-implementation, NOT from diffusers. The script
first runs check_unet_torch.validate (the re-implementation against diffusers' recorded outputs) and
writes nothing if that fails; the measured error goes into the README it writes.

Each fixture is a folder <name>/ with
  config.json                          full UNet2DModel config (sorted keys, as diffusers writes them)
  diffusion_pytorch_model.safetensors  weights, diffusers' names, F32: PyTorch's default init (seeded),
                                       GroupNorm weight 1 + 0.1 z and bias 0.1 z so they matter
  io.safetensors                       sample F32 [2,C,H,W] (H = W = sample_size), timesteps I64 [2], (class_labels I64 [2]),
                                       expected F32 = model(sample, timesteps, class_labels)
Everything is seeded; a rerun on the same torch build gives the same bytes.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_unet_torch  # noqa: E402
import unet_torch  # noqa: E402

MAX_BYTES = 300_000  # per fixture folder
BATCH = 2

# The common starting point: the structure of google/ddpm-cifar10-32 (and of the diffusers fixture), shrunk.
BASE = {
    "sample_size": 8,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "freq_shift": 1,
    "flip_sin_to_cos": False,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [8, 16],
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 0,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": None,
    "norm_num_groups": 4,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-6,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
}

# name, what it exercises, seed, changes to BASE. Seeds are fixed: changing one changes the fixture.
FIXTURES = [
    ("four_levels_multihead",
     "16x16, 4 levels [8, 8, 8, 16], attention at levels 1 and 3, attention_head_dim 4: 2 heads at level 1 "
     "(8 channels), 4 heads at level 3 and in the mid block (16 channels); layers_per_block 1",
     101, {"block_out_channels": [8, 8, 8, 16],
           "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
           "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
           "attention_head_dim": 4, "layers_per_block": 1, "sample_size": 16}),
    ("flip_shift0_pad1",
     "flip_sin_to_cos true, freq_shift 0, downsample_padding 1 (symmetric conv padding)",
     102, {"flip_sin_to_cos": True, "freq_shift": 0, "downsample_padding": 1}),
    ("gray_mid_attention_only",
     "in/out_channels 1, 16x16, 3 levels [4, 8, 16] without attention blocks, attention only in the mid "
     "block (attention_head_dim 4: 4 heads of 16 channels), norm_num_groups 2",
     103, {"in_channels": 1, "out_channels": 1, "sample_size": 16, "block_out_channels": [4, 8, 16],
           "down_block_types": ["DownBlock2D"] * 3, "up_block_types": ["UpBlock2D"] * 3,
           "attention_head_dim": 4, "norm_num_groups": 2}),
    ("scale_shift",
     'resnet_time_scale_shift "scale_shift": h = norm2(h) * (1 + scale) + shift; time_emb_proj is 2x wide; '
     "the mid attention has no group_norm (attn_norm_num_groups null); layers_per_block 1 (size)",
     104, {"resnet_time_scale_shift": "scale_shift", "layers_per_block": 1}),
    ("class_conditional",
     "num_class_embeds 3: class_embedding.weight [3, 32] added to the time embedding; io has class_labels",
     105, {"num_class_embeds": 3}),
    ("class_timestep",
     'class_embed_type "timestep": the label through the sinusoidal projection and class_embedding.linear_1/2 '
     "(labels up to 10); flip_sin_to_cos true, freq_shift 0 so both projections use them",
     111, {"class_embed_type": "timestep", "flip_sin_to_cos": True, "freq_shift": 0}),
    ("class_identity",
     'class_embed_type "identity": class_labels are float embeddings [2, 32] added to the time embedding',
     112, {"class_embed_type": "identity"}),
    ("center_midscale2_lpb1",
     "center_input_sample true (x -> 2x - 1, inputs in [0, 1)), mid_block_scale_factor 2 (mid resnets and "
     "attention divide by 2), layers_per_block 1",
     106, {"center_input_sample": True, "mid_block_scale_factor": 2, "layers_per_block": 1}),
    ("no_mid_block",
     "mid_block_type null: no mid_block.* weights, the down path feeds the up path directly "
     "(add_attention false)",
     107, {"mid_block_type": None, "add_attention": False}),
    ("mid_without_attention",
     "UNetMidBlock2D with add_attention false: two mid resnets, no mid attention",
     108, {"add_attention": False}),
    ("attn_norm_groups",
     "attn_norm_num_groups 2 with norm_num_groups 4: only the mid attention's group_norm has 2 groups",
     109, {"attn_norm_num_groups": 2}),
    ("scale_shift_attn_norm_groups",
     'resnet_time_scale_shift "scale_shift" with attn_norm_num_groups 2: an explicit value gives the mid '
     "attention a group_norm even under scale_shift; layers_per_block 1 (size)",
     110, {"resnet_time_scale_shift": "scale_shift", "attn_norm_num_groups": 2, "layers_per_block": 1}),
]


def config_for(changes):
    c = dict(BASE)
    c.update(changes)
    assert set(c) == set(unet_torch.DEFAULTS), "BASE must list every UNet2DModel field"
    return {"_class_name": "UNet2DModel", **c}


def build(changes, seed):
    """Returns (config, weights {name: array}, io {name: array}) for one fixture."""
    cfg = config_for(changes)
    model = unet_torch.from_config(cfg, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1_000_000)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
        shape = (BATCH, cfg["in_channels"], cfg["sample_size"], cfg["sample_size"])
        if cfg["center_input_sample"]:
            sample = torch.rand(shape, generator=gen)  # images in [0, 1), as center_input_sample expects
        else:
            sample = torch.randn(shape, generator=gen)
        timesteps = torch.randint(0, 1000, (BATCH,), generator=gen, dtype=torch.int64)
        io = {"sample": sample, "timesteps": timesteps}
        labels = None
        if cfg["class_embed_type"] == "identity":
            temb_dim = cfg["block_out_channels"][0] * 4
            labels = torch.randn((BATCH, temb_dim), generator=gen)
            io["class_labels"] = labels
        elif cfg["class_embed_type"] == "timestep":
            labels = torch.randint(0, 11, (BATCH,), generator=gen, dtype=torch.int64)
            io["class_labels"] = labels
        elif cfg["num_class_embeds"] is not None:
            labels = torch.randint(0, cfg["num_class_embeds"], (BATCH,), generator=gen, dtype=torch.int64)
            io["class_labels"] = labels
        io["expected"] = model(sample, timesteps, labels)
    weights = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    for k, v in weights.items():
        assert v.dtype == np.float32 and np.all(v != 0), f"{k}: want nonzero float32 weights"
    io = {k: v.numpy().copy() for k, v in io.items()}
    return cfg, weights, io, model


def write_atomic(path, write):
    tmp = path + ".tmp"
    write(tmp)
    os.replace(tmp, path)


def write_fixture(folder, cfg, weights, io):
    os.makedirs(folder, exist_ok=True)

    def write_json(p):
        with open(p, "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")

    write_atomic(os.path.join(folder, "config.json"), write_json)
    meta = {"format": "pt", "source": "ddpm bench/make_unet_fixtures.py (unet_torch.py), not diffusers"}
    write_atomic(os.path.join(folder, "diffusion_pytorch_model.safetensors"),
                 lambda p: unet_torch.write_safetensors(p, weights, meta))
    write_atomic(os.path.join(folder, "io.safetensors"), lambda p: unet_torch.write_safetensors(p, io, meta))
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    if size > MAX_BYTES:
        raise SystemExit(f"{folder}: {size} bytes, over the {MAX_BYTES} limit: shrink the config")
    return size


def check_fixture(folder, cfg, weights, io):
    """Compares a fixture on disk with a fresh build; returns a list of differences."""
    problems = []
    with open(os.path.join(folder, "config.json")) as f:
        if json.load(f) != cfg:
            problems.append("config.json differs")
    for fname, want in (("diffusion_pytorch_model.safetensors", weights), ("io.safetensors", io)):
        got = unet_torch.read_safetensors(os.path.join(folder, fname))
        if set(got) != set(want):
            problems.append(f"{fname}: tensors {sorted(set(got) ^ set(want))} differ")
            continue
        for k in want:
            if got[k].shape != want[k].shape or got[k].dtype != want[k].dtype:
                problems.append(f"{fname}: {k}: {got[k].dtype}{list(got[k].shape)}, want "
                                f"{want[k].dtype}{list(want[k].shape)}")
            elif k == "expected":
                err = float(np.max(np.abs(got[k].astype(np.float64) - want[k])))
                if err > 1e-5:
                    problems.append(f"{fname}: expected: max|diff| {err:.2e}")
            elif not np.array_equal(got[k], want[k]):
                problems.append(f"{fname}: {k}: values differ")
    return problems


README = """# UNet2DModel golden fixtures (generated)

These fixtures come from **our PyTorch re-implementation** of diffusers' `UNet2DModel`
(`bench/unet_torch.py`), **NOT from diffusers itself**. That re-implementation was validated against the
real diffusers fixture `../shared/testdata/diffusers/tiny-ddpm-cifar10` (diffusers 0.40 / torch 2.11):
max abs error {err:.1e} over `expected` and `expected_t42` (`bench/check_unet_torch.py`). The options below
are ones that fixture does not exercise, so their behaviour rests on our reading of diffusers' source.

Regenerate with `/usr/bin/python3 bench/make_unet_fixtures.py` (seeded; `--check` compares). Made with
torch {torch}.

Each folder: `config.json` (full UNet2DModel config), `diffusion_pytorch_model.safetensors` (weights,
diffusers' names, F32, PyTorch default init with randomized GroupNorm affine), `io.safetensors`
(`sample` F32 [2,C,H,W] with H = W = sample_size, `timesteps` I64 [2], `class_labels` I64 [2] where the model has a class
embedding (F32 [2, E] for class_embed_type "identity"), `expected` F32 = `model(sample, timesteps, class_labels)`). Outputs are float32 CPU results;
compare with a tolerance of ~1e-5.
Unless the table says otherwise a fixture is `BASE` in the script: 8x8, block_out_channels [8, 16],
DownBlock2D + AttnDownBlock2D, layers_per_block 2, attention_head_dim null, norm_num_groups 4,
freq_shift 1, flip_sin_to_cos false, downsample_padding 0.

| fixture | exercises | params | bytes |
| --- | --- | --- | --- |
{rows}
"""


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(here, "..", "unet", "testdata", "configs"))
    ap.add_argument("--shared", default=check_unet_torch.default_shared(), help="the shared testdata folder")
    ap.add_argument("--check", action="store_true", help="compare with the fixtures on disk; write nothing")
    args = ap.parse_args()

    try:
        err = check_unet_torch.validate(args.shared)
    except AssertionError as e:
        raise SystemExit(f"not writing fixtures: {e}")

    torch.set_num_threads(1)  # one summation order, so reruns give the same bytes
    rows, failed = [], False
    for name, what, seed, changes in FIXTURES:
        cfg, weights, io, model = build(changes, seed)
        folder = os.path.join(args.out, name)
        out = io["expected"]
        stats = f"|expected| mean {np.abs(out).mean():.3f} max {np.abs(out).max():.3f}"
        if not 0.05 < float(np.abs(out).mean()) < 20:
            raise SystemExit(f"{name}: output scale is off ({stats}): fix the init")
        if args.check:
            problems = check_fixture(folder, cfg, weights, io)
            failed |= bool(problems)
            print(f"{name:30s} {'ok' if not problems else 'DIFFERS: ' + '; '.join(problems)}")
        else:
            size = write_fixture(folder, cfg, weights, io)
            print(f"{name:30s} {unet_torch.param_count(model):7d} params {size:7d} bytes  {stats}")
            rows.append(f"| `{name}` | {what} | {unet_torch.param_count(model)} | {size} |")
    if args.check:
        sys.exit(1 if failed else 0)
    text = README.format(err=err, torch=torch.__version__, rows="\n".join(rows))

    def write_readme(p):
        with open(p, "w") as f:
            f.write(text)

    write_atomic(os.path.join(args.out, "README.md"), write_readme)


if __name__ == "__main__":
    main()
