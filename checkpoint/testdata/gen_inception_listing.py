"""Lists the tensors of pytorch-fid's Inception state dict fixture for the ReadTorch golden test.

Run from this directory with PyTorch 1.13: /usr/bin/python3 gen_inception_listing.py
Reads ../../../shared/testdata/fid/pt_inception-fixture.pth (or $DDPM_SHARED_TESTDATA/fid/...) and
writes pt_inception_listing.json: per tensor, in file order, its name, dtype, shape, the float64 sum of
its values and its first four values in C order.
"""
import json
import os

import torch

shared = os.environ.get("DDPM_SHARED_TESTDATA", os.path.join("..", "..", "..", "shared", "testdata"))
sd = torch.load(os.path.join(shared, "fid", "pt_inception-fixture.pth"), map_location="cpu")
DTYPES = {torch.float32: "F32", torch.int64: "I64"}
listing = [
    {"name": k, "dtype": DTYPES[v.dtype], "shape": list(v.shape),
     "sum": v.double().sum().item(), "first": v.double().flatten()[:4].tolist()}
    for k, v in sd.items()
]
with open("pt_inception_listing.json", "w") as f:
    f.write("[\n" + ",\n".join(json.dumps(e) for e in listing) + "\n]\n")
