"""Writes a state dict in the format of pytorch-fid's pt_inception-2015-12-05-6726825d.pth (the key names
and shapes of checkpoint/testdata/pt_inception_listing.json) with random weights: for timing the FID
Inception where the real weights cannot be downloaded. Its features mean nothing.

    python bench/random_inception.py OUT.pth
"""

import json
import os
import sys

import torch

listing = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "checkpoint", "testdata",
                                      "pt_inception_listing.json")))
g = torch.Generator().manual_seed(0)
sd = {}
for e in listing:
    name, shape = e["name"], e["shape"]
    if name.endswith("num_batches_tracked"):
        sd[name] = torch.zeros(shape, dtype=torch.int64)
    elif name.endswith("running_var") or name.endswith("bn.weight"):
        sd[name] = torch.ones(shape)
    elif name.endswith("running_mean") or name.endswith("bias"):
        sd[name] = torch.zeros(shape)
    else:
        fan_in = 1
        for d in shape[1:]:
            fan_in *= d
        sd[name] = torch.randn(shape, generator=g) / fan_in ** 0.5
torch.save(sd, sys.argv[1])
