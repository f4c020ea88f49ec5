"""Concat(axis): exact; Lipschitz = max of the inputs' bounds (ℓ∞ of a concatenation)."""

from __future__ import annotations

import numpy as np

from verify.ops.base import Box, Op, var_l


class Concat(Op):
    op_type = "Concat"
    inf_safe = True
    inf_consts_ok = True
    known_attrs = frozenset({"axis"})

    def forward(self, *xs):
        return np.concatenate([np.asarray(x) for x in xs], axis=int(self.attr("axis", 0)))

    def interval(self, *bs):
        return Box(self.forward(*[b.lo for b in bs]), self.forward(*[b.hi for b in bs]))

    def lipschitz(self, *in_l):
        v = var_l(in_l)
        return max(v) if v else 0.0
