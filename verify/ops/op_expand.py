"""Expand(input, shape): numpy broadcasting of ``input`` against ``shape`` (the output shape is
broadcast(input.shape, shape)); exact, 1-Lipschitz in the input. Per-sample analysis: a constant
expanded along the batch size (``cls.expand(N, -1, -1)``: shape holds N) is a per-row copy of a
constant; a variable input keeps its batch axis and must not be broadcast along it."""

from __future__ import annotations

import numpy as np

from verify.ops._shape import MoveOp


class Expand(MoveOp):
    op_type = "Expand"

    def forward(self, x, shape):
        x = np.asarray(x)
        target = np.broadcast_shapes(x.shape, tuple(int(v) for v in np.asarray(shape).reshape(-1)))
        return np.broadcast_to(x, target).copy()

    def torch_forward(self, ctx, x, shape):
        target = np.broadcast_shapes(tuple(x.shape), tuple(int(v) for v in shape.reshape(-1).tolist()))
        return x.expand(target)

    def batch_axis(self, f):
        from verify.front.batch_axis import Dims, Rows, coupled, dims_through

        if isinstance(f.states[0], Dims):
            return dims_through(self, f)
        s1 = f.states[1]
        if not (isinstance(s1, Dims) or f.free(1)):
            return coupled(self, "has a shape computed from data")
        r, shp = len(f.out_shape), np.asarray(f.values[1]).reshape(-1)
        off = r - len(shp)
        masked = {off + int(j) for j in np.flatnonzero(s1.mask)} if isinstance(s1, Dims) else set()
        k = f.rows(0)
        in_off = r - f.rank(0)
        if k is None:  # a constant input: the output repeats it along the one axis of extent N
            if len(masked) != 1:
                return coupled(self, "expands a constant along several batch-sized axes")
            (p,) = masked
            if p >= in_off and f.shapes[0][p - in_off] != 1:
                return coupled(self, "expands a constant whose extent on the batch axis is not 1")
            return Rows(p)
        kk = k + in_off
        if not masked <= {kk} or (kk >= off and kk not in masked and int(shp[kk - off]) != 1):
            return coupled(self, "broadcasts along the batch axis")
        return Rows(kk)
