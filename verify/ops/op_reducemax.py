"""ReduceMax(data, axes?) (axes attribute before opset 18, input from 18): exact, 1-Lipschitz."""

from __future__ import annotations

import numpy as np

from verify.ops._reduce import keepdims, reduce_batch_axis, reduce_unsupported, reduced_axes
from verify.ops._shape import ShapeOp


class ReduceMax(ShapeOp):
    op_type = "ReduceMax"
    known_attrs = frozenset({"axes", "keepdims", "noop_with_empty_axes"})

    def unsupported(self):
        return super().unsupported() or reduce_unsupported(self)

    def forward(self, x, *_):
        x = np.asarray(x)
        axes = reduced_axes(self, x.ndim)  # an axis named twice ([1, -2]) reduces once
        if axes is None:
            return x
        if any(x.shape[a] == 0 for a in axes):
            raise self.fail("reduction over an empty axis")
        return np.max(x, axis=axes, keepdims=keepdims(self))

    def torch_forward(self, ctx, x, *_):
        axes = reduced_axes(self, x.dim())
        if axes is None:
            return x
        if any(x.shape[a] == 0 for a in axes):
            raise self.fail("reduction over an empty axis")
        return x.amax(dim=axes, keepdim=keepdims(self))

    def batch_axis(self, f):
        return reduce_batch_axis(self, f)
