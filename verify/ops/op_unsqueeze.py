"""Unsqueeze(data, axes) (attribute before opset 13): exact. Axes index the OUTPUT rank; an axis out
of range or named twice is a ModelError (onnxruntime refuses both)."""

from __future__ import annotations

import numpy as np

from verify.ops._shape import MoveOp, axes_from, norm_axes


class Unsqueeze(MoveOp):
    op_type = "Unsqueeze"
    known_attrs = frozenset({"axes"})

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if self.is_var(1):
            return "axes must be a constant"
        return None

    def forward(self, x, *_):
        x = np.asarray(x)
        axes = axes_from(self, 1) or []
        return np.expand_dims(x, tuple(norm_axes(self, axes, x.ndim + len(axes), duplicates=False)))

    def batch_axis(self, f):
        from verify.front.batch_axis import Dims, dims_through, shape_rows

        if isinstance(f.states[0], Dims):
            return dims_through(self, f)
        r = len(f.out_shape)
        new = set(norm_axes(self, axes_from(self, 1) or [], r, duplicates=False))
        return shape_rows(self, f, (), lambda k: [p for p in range(r) if p not in new][k])
