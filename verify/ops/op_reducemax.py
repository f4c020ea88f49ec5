"""ReduceMax(data, axes?) (axes attribute before opset 18, input from 18): exact, 1-Lipschitz."""

from __future__ import annotations

import numpy as np

from verify.ops._shape import ShapeOp, axes_from, norm_axes


class ReduceMax(ShapeOp):
    op_type = "ReduceMax"
    known_attrs = frozenset({"axes", "keepdims", "noop_with_empty_axes"})

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if self.is_var(1):
            return "axes must be a constant"
        return None

    def _reduced(self, shape) -> tuple[int, ...]:
        """The reduced axes, sorted, each once (empty: the op is a no-op)."""
        axes = axes_from(self, 1)
        if not axes:
            if int(self.attr("noop_with_empty_axes", 0)):
                return ()
            axes = list(range(len(shape)))
        axes = tuple(norm_axes(self, axes, len(shape)))  # an axis named twice ([1, -2]) reduces once
        if any(shape[a] == 0 for a in axes):
            raise self.fail("reduction over an empty axis")
        return axes

    def forward(self, x, *_):
        x = np.asarray(x)
        axes = self._reduced(x.shape)
        return np.max(x, axis=axes, keepdims=bool(int(self.attr("keepdims", 1)))) if axes else x

    def torch_forward(self, ctx, x, *_):
        axes = self._reduced(tuple(x.shape))
        return x.amax(dim=axes, keepdim=bool(int(self.attr("keepdims", 1)))) if axes else x

    def batch_axis(self, f):
        from verify.batch_axis import reduce_rows

        r = f.rank(0)
        axes = axes_from(self, 1)
        if not axes:
            axes = [] if int(self.attr("noop_with_empty_axes", 0)) else range(r)
        return reduce_rows(self, f, set(norm_axes(self, axes, r)), bool(int(self.attr("keepdims", 1))))
