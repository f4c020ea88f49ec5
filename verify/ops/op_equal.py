"""Equal(A, B) -> bool (numpy broadcasting): exact on point boxes (shape arithmetic, e.g. torch's
``expand(-1)`` handling); on other boxes the result is False where the two intervals are disjoint
and unknown ([False, True]) elsewhere. A boolean output has no Lipschitz bound unless constant."""

from __future__ import annotations

import math

import numpy as np
import torch

from verify.ops._elementwise import same_kind
from verify.ops.base import Box, Op


class Equal(Op):
    op_type = "Equal"
    inf_safe = True
    inf_consts_ok = True

    def forward(self, a, b):
        a, b = same_kind([a, b])
        return np.equal(a, b)

    def torch_forward(self, ctx, a, b):
        return torch.eq(a, b)

    def interval(self, a, b):
        lo_a, hi_a, lo_b, hi_b = same_kind([a.lo, a.hi, b.lo, b.hi])
        point = np.equal(lo_a, hi_a) & np.equal(lo_b, hi_b)
        exact = np.equal(lo_a, lo_b)
        disjoint = (hi_a < lo_b) | (hi_b < lo_a)
        return Box(point & exact, (point & exact) | (~point & ~disjoint))

    def lipschitz(self, la=None, lb=None):
        return 0.0 if not la and not lb else math.inf

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
