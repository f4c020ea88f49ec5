"""Slice(data, starts, ends, axes?, steps?) (attributes before opset 10) with constant arguments:
an exact copy of a sub-tensor. The indices follow onnxruntime (ONNX spec clamping, see
:func:`onnx_slices`), not numpy's own clamping, which differs for negative steps."""

from __future__ import annotations

import numpy as np

from verify.ops._shape import MoveOp, norm_axes
from verify.ops._torch import gathered

_INT_MAX = (np.iinfo(np.int32).max, np.iinfo(np.int64).max)


def onnx_slices(op, shape, starts, ends, axes, steps) -> tuple:
    """Python slices equal to ONNX Slice as onnxruntime computes it: a negative start/end gets the
    extent added; step > 0: start and end clamped to [0, dim]; step < 0: start clamped to [0, dim-1],
    end to [-1, dim] (-1: through index 0); end = INT32_MAX or INT64_MAX means "to the end in the
    step's direction". Axes out of range, repeated axes, step 0 and argument lists of different
    lengths are ModelErrors."""
    n = len(starts)
    axes = list(range(n)) if axes is None else axes
    steps = [1] * n if steps is None else steps
    if not (len(ends) == len(axes) == len(steps) == n):
        raise op.fail("starts, ends, axes and steps must have the same length")
    rank = len(shape)
    if len(norm_axes(op, axes, rank)) != n:
        raise op.fail(f"axes {list(axes)} name an axis twice")
    sl = [slice(None)] * rank
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise op.fail("step 0")
        a, dim = a % rank, int(shape[a % rank])
        s = s + dim if s < 0 else s
        s = min(max(s, 0), dim - 1 if st < 0 else dim)
        if e in _INT_MAX:
            e = -1 if st < 0 else dim
        else:
            e = e + dim if e < 0 else e
            e = min(max(e, -1 if st < 0 else 0), dim)
        if dim == 0:
            sl[a] = slice(0, 0)
        else:
            sl[a] = slice(s, None if e < 0 else e, st)
    return tuple(sl)


class Slice(MoveOp):
    op_type = "Slice"
    known_attrs = frozenset({"starts", "ends", "axes"})

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if any(self.is_var(i) for i in range(1, len(self.inputs))):
            return "starts/ends/axes/steps must be constants"
        return None

    def _arg(self, i, name):
        if name in self.attrs:
            return [int(v) for v in self.attrs[name]]
        c = self.const(i) if len(self.inputs) > i and self.inputs[i] else None
        return None if c is None else [int(v) for v in np.asarray(c).reshape(-1)]

    def forward(self, x, *_):
        x = np.asarray(x)
        args = [self._arg(i, name) for i, name in ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps"))]
        return x[onnx_slices(self, x.shape, *args)]

    def torch_forward(self, ctx, x, *rest):
        return gathered(self, x, *rest)

    def batch_axis(self, f):
        from verify.front.batch_axis import Dims, dims_through, shape_rows

        if isinstance(f.states[0], Dims):
            return dims_through(self, f)
        r = f.rank(0)
        starts = self._arg(1, "starts")
        axes = set(norm_axes(self, self._arg(3, "axes") or range(len(starts)), r))
        return shape_rows(self, f, axes, lambda k: k)
