"""ReduceSum(data, axes?) (axes attribute before opset 13, input from 13; keepdims,
noop_with_empty_axes): a linear map with weights 1 (verify/ops/_reduce.py).

Lipschitz: the ℓ∞ operator norm is the number of reduced elements, which depends on the input's
shape; an op does not see shapes when asked for its bound, so it answers ``math.inf`` unless the
op is the identity (noop_with_empty_axes with no axes)."""

from __future__ import annotations

import math

from verify.ops._reduce import LinearReduce
from verify.ops._shape import axes_from
from verify.ops.base import scaled


class ReduceSum(LinearReduce):
    op_type = "ReduceSum"
    known_attrs = frozenset({"axes", "keepdims", "noop_with_empty_axes"})
    mean = False

    def lipschitz(self, lx=None, *_):
        if lx is None or lx == 0:
            return 0.0
        if not axes_from(self, 1) and int(self.attr("noop_with_empty_axes", 0)):
            return scaled([lx], 1.0)
        return math.inf
