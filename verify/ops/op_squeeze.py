"""Squeeze(data, axes?) (attribute before opset 13): exact."""

from __future__ import annotations

import numpy as np

from verify.ops._shape import ShapeOp, axes_from


class Squeeze(ShapeOp):
    op_type = "Squeeze"
    known_attrs = frozenset({"axes"})

    def forward(self, x, *_):
        x = np.asarray(x)
        axes = axes_from(self, 1)
        if axes is None:
            return np.squeeze(x)
        return np.squeeze(x, axis=tuple(a % x.ndim for a in axes))

    def batch_axis(self, f):
        from verify.batch_axis import Dims, dims_through, shape_rows

        if isinstance(f.states[0], Dims):
            return dims_through(self, f)
        r = f.rank(0)
        axes = axes_from(self, 1)
        axes = set(range(r)) if axes is None else {a % r for a in axes}  # no axes: N = 1 would go too
        return shape_rows(self, f, axes, lambda k: k - sum(1 for a in axes if a < k))
