"""Identity: exact copy."""

from __future__ import annotations

import numpy as np

from verify.ops.base import Box, Op, scaled
from verify.bounds.moves import moved_values


class Identity(Op):
    op_type = "Identity"
    inf_safe = True
    inf_consts_ok = True

    def forward(self, x):
        return np.asarray(x)

    def torch_forward(self, ctx, x):
        return x

    def interval(self, b):
        return Box(b.lo, b.hi)

    def lipschitz(self, lx=None):
        return scaled([lx], 1.0)

    def relax(self, a, ins, out, ctx):
        """Values are only moved: coefficients move back exactly (verify/bounds/moves.py)."""
        return moved_values(self, a, ins, ctx)

    def batch_axis(self, f):
        from verify.front.batch_axis import same_as_input

        return same_as_input(self, f)
