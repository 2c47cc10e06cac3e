"""A compact PyTorch re-implementation of diffusers' UNet2DModel, for the subset ddpm's Go UNet supports.

It is the slow, obvious reference beside unet/: same architecture, same config.json fields (with
UNet2DModel's defaults for absent keys) and the same state-dict names, so
`model.load_state_dict(diffusers_state_dict, strict=True)` works. check_unet_torch.py pins it against
outputs of the real diffusers; make_unet_fixtures.py uses it to make golden files for configurations
that the one diffusers fixture does not cover.

Supported (anything else raises NotImplementedError):
  time_embedding_type "positional"      Timesteps(flip_sin_to_cos, freq_shift) -> TimestepEmbedding
  class embedding                       num_class_embeds with class_embed_type null (nn.Embedding);
                                        class_embed_type "timestep" (sinusoidal -> TimestepEmbedding) or
                                        "identity" (class_labels are embeddings [N, time_embed_dim])
  down blocks                           DownBlock2D, AttnDownBlock2D (downsample_type "conv")
  mid block                             UNetMidBlock2D (add_attention, attn_norm_num_groups) or null
  up blocks                             UpBlock2D, AttnUpBlock2D (upsample_type "conv")
  resnet_time_scale_shift               "default", "scale_shift"

Written from reading diffusers' source (models/unets/unet_2d.py, unet_2d_blocks.py, resnet.py,
downsampling.py, upsampling.py, attention_processor.py, embeddings.py); the code here is our own.

Needs only torch (1.13 is enough) and numpy. Safetensors files are read and written with struct, json
and numpy (read_safetensors / write_safetensors).
"""

import json
import math
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# UNet2DModel.__init__'s defaults (diffusers 0.40), by config.json name.
DEFAULTS = {
    "sample_size": None,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896],
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
}

# Keys of a diffusers config.json that do not describe the network.
META_KEYS = {"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values"}

# Attention parameter names of checkpoints saved before diffusers 0.15 (google/ddpm-*), and today's.
LEGACY_ATTENTION_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def full_config(config):
    """Returns config (a config.json dict) with UNet2DModel's defaults filled in for absent keys."""
    unknown = set(config) - set(DEFAULTS) - META_KEYS
    if unknown:
        raise ValueError(f"unet_torch: unknown UNet2DModel config keys {sorted(unknown)}")
    cls = config.get("_class_name", "UNet2DModel")
    if cls != "UNet2DModel":
        raise ValueError(f"unet_torch: _class_name {cls!r}, want UNet2DModel")
    c = dict(DEFAULTS)
    c.update({k: v for k, v in config.items() if k not in META_KEYS})
    return c


def _activation(name):
    # diffusers' get_activation: "swish" and "silu" are the same function.
    table = {"silu": nn.SiLU, "swish": nn.SiLU, "mish": nn.Mish, "gelu": nn.GELU, "relu": nn.ReLU}
    if name not in table:
        raise NotImplementedError(f"unet_torch: act_fn {name!r}")
    return table[name]()


def timestep_embedding(t, dim, flip_sin_to_cos, shift, max_period=10000):
    """Sinusoidal embedding of timesteps t [N] -> [N, dim] (diffusers' get_timestep_embedding):

        freq_i = exp(-ln(max_period) * i / (dim/2 - shift)),  i = 0 .. dim/2-1
        emb    = [sin(t * freq), cos(t * freq)]   ([cos, sin] when flip_sin_to_cos); zero-padded if dim is odd

    shift is freq_shift (downscale_freq_shift): 1 in the original DDPM code, 0 in most later models.
    """
    half = dim // 2
    # Same operation order and dtypes as diffusers: exponent in float32, t cast to float32.
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=t.device)
    exponent = exponent / (half - shift)
    freqs = torch.exp(exponent)
    args = t[:, None].float() * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


