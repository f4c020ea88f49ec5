"""Cast(to) between float32, int64 and int32. float -> int truncates towards 0 (monotone, so the
box maps endpoint-wise; discontinuous, so Lipschitz is unbounded unless the input is data
independent); int -> float rounds to nearest (bounded outward); same-kind casts are exact."""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto

from verify.ops.base import Box, Op
from verify.rounding import down, up

_TO = {TensorProto.FLOAT: np.float32, TensorProto.INT64: np.int64, TensorProto.INT32: np.int32}


class Cast(Op):
    op_type = "Cast"
    known_attrs = frozenset({"to", "saturate"})

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if int(self.attr("to", 0)) not in _TO:
            return "only casts to float32, int64 or int32 are supported"
        return None

    def _dtype(self):
        return _TO[int(self.attr("to"))]

    def forward(self, x):
        x = np.asarray(x)
        dt = self._dtype()
        if np.issubdtype(x.dtype, np.floating) and dt != np.float32:
            with np.errstate(invalid="ignore"):
                return np.trunc(x).astype(dt)
        return x.astype(dt)

    def interval(self, b):
        dt = self._dtype()
        if dt == np.float32 and not np.issubdtype(b.lo.dtype, np.floating):
            return Box(down(b.lo.astype(np.float64)), up(b.hi.astype(np.float64)))
        return Box(self.forward(b.lo), self.forward(b.hi))

    def lipschitz(self, lx=None):
        if not lx:
            return 0.0
        return lx if self._dtype() == np.float32 else math.inf

    def batch_axis(self, f):
        from verify.batch_axis import same_as_input

        return same_as_input(self, f)
