"""Dropout at inference (training_mode absent or constant false): the identity (mask output unsupported)."""

from __future__ import annotations

import numpy as np

from verify.ops.base import Box, Op, scaled
from verify.bounds.moves import moved_values


class Dropout(Op):
    op_type = "Dropout"
    inf_safe = True
    known_attrs = frozenset({"seed", "ratio", "is_test"})

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if len(self.inputs) > 2 and self.inputs[2]:
            t = self.const(2)
            if t is None or bool(np.asarray(t).reshape(-1)[0]):
                return "training_mode must be a constant false"
        return None

    def constants_problem(self):
        r = self.attrs.get("ratio", self.const(1) if len(self.inputs) > 1 and self.inputs[1] else None)
        if r is not None and not 0.0 <= float(np.asarray(r, np.float32).reshape(-1)[0]) < 1.0:
            return "ratio must lie in [0, 1) (onnxruntime refuses to run otherwise)"
        return None

    def forward(self, x, *_):
        return np.asarray(x)

    def torch_forward(self, ctx, x, *_):
        return x

    def interval(self, b, *_):
        return Box(b.lo, b.hi)

    def lipschitz(self, lx=None, *_):
        return scaled([lx], 1.0)

    def relax(self, a, ins, out, ctx):
        """Values are only moved: coefficients move back exactly (verify/bounds/moves.py)."""
        return moved_values(self, a, ins, ctx)

    def batch_axis(self, f):
        from verify.front.batch_axis import same_as_input

        return same_as_input(self, f)