class TimestepEmbedding(nn.Module):
    """linear_1 -> SiLU -> linear_2 (always SiLU, whatever act_fn says, as in UNet2DModel)."""

    def __init__(self, in_dim, dim):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(self.act(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    """GroupNorm -> act -> conv1 (+ time) -> GroupNorm -> act -> dropout -> conv2, plus the input
    (through a 1x1 conv_shortcut when the channel count changes), all divided by output_scale_factor.

    time "default":     h = conv1(...) + time_emb_proj(act(temb));      h = norm2(h)
    time "scale_shift": scale, shift = chunk(time_emb_proj(act(temb)));  h = norm2(h) * (1 + scale) + shift
    """

    def __init__(self, cin, cout, temb_dim, groups, eps, act_fn, time_shift, dropout, output_scale_factor=1.0):
        super().__init__()
        if time_shift not in ("default", "scale_shift"):
            raise NotImplementedError(f"unet_torch: resnet_time_scale_shift {time_shift!r}")
        self.time_shift = time_shift
        self.output_scale_factor = output_scale_factor
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1)
        self.time_emb_proj = nn.Linear(temb_dim, cout * (2 if time_shift == "scale_shift" else 1))
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps, affine=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, kernel_size=3, stride=1, padding=1)
        self.nonlinearity = _activation(act_fn)
        self.conv_shortcut = nn.Conv2d(cin, cout, kernel_size=1, stride=1, padding=0) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(self.nonlinearity(self.norm1(x)))
        t = self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        if self.time_shift == "default":
            h = self.norm2(h + t)
        else:
            scale, shift = torch.chunk(t, 2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(self.nonlinearity(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / self.output_scale_factor


class Attention(nn.Module):
    """Self-attention over the H*W positions of [N,C,H,W] (diffusers' Attention with AttnProcessor2_0, as
    built by the UNet2D blocks: bias, residual connection, optional GroupNorm first):

        x' = group_norm(x) as [N, HW, C];  q, k, v = to_q(x'), to_k(x'), to_v(x'), split into heads
        out = to_out.0(softmax(q k^T / sqrt(head_dim)) v);  y = (out + x) / rescale_output_factor
    """

    def __init__(self, channels, head_dim, norm_groups, eps, rescale_output_factor=1.0):
        super().__init__()
        self.heads = channels // head_dim
        self.head_dim = head_dim
        inner = self.heads * head_dim
        self.scale = head_dim ** -0.5
        self.rescale_output_factor = rescale_output_factor
        self.group_norm = nn.GroupNorm(norm_groups, channels, eps=eps, affine=True) if norm_groups else None
        self.to_q = nn.Linear(channels, inner)
        self.to_k = nn.Linear(channels, inner)
        self.to_v = nn.Linear(channels, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, channels), nn.Dropout(0.0)])

    def forward(self, x):
        n, c, hgt, wid = x.shape
        residual = x
        h = x.view(n, c, hgt * wid)  # [N, C, L]
        if self.group_norm is not None:
            h = self.group_norm(h)
        h = h.transpose(1, 2)  # [N, L, C]

        def heads(y):  # [N, L, heads*hd] -> [N, heads, L, hd]
            return y.view(n, -1, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.to_q(h)), heads(self.to_k(h)), heads(self.to_v(h))
        w = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        w = torch.softmax(w.float(), dim=-1).to(q.dtype)  # softmax in float32 (upcast_softmax)
        out = torch.matmul(w, v).transpose(1, 2).reshape(n, -1, self.heads * self.head_dim)
        out = self.to_out[1](self.to_out[0](out))
        out = out.transpose(1, 2).reshape(n, c, hgt, wid)
        return (out + residual) / self.rescale_output_factor


class Downsample2D(nn.Module):
    """3x3 conv with stride 2. padding 0 means diffusers' asymmetric pad: one zero row/column at the bottom
    and right (F.pad (0,1,0,1)), then the conv without padding; otherwise the conv pads by `padding`."""

    def __init__(self, channels, padding):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=padding)

    def forward(self, x):
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0)
        return self.conv(x)


