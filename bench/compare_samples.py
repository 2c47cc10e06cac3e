"""Max |a - b| between the "sample" tensors of two or more safetensors files written by `ddpm sample
--out X.safetensors`, the first file against each other one.

    python bench/compare_samples.py a.safetensors b.safetensors [c.safetensors ...]
"""

import json
import struct
import sys

import numpy as np


def read(path, key="sample"):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    info = head[key]
    assert info["dtype"] == "F32", info
    lo, hi = info["data_offsets"]
    return np.frombuffer(data[lo:hi], dtype="<f4").reshape(info["shape"])


def main():
    ref = read(sys.argv[1])
    for other in sys.argv[2:]:
        x = read(other)
        print(f"{sys.argv[1]} vs {other}: max |diff| {np.abs(ref - x).max():.3g}, identical: {np.array_equal(ref, x)}")


if __name__ == "__main__":
    main()
