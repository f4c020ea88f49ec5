"""Transpose(perm): exact permutation."""

from __future__ import annotations

import numpy as np

from verify.ops._shape import MoveOp


class Transpose(MoveOp):
    op_type = "Transpose"
    known_attrs = frozenset({"perm"})

    def forward(self, x):
        x = np.asarray(x)
        perm = self.attr("perm")
        return np.transpose(x, None if perm is None else [int(p) for p in perm]).copy()

    def torch_forward(self, ctx, x):
        perm = self.attr("perm")
        return x.permute(*(reversed(range(x.dim())) if perm is None else [int(p) for p in perm]))

    def batch_axis(self, f):
        from verify.front.batch_axis import Dims, dims_through, shape_rows

        if isinstance(f.states[0], Dims):
            return dims_through(self, f)
        r = f.rank(0)
        perm = [int(p) % r for p in self.attr("perm", range(r - 1, -1, -1))]
        return shape_rows(self, f, (), perm.index)
