"""Transpose(perm): exact permutation."""

from __future__ import annotations

import numpy as np

from verify.ops._shape import ShapeOp


class Transpose(ShapeOp):
    op_type = "Transpose"
    known_attrs = frozenset({"perm"})

    def forward(self, x):
        x = np.asarray(x)
        perm = self.attr("perm")
        return np.transpose(x, None if perm is None else [int(p) for p in perm]).copy()
