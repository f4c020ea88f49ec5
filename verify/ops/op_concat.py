"""Concat(axis): exact; Lipschitz = max of the inputs' bounds (ℓ∞ of a concatenation). CROWN: the
output's coefficients are split among the inputs (verify/bounds/moves.py), exactly."""

from __future__ import annotations

import numpy as np
import torch

from verify.bounds.moves import gathered, index_arrays
from verify.ops._torch import same_kind_t
from verify.ops.base import Box, Op, var_l


class Concat(Op):
    op_type = "Concat"
    inf_safe = True
    inf_consts_ok = True
    known_attrs = frozenset({"axis"})

    def forward(self, *xs):
        return np.concatenate([np.asarray(x) for x in xs], axis=int(self.attr("axis", 0)))

    def torch_forward(self, ctx, *xs):
        return torch.cat(same_kind_t(xs), dim=int(self.attr("axis", 0)))

    def interval(self, *bs):
        return Box(self.forward(*[b.lo for b in bs]), self.forward(*[b.hi for b in bs]))

    def lipschitz(self, *in_l):
        v = var_l(in_l)
        return max(v) if v else 0.0

    def relax(self, a, ins, out, ctx):
        """Each input gets the coefficients of its part of the output (run on element indices);
        constant inputs are concretised by the engine."""
        data = list(range(len(ins)))
        return gathered(a, ins, data, self.forward(*index_arrays(ins, data)))

    def batch_axis(self, f):
        from verify.front.batch_axis import Rows, coupled, dims_through

        if not any(isinstance(s, Rows) for s in f.states):
            return dims_through(self, f, data=range(len(f.states)))
        ks = {f.rows(i) for i in range(len(f.states))}
        axis = int(self.attr("axis", 0)) % len(f.out_shape)
        if len(ks) != 1 or None in ks or axis in ks:
            return coupled(self, f"axis={self.attr('axis', 0)} joins tensors along or across the batch axis")
        return Rows(ks.pop())
