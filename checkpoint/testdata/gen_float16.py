"""Records PyTorch's float32 -> float16 and float32 -> bfloat16 rounding for the conversion tests.

Run from this directory with PyTorch 1.13: /usr/bin/python3 gen_float16.py
Writes float16.json: a list of [float32 bits, float16 bits, bfloat16 bits] (torch .half() and
.bfloat16() on the CPU) for special values, exact ties, values near the range limits and random bit
patterns.
"""
import json
import struct

import torch

g = torch.Generator().manual_seed(7)
bits = [0x00000000, 0x80000000, 0x3F800000, 0xBF800000, 0x7F800000, 0xFF800000, 0x7FC00000,
        0x7F7FFFFF, 0x00000001, 0x80000001, 0x007FFFFF, 0x00800000,
        0x477FE000, 0x477FEFFF, 0x477FF000, 0x47800000,  # float16 max, its rounding limit, overflow
        0x33000000, 0x33000001, 0x33800000, 0x387FC000, 0x38800000,  # float16 subnormal edges
        0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF,  # bfloat16 ties to even, down and up
        0x3F801000, 0x3F803000, 0x3F801001,  # float16 ties
        0x7F7F8000, 0x7F7FFFFF, 0xFF7F8000]  # bfloat16 overflow by rounding
bits += torch.randint(0, 2**31, (1500,), generator=g).tolist()
bits += [b | 0x80000000 for b in torch.randint(0, 2**31, (500,), generator=g).tolist()]
# Values in the float16 range, where rounding matters most.
bits += [struct.unpack("<I", struct.pack("<f", v))[0]
         for v in (torch.randn(1000, generator=g) * 1000).tolist()]
bits = [b for b in bits if not (b & 0x7F800000 == 0x7F800000 and b & 0x007FFFFF)]  # no NaN payloads
bits.append(0x7FC00000)

f32 = torch.tensor([struct.unpack("<f", struct.pack("<I", b))[0] for b in bits], dtype=torch.float32)
assert [struct.unpack("<I", struct.pack("<f", v))[0] for v in f32.tolist()] == bits
h = f32.half().view(torch.int16).tolist()
bf = f32.bfloat16().view(torch.int16).tolist()
rows = [[b, x & 0xFFFF, y & 0xFFFF] for b, x, y in zip(bits, h, bf)]
with open("float16.json", "w") as f:
    f.write("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
