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
