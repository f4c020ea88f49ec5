"""Where(C, X, Y) = X where C else Y (numpy broadcasting): exact selection. A point condition
selects the boxes elementwise; where the condition is unknown the box is the hull of both.
Lipschitz: max of X's and Y's bounds for a constant condition; a variable condition makes the
output jump (``math.inf``)."""

from __future__ import annotations

import math

import numpy as np
import torch

from verify.ops._elementwise import same_kind
from verify.ops.base import Box, Op, var_l


class Where(Op):
    op_type = "Where"
    inf_safe = True
    inf_consts_ok = True

    def forward(self, c, x, y):
        x, y = same_kind([x, y])
        return np.where(np.asarray(c, bool), x, y)

    def torch_forward(self, ctx, c, x, y):
        return torch.where(c.bool(), x, y)

    def interval(self, c, x, y):
        xl, xh, yl, yh = same_kind([x.lo, x.hi, y.lo, y.hi])
        cl, ch = np.asarray(c.lo, bool), np.asarray(c.hi, bool)
        lo = np.where(cl, xl, np.where(ch, np.minimum(xl, yl), yl))
        hi = np.where(cl, xh, np.where(ch, np.maximum(xh, yh), yh))
        return Box(lo, hi)

    def lipschitz(self, lc=None, lx=None, ly=None):
        if lc:
            return math.inf
        v = var_l([lx, ly])
        return max(v) if v else 0.0

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
