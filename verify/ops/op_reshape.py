"""Reshape(data, shape) with ONNX semantics (0 copies the input dim unless allowzero, -1 infers).
The shape may be computed (Shape/Gather/Concat of dims): it must then be data independent, which
ShapeOp checks (point box; Lipschitz 0, else unbounded)."""

from __future__ import annotations

import numpy as np

from verify.ops._shape import ShapeOp
from verify.bounds.moves import moved_values


class Reshape(ShapeOp):
    op_type = "Reshape"
    known_attrs = frozenset({"allowzero"})

    def forward(self, x, shape=None):
        x = np.asarray(x)
        if shape is None:
            shape = self.const(1)
        target = [int(s) for s in np.asarray(shape).reshape(-1)]
        if not int(self.attr("allowzero", 0)):
            target = [x.shape[i] if s == 0 else s for i, s in enumerate(target)]
        try:
            return x.reshape(target)
        except ValueError as e:
            raise self.fail(f"cannot reshape {list(x.shape)} to {target}: {e}") from None

    def relax(self, a, ins, out, ctx):
        """Values are only moved: coefficients move back exactly (verify/bounds/moves.py)."""
        return moved_values(self, a, ins, ctx)

    def batch_axis(self, f):
        from verify.batch_axis import FREE, Dims, Rows, coupled, dims_through

        if isinstance(f.states[0], Dims):
            return dims_through(self, f)
        t = [int(v) for v in np.asarray(f.values[1]).reshape(-1)]
        if f.rows(0) != 0 or isinstance(f.states[1], Rows) or not t:
            return coupled(self, "does not keep the batch on axis 0")
        is_n = np.zeros(len(t), bool) if f.states[1] == FREE else f.states[1].mask.reshape(-1)
        lead = (is_n[0] or (t[0] == 0 and not int(self.attr("allowzero", 0))) or t[0] == f.fixed_batch
                or (t[0] == -1 and -1 not in t[1:]))
        same_row = int(np.prod(f.shapes[0][1:], dtype=np.int64)) == int(np.prod(f.out_shape[1:], dtype=np.int64))
        if not lead or is_n[1:].any() or not same_row:
            return coupled(self, f"to {t} does not keep one row per sample")
        return Rows(0)
