"""Squeeze(data, axes?) (attribute before opset 13): exact. As in onnxruntime, absent or EMPTY axes
squeeze every extent-1 axis and an axis named twice ([1, -2]) is squeezed once; an axis out of range
or of extent other than 1 is a ModelError."""

from __future__ import annotations

import numpy as np

from verify.ops._shape import MoveOp, axes_from, norm_axes


class Squeeze(MoveOp):
    op_type = "Squeeze"
    known_attrs = frozenset({"axes"})

    def _axes(self, rank):
        """The squeezed axes (normalised), or None: every extent-1 axis (absent or empty axes)."""
        axes = axes_from(self, 1)
        return norm_axes(self, axes, rank) if axes else None

    def forward(self, x, *_):
        x = np.asarray(x)
        axes = self._axes(x.ndim)
        if axes is None:
            return np.squeeze(x)
        if any(x.shape[a] != 1 for a in axes):
            raise self.fail(f"cannot squeeze axes {axes} of shape {list(x.shape)}")
        return np.squeeze(x, axis=tuple(axes))

    def batch_axis(self, f):
        from verify.front.batch_axis import Dims, dims_through, shape_rows

        if isinstance(f.states[0], Dims):
            return dims_through(self, f)
        r = f.rank(0)
        axes = self._axes(r)
        axes = set(range(r)) if axes is None else set(axes)  # no/empty axes: N = 1 would go too
        return shape_rows(self, f, axes, lambda k: k - sum(1 for a in axes if a < k))
