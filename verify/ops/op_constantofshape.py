"""ConstantOfShape(shape): a tensor of the given shape filled with ``value`` (a one-element tensor
attribute; default float32 0). Exact; does not depend on the data (Lipschitz 0). Per-sample
analysis: a shape holding the batch size once gives a per-row constant on that axis."""

from __future__ import annotations

import numpy as np
import torch

from verify.ops.base import Box, Op


class ConstantOfShape(Op):
    op_type = "ConstantOfShape"
    inf_consts_ok = True
    inf_safe = True
    known_attrs = frozenset({"value"})

    def _value(self) -> np.ndarray:
        v = np.asarray(self.attr("value", np.zeros(1, np.float32)))
        if v.size != 1:
            raise self.fail("value must hold one element")
        if v.dtype not in (np.float32, np.int64, np.int32, np.bool_):
            raise self.fail(f"value of dtype {v.dtype} is not supported (float32/int only)")
        return v.reshape(())

    def forward(self, shape):
        dims = [int(d) for d in np.asarray(shape).reshape(-1)]
        if min(dims, default=0) < 0:
            raise self.fail(f"negative extent in shape {dims}")
        return np.full(dims, self._value(), dtype=self._value().dtype)

    def torch_forward(self, ctx, shape):
        return torch.from_numpy(self.forward(shape.detach().cpu().numpy()))

    def interval(self, b):
        if not np.array_equal(b.lo, b.hi):
            raise self.fail("the shape depends on the input values")
        return Box.point(self.forward(b.lo))

    def lipschitz(self, lx=None):
        return 0.0

    def batch_axis(self, f):
        from verify.front.batch_axis import Dims, Rows, coupled

        s = f.states[0]
        if not isinstance(s, Dims) or int(s.mask.sum()) != 1:
            return coupled(self, "has a shape computed from data or holding the batch size twice")
        return Rows(int(np.flatnonzero(s.mask)[0]))