class Upsample2D(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv with padding 1."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    """DownBlock2D (attention=False) or AttnDownBlock2D: num_layers resnets, each followed by attention
    when it has one, then the downsampler unless it is the last level. Returns the output and the skip
    tensors (one per resnet, one for the downsampler)."""

    def __init__(self, cin, cout, temb_dim, num_layers, add_downsample, attention, head_dim, c):
        super().__init__()
        groups, eps = c["norm_num_groups"], c["norm_eps"]
        self.resnets = nn.ModuleList(
            ResnetBlock2D(cin if i == 0 else cout, cout, temb_dim, groups, eps, c["act_fn"],
                          c["resnet_time_scale_shift"], c["dropout"])
            for i in range(num_layers))
        if attention:
            self.attentions = nn.ModuleList(Attention(cout, head_dim, groups, eps) for _ in range(num_layers))
        self.downsamplers = nn.ModuleList([Downsample2D(cout, c["downsample_padding"])]) if add_downsample else None

    def forward(self, x, temb):
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if hasattr(self, "attentions"):
                x = self.attentions[i](x)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpBlock(nn.Module):
    """UpBlock2D or AttnUpBlock2D: num_layers resnets, each on cat(x, skip) popped from the end, then
    attention when it has one, then the upsampler unless it is the last level."""

    def __init__(self, cin, prev_out, cout, temb_dim, num_layers, add_upsample, attention, head_dim, c):
        super().__init__()
        groups, eps = c["norm_num_groups"], c["norm_eps"]
        resnets = []
        for i in range(num_layers):
            skip_ch = cin if i == num_layers - 1 else cout
            res_in = prev_out if i == 0 else cout
            resnets.append(ResnetBlock2D(res_in + skip_ch, cout, temb_dim, groups, eps, c["act_fn"],
                                         c["resnet_time_scale_shift"], c["dropout"]))
        self.resnets = nn.ModuleList(resnets)
        if attention:
            self.attentions = nn.ModuleList(Attention(cout, head_dim, groups, eps) for _ in range(num_layers))
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if add_upsample else None

    def forward(self, x, skips, temb):
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb)
            if hasattr(self, "attentions"):
                x = self.attentions[i](x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class MidBlock(nn.Module):
    """UNetMidBlock2D with one layer: resnet, attention (if add_attention), resnet; every resnet and the
    attention divide their output by mid_block_scale_factor.

    The attention's GroupNorm has attn_norm_num_groups groups; when that is null, norm_num_groups groups
    if resnet_time_scale_shift is "default", and no GroupNorm at all otherwise (diffusers' rule).
    """

    def __init__(self, ch, temb_dim, head_dim, c):
        super().__init__()
        groups, eps, scale = c["norm_num_groups"], c["norm_eps"], c["mid_block_scale_factor"]
        attn_groups = c["attn_norm_num_groups"]
        if attn_groups is None:
            attn_groups = groups if c["resnet_time_scale_shift"] == "default" else None

        def resnet():
            return ResnetBlock2D(ch, ch, temb_dim, groups, eps, c["act_fn"], c["resnet_time_scale_shift"],
                                 c["dropout"], output_scale_factor=scale)

        self.resnets = nn.ModuleList([resnet(), resnet()])
        if c["add_attention"]:
            self.attentions = nn.ModuleList([Attention(ch, head_dim, attn_groups, eps, rescale_output_factor=scale)])

    def forward(self, x, temb):
        x = self.resnets[0](x, temb)
        if hasattr(self, "attentions"):
            x = self.attentions[0](x)
        return self.resnets[1](x, temb)


class UNet2DModel(nn.Module):
    """diffusers' UNet2DModel: forward(sample [N,C,H,W], timesteps [N] or scalar, class_labels [N]) -> [N,C',H,W]."""

    def __init__(self, config):
        super().__init__()
        c = full_config(config)
        self.config = c
        self._check(c)
        boc = list(c["block_out_channels"])
        n = len(boc)
        temb_dim = c["time_embedding_dim"] or boc[0] * 4

        def head_dim(ch):  # attention_head_dim null: one head as wide as the block
            return c["attention_head_dim"] if c["attention_head_dim"] is not None else ch

        self.conv_in = nn.Conv2d(c["in_channels"], boc[0], kernel_size=3, padding=1)
        self.time_embedding = TimestepEmbedding(boc[0], temb_dim)
        # diffusers: class_embed_type wins over num_class_embeds.
        if c["class_embed_type"] == "timestep":
            self.class_embedding = TimestepEmbedding(boc[0], temb_dim)
        elif c["class_embed_type"] == "identity":
            self.class_embedding = nn.Identity()
        elif c["num_class_embeds"] is not None:
            self.class_embedding = nn.Embedding(c["num_class_embeds"], temb_dim)
        else:
            self.class_embedding = None

        self.down_blocks = nn.ModuleList()
        out = boc[0]
        for i, kind in enumerate(c["down_block_types"]):
            cin, out = out, boc[i]
            self.down_blocks.append(DownBlock(cin, out, temb_dim, c["layers_per_block"], i < n - 1,
                                              kind == "AttnDownBlock2D", head_dim(out), c))

        self.mid_block = MidBlock(boc[-1], temb_dim, head_dim(boc[-1]), c) if c["mid_block_type"] is not None else None

        self.up_blocks = nn.ModuleList()
        rev = boc[::-1]
        out = rev[0]
        for i, kind in enumerate(c["up_block_types"]):
            prev, out = out, rev[i]
            cin = rev[min(i + 1, n - 1)]
            self.up_blocks.append(UpBlock(cin, prev, out, temb_dim, c["layers_per_block"] + 1, i < n - 1,
                                          kind == "AttnUpBlock2D", head_dim(out), c))

        self.conv_norm_out = nn.GroupNorm(c["norm_num_groups"], boc[0], eps=c["norm_eps"])
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(boc[0], c["out_channels"], kernel_size=3, padding=1)

    @staticmethod
    def _check(c):
        def unsupported(key, why):
            raise NotImplementedError(f"unet_torch: {key} = {c[key]!r}: {why}")

        if c["time_embedding_type"] != "positional":
            unsupported("time_embedding_type", 'only "positional"')
        if c["class_embed_type"] not in (None, "timestep", "identity"):
            unsupported("class_embed_type", 'only null (with num_class_embeds), "timestep" or "identity"')
        if c["mid_block_type"] not in (None, "UNetMidBlock2D"):
            unsupported("mid_block_type", "only UNetMidBlock2D or null")
        if any(t not in ("DownBlock2D", "AttnDownBlock2D") for t in c["down_block_types"]):
            unsupported("down_block_types", "only DownBlock2D and AttnDownBlock2D")
        if any(t not in ("UpBlock2D", "AttnUpBlock2D") for t in c["up_block_types"]):
            unsupported("up_block_types", "only UpBlock2D and AttnUpBlock2D")
        # DownBlock2D / UpBlock2D always use conv; these matter only for the Attn blocks.
        if c["downsample_type"] != "conv":
            unsupported("downsample_type", 'only "conv"')
        if c["upsample_type"] != "conv":
            unsupported("upsample_type", 'only "conv"')
        if c["norm_num_groups"] is None:
            unsupported("norm_num_groups", "null makes diffusers' own resnets fail")
        n = len(c["block_out_channels"])
        if len(c["down_block_types"]) != n or len(c["up_block_types"]) != n:
            raise ValueError("unet_torch: down_block_types, up_block_types and block_out_channels differ in length")

    def forward(self, sample, timesteps, class_labels=None):
        c = self.config
        if c["center_input_sample"]:
            sample = 2 * sample - 1.0
        if not torch.is_tensor(timesteps):
            timesteps = torch.tensor([timesteps], dtype=torch.long, device=sample.device)
        elif timesteps.dim() == 0:
            timesteps = timesteps[None].to(sample.device)
        timesteps = timesteps * torch.ones(sample.shape[0], dtype=timesteps.dtype, device=timesteps.device)

        t = timestep_embedding(timesteps, c["block_out_channels"][0], c["flip_sin_to_cos"], c["freq_shift"])
        emb = self.time_embedding(t.to(self.conv_in.weight.dtype))
        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("unet_torch: this model needs class_labels (it has a class embedding)")
            if c["class_embed_type"] == "timestep":
                # the label through the same sinusoidal projection as the timestep
                class_labels = timestep_embedding(class_labels, c["block_out_channels"][0], c["flip_sin_to_cos"],
                                                  c["freq_shift"])
            emb = emb + self.class_embedding(class_labels).to(emb.dtype)
        elif class_labels is not None:
            raise ValueError("unet_torch: class_labels given but the model has no class embedding")

        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, s = block(x, emb)
            skips.extend(s)
        if self.mid_block is not None:
            x = self.mid_block(x, emb)
        for block in self.up_blocks:
            x = block(x, skips, emb)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))


def from_config(config, seed=None):
    """Builds the model with PyTorch's default initialization (seeded when seed is given), in eval mode."""
    if seed is not None:
        torch.manual_seed(seed)
    return UNet2DModel(config).eval()


def param_count(model):
    """The number of scalar parameters."""
    return sum(p.numel() for p in model.parameters())


def canonical_name(name):
    """Maps a legacy attention parameter name (query/key/value/proj_attn) to today's diffusers name."""
    parts = name.split(".")
    if "attentions" in parts and len(parts) >= 2 and parts[-2] in LEGACY_ATTENTION_NAMES:
        return ".".join(parts[:-2] + [LEGACY_ATTENTION_NAMES[parts[-2]], parts[-1]])
    return name


def load_state_dict(model, state_dict):
    """Loads a diffusers state dict strictly, accepting legacy attention names. Values may be tensors or
    numpy arrays."""
    sd = {}
    for k, v in state_dict.items():
        name = canonical_name(k)
        if name in sd:
            raise ValueError(f"unet_torch: {k!r} and another key are both {name!r}")
        sd[name] = torch.as_tensor(np.asarray(v)) if not torch.is_tensor(v) else v
    model.load_state_dict(sd, strict=True)
    return model


def load_config(path):
    with open(path) as f:
        return json.load(f)


# --- safetensors, by hand (https://github.com/huggingface/safetensors: u64 header size, JSON header, data)

_ST_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32,
              "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_ST_NAMES = {np.dtype(v): k for k, v in _ST_DTYPES.items()}


def read_safetensors(path):
    """Returns {name: numpy array} (little-endian, C order) from a .safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        dt = np.dtype(_ST_DTYPES[info["dtype"]]).newbyteorder("<")
        out[name] = np.frombuffer(body[lo:hi], dtype=dt).reshape(info["shape"]).copy()
    return out


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: array} as .safetensors, tensors sorted by name, header padded to 8 bytes."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(np.asarray(tensors[name]))
        dt = a.dtype.newbyteorder("=")
        if dt not in _ST_NAMES:
            raise ValueError(f"write_safetensors: {name}: dtype {a.dtype} not supported")
        raw = a.astype(dt.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _ST_NAMES[dt], "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header = {"__metadata__": metadata, **header}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)
