"""Writes resize_torch.safetensors: reference outputs of
torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
(no antialias), the resize pytorch-fid's InceptionV3 applies to its input.

Run with PyTorch 1.13 (CPU, float32):  python3 gen_resize.py

The inputs are not stored: x.flatten()[i] = ((i*2654435761 + 12345) mod 2^32 >> 8) / 2^24,
exact in float32, and the Go test computes the same values (resizeInput in resize_test.go).
To keep the file small only every 7th value of the flattened output is stored
(out.flatten()[::7]); 7 and 299 are coprime, so every output row and column is sampled.
"""
import json
import struct

import numpy as np
import torch
import torch.nn.functional as F

STRIDE = 7
CASES = {  # name: input shape [N,C,H,W]
    "28to299": (2, 1, 28, 28),
    "32to299": (1, 3, 32, 32),
    "64to299": (1, 1, 64, 64),
    "30x45to299": (1, 1, 30, 45),
    "512to299": (1, 1, 512, 512),
}


def make_input(shape):
    i = np.arange(int(np.prod(shape)), dtype=np.uint64)
    u = (i * np.uint64(2654435761) + np.uint64(12345)) & np.uint64(0xFFFFFFFF)
    return ((u >> np.uint64(8)).astype(np.float64) / 2.0**24).astype(np.float32).reshape(shape)


def main():
    tensors = {}
    for name, shape in CASES.items():
        x = torch.from_numpy(make_input(shape))
        out = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        assert out.dtype == torch.float32
        tensors[name] = out.numpy().reshape(-1)[::STRIDE].copy()
    header, blobs, offset = {}, [], 0
    meta = {"torch": torch.__version__, "stride": str(STRIDE)}
    for name, shape in CASES.items():
        meta["shape/" + name] = json.dumps(list(shape))
    header["__metadata__"] = meta
    for name, arr in tensors.items():
        b = arr.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": [arr.size], "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open("resize_torch.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


if __name__ == "__main__":
    main()
