"""Flatten(axis): reshape to 2-D [prod(dims[:axis]), prod(dims[axis:])], exact."""

from __future__ import annotations

import numpy as np

from verify.ops._shape import MoveOp


class Flatten(MoveOp):
    op_type = "Flatten"
    known_attrs = frozenset({"axis"})

    def forward(self, x):
        x = np.asarray(x)
        axis = int(self.attr("axis", 1))
        if axis < 0:
            axis += x.ndim
        lead = int(np.prod(x.shape[:axis], dtype=np.int64))
        return x.reshape(lead, -1) if x.size or lead else x.reshape(lead, 0)

    def batch_axis(self, f):
        from verify.front.batch_axis import Rows, coupled

        r = f.rank(0)
        axis = int(self.attr("axis", 1))
        axis = axis + r if axis < 0 else axis
        if f.rows(0) != 0 or axis == 0 or int(np.prod(f.shapes[0][1:axis], dtype=np.int64)) != 1:
            return coupled(self, f"axis={self.attr('axis', 1)} does not keep one row per sample")
        return Rows(0)
