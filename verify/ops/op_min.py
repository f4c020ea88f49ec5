"""Min (variadic, broadcasting): exact; ℓ∞ Lipschitz = max of the inputs' bounds."""

from __future__ import annotations

from functools import reduce

import numpy as np
import torch

from verify.ops._elementwise import same_kind
from verify.ops._torch import fold_variadic
from verify.ops.base import Box, Op, var_l


class Min(Op):
    op_type = "Min"
    inf_safe = True
    inf_consts_ok = True

    def forward(self, *xs):
        return reduce(np.minimum, same_kind(xs))

    def torch_forward(self, ctx, *xs):
        return fold_variadic(torch.minimum, xs)

    def interval(self, *bs):
        return Box(self.forward(*[b.lo for b in bs]), self.forward(*[b.hi for b in bs]))

    def lipschitz(self, *in_l):
        v = var_l(in_l)
        return max(v) if v else 0.0

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
