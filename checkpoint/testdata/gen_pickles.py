"""Generates the plain-value pickles under pickle/ for the unpickler's tests.

Run from this directory: /usr/bin/python3 gen_pickles.py
Each value is pickled with protocols 2 (what torch.save uses) and 4 (FRAME, SHORT_BINUNICODE, MEMOIZE).
The Go test spells out the same values.
"""
import collections
import os
import pickle

os.makedirs("pickle", exist_ok=True)
shared = [1, 2]
values = {
    "ints": [0, 1, -1, 255, 256, 65535, 65536, -2**31, 2**31 - 1, 2**31, -2**31 - 1, 2**40, 2**63 - 1, -2**63],
    "floats": (1.5, -0.0, 1e300, -2.5e-310),
    "consts": (None, True, False),
    "tuples": ((), ("x",), (1, 2), (1, 2, 3), (1, 2, 3, 4)),
    "strings": ["", "ascii", "\u00e9t\u00e9 \u2603", "x" * 300],
    "dict": {"a": 1, "b": [], "c": {}, 5: "five"},
    "shared": {"p": shared, "q": shared},
    "single": {"k": [7]},
}
for name, v in values.items():
    for proto in (2, 4):
        with open(os.path.join("pickle", f"{name}.p{proto}.pkl"), "wb") as f:
            pickle.dump(v, f, protocol=proto)
