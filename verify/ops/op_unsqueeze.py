"""Unsqueeze(data, axes) (attribute before opset 13): exact."""

from __future__ import annotations

import numpy as np

from verify.ops._shape import ShapeOp, axes_from


class Unsqueeze(ShapeOp):
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
        rank = x.ndim + len(axes)
        return np.expand_dims(x, tuple(sorted(a % rank for a in axes)))
