"""Clip(x, min?, max?) (min/max as constant inputs, or attributes before opset 11): exact."""

from __future__ import annotations

import numpy as np

from verify.ops._elementwise import same_kind
from verify.ops.base import Box, Op, scaled


class Clip(Op):
    op_type = "Clip"
    inf_safe = True
    inf_consts_ok = True
    known_attrs = frozenset({"min", "max"})

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if self.is_var(1) or self.is_var(2):
            return "min/max must be constants"
        return None

    def _bounds(self):
        lo = self.attrs.get("min", self.const(1))
        hi = self.attrs.get("max", self.const(2))
        return lo, hi

    def forward(self, x, *_):
        lo, hi = self._bounds()
        (y,) = same_kind([x])  # integer Clip stays integer (exact), float becomes float32
        if lo is not None:
            y = np.maximum(y, np.asarray(lo).astype(y.dtype))
        if hi is not None:
            y = np.minimum(y, np.asarray(hi).astype(y.dtype))
        return y

    def interval(self, b, *_):
        return Box(self.forward(b.lo), self.forward(b.hi))

    def lipschitz(self, lx=None, *_):
        return scaled([lx], 1.0)

    def batch_axis(self, f):
        from verify.batch_axis import elementwise

        return elementwise(self, f)
