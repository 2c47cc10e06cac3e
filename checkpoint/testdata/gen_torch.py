"""Generates the tiny torch.save fixtures under torch/ and their expected values.

Run from this directory with PyTorch 1.13: /usr/bin/python3 gen_torch.py
Each torch/<name>.pt gets an entry in torch/expected.json: for every tensor its name, dtype, shape and
all values in C order as float64 (exact for every dtype used here; "inf", "-inf" and "nan" as strings).
"""
import collections
import json
import os

import torch
import torch.nn as nn

torch.manual_seed(20240601)
out = "torch"
os.makedirs(out, exist_ok=True)

DTYPES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}


def module_state():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3))
    m[1].running_mean.normal_()
    m[1].running_var.uniform_(0.5, 2)
    m[1].num_batches_tracked += 7
    sd = m.state_dict()
    assert hasattr(sd, "_metadata")
    return sd


def values(t):
    return [v if v == v and abs(v) != float("inf") else str(v) for v in t.detach().double().flatten().tolist()]


base = torch.randn(4, 5)
big = torch.arange(100, dtype=torch.float32).reshape(10, 10) / 8
cases = {
    "fp16": {"h": torch.randn(3, 4).half(), "h_special": torch.tensor(
        [0.0, -0.0, 65504.0, 6e-8, float("inf"), -float("inf"), 1 / 3], dtype=torch.float16)},
    "bf16": {"b": torch.randn(2, 3, 2).bfloat16()},
    "fp64": {"d": torch.randn(5, dtype=torch.float64), "d_scalar": torch.tensor(3.25, dtype=torch.float64)},
    "ints": {
        "i64": torch.tensor([0, -1, 2**40, -(2**40) - 3, 7], dtype=torch.int64),
        "i32": torch.tensor([[1, -2], [3, -2**31]], dtype=torch.int32),
        "i16": torch.tensor([-32768, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 200, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "count": torch.tensor(12, dtype=torch.int64),
    },
    # Three tensors over one storage: the whole, a row slice (storage offset 5) and the same tensor again.
    "shared": collections.OrderedDict([("w", base), ("w_rows", base[1:3]), ("tied", base)]),
    # Non-contiguous views: a transpose, a permutation, a column with an offset, a stride-2 slice.
    "strided": {
        "t": torch.randn(3, 5).t(),
        "perm": torch.randn(2, 3, 4).permute(2, 0, 1),
        "col": big[:, 3],
        "every_other": big[1, ::2],
        "block": big[2:5, 4:7],
    },
    # A slice of a bigger tensor: storage offset, contiguous.
    "offset": {"row": big[7], "tail": big.view(-1)[93:]},
    "module": module_state(),
    "empty": {"zero_rows": torch.zeros(0, 3), "scalar": torch.tensor(1.5)},
    "expanded": {"e": torch.arange(3, dtype=torch.float32).expand(2, 3)},
    "parameter": {"p": nn.Parameter(torch.randn(2, 2))},
}

expected = {}
for name, sd in cases.items():
    path = os.path.join(out, name + ".pt")
    torch.save(sd, path)
    expected[name] = [
        {"name": k, "dtype": DTYPES[v.dtype], "shape": list(v.shape),
         "values": values(v)}
        for k, v in sd.items()
    ]
# Pickle protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL.
torch.save(cases["shared"], os.path.join(out, "proto4.pt"), pickle_protocol=4)
expected["proto4"] = expected["shared"]
# The legacy (pre-1.6) format, which ReadTorch rejects.
torch.save({"x": torch.ones(2)}, os.path.join(out, "legacy.pt"), _use_new_zipfile_serialization=False)

with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1, sort_keys=True)
    f.write("\n")
