"""Shape(data, start?, end?): the (int64) dims of a tensor. Data-independent, so its Lipschitz bound
is 0 and its box is a point; not folded at load time because N is dynamic."""

from __future__ import annotations

import numpy as np

from verify.ops._torch import numpy_forward
from verify.ops.base import Box, Op


class Shape(Op):
    op_type = "Shape"
    inf_safe = True
    inf_consts_ok = True
    foldable = False
    known_attrs = frozenset({"start", "end"})

    def forward(self, x):
        shape = np.asarray(np.shape(x), np.int64)
        start = int(self.attr("start", 0))
        end = self.attr("end")
        return shape[start:] if end is None else shape[start:int(end)]

    def torch_forward(self, ctx, x):
        return numpy_forward(self, x)

    def interval(self, b):
        return Box.point(self.forward(b.lo))

    def lipschitz(self, lx=None):
        return 0.0

    def batch_axis(self, f):
        from verify.front.batch_axis import FREE, Dims

        k = f.rows(0)
        if k is None:
            return FREE  # the shape of shape arithmetic does not depend on N
        mask = np.arange(f.rank(0)) == k
        end = self.attr("end")
        return Dims(mask[int(self.attr("start", 0)):None if end is None else int(end)])
