"""Constant: a tensor attribute (value, value_float(s), value_int(s)); folded at load time."""

from __future__ import annotations

import numpy as np

from verify.ops._torch import as_tensor
from verify.ops.base import Box, Op

_KEYS = ("value", "value_float", "value_floats", "value_int", "value_ints")


class Constant(Op):
    op_type = "Constant"
    inf_safe = True
    inf_consts_ok = True
    known_attrs = frozenset(_KEYS)

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if len(self.attrs) != 1:
            return "exactly one supported value attribute expected"
        return None

    def value(self) -> np.ndarray:
        (key, v), = self.attrs.items()
        if key == "value":
            arr = np.asarray(v)
        elif key.startswith("value_float"):
            arr = np.asarray(v, dtype=np.float32)
        else:
            arr = np.asarray(v, dtype=np.int64)
        if arr.dtype not in (np.float32, np.int64, np.int32, np.bool_):
            raise self.fail(f"constant of dtype {arr.dtype} is not supported (float32/int only)")
        return arr

    def forward(self):
        return self.value()

    def torch_forward(self, ctx):
        return as_tensor(self.value())

    def interval(self):
        return Box.point(self.value())

    def lipschitz(self):
        return 0.0
