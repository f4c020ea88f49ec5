"""Slice(data, starts, ends, axes?, steps?) (attributes before opset 10) with constant arguments:
an exact copy of a sub-tensor."""

from __future__ import annotations

import numpy as np

from verify.ops._shape import ShapeOp


class Slice(ShapeOp):
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
        starts, ends = self._arg(1, "starts"), self._arg(2, "ends")
        axes = self._arg(3, "axes") or list(range(len(starts)))
        steps = self._arg(4, "steps") or [1] * len(starts)
        sl = [slice(None)] * x.ndim
        for s, e, a, st in zip(starts, ends, axes, steps):
            if st == 0:
                raise self.fail("step 0")
            big = np.iinfo(np.int64).max // 2
            e = None if (st > 0 and e >= big) or (st < 0 and e <= -big) else e
            sl[a % x.ndim] = slice(s, e, st)
        return x[tuple(sl)]

    def batch_axis(self, f):
        from verify.batch_axis import Dims, dims_through, shape_rows

        if isinstance(f.states[0], Dims):
            return dims_through(self, f)
        r = f.rank(0)
        starts = self._arg(1, "starts")
        axes = {a % r for a in self._arg(3, "axes") or range(len(starts))}
        return shape_rows(self, f, axes, lambda k: k)
