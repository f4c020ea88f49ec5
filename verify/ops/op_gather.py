"""Gather(data, indices, axis) with constant (or data-independent) indices: an exact copy."""

from __future__ import annotations

import numpy as np

from verify.ops._shape import MoveOp
from verify.ops._torch import gathered


class Gather(MoveOp):
    op_type = "Gather"
    known_attrs = frozenset({"axis"})

    def forward(self, x, idx=None):
        idx = self.const(1) if idx is None else idx
        x = np.asarray(x)
        axis = int(self.attr("axis", 0)) % max(x.ndim, 1)
        idx = np.asarray(idx, np.int64)
        if np.any(idx >= x.shape[axis]) or np.any(idx < -x.shape[axis]):
            raise self.fail("index out of range")
        return np.take(x, idx, axis=axis)

    def torch_forward(self, ctx, x, *rest):
        return gathered(self, x, *rest)

    def batch_axis(self, f):
        from verify.front.batch_axis import Dims, dims_through, shape_rows

        if isinstance(f.states[0], Dims):
            return dims_through(self, f)
        a = int(self.attr("axis", 0)) % max(f.rank(0), 1)
        idx_rank = len(f.shapes[1])
        return shape_rows(self, f, {a}, lambda k: k if k < a else k + idx_rank - 1)
