"""Sum (variadic, broadcasting). Two inputs: one rounded add (like Add). More: onnxruntime may
add in any order, so the bound is the float64 sum of the endpoints widened by a proven error bound
(γ_k in float64 for our own sum, γ^{(32)}_k for onnxruntime's float32 sum) and rounded outward;
[-inf, inf] where a float32 partial sum may overflow (Higham's bound assumes it does not)."""

from __future__ import annotations

from functools import reduce

import numpy as np

from verify.ops._elementwise import f32, outward
from verify.ops.base import Box, Op, add_up
from verify.rounding import U64, dot_error_bound, down, gamma, may_overflow32, step_down64, step_up64, up


class Sum(Op):
    op_type = "Sum"
    foldable = False

    def forward(self, *xs):
        return reduce(np.add, [f32(x) for x in xs]).astype(np.float32)

    def interval(self, *bs):
        if len(bs) == 1:
            return Box(bs[0].lo, bs[0].hi)
        if len(bs) == 2:
            return outward(f32(bs[0].lo) + f32(bs[1].lo), f32(bs[0].hi) + f32(bs[1].hi))
        k = len(bs)
        lo64 = reduce(np.add, [b.lo.astype(np.float64) for b in bs])
        hi64 = reduce(np.add, [b.hi.astype(np.float64) for b in bs])
        mag = reduce(np.add, [np.maximum(np.abs(b.lo.astype(np.float64)), np.abs(b.hi.astype(np.float64))) for b in bs])
        e32 = dot_error_bound(k, mag * (1.0 + 2.0**-30))
        err = step_up64(2.0 * gamma(k, U64) * mag + e32)
        lo, hi = down(step_down64(lo64 - err)), up(step_up64(hi64 + err))
        # a float32 partial sum may overflow (3e38 + 3e38 - 3e38 = inf) where the sum does not
        risky = may_overflow32(mag, e32)
        return Box(np.where(risky, -np.inf, lo).astype(np.float32), np.where(risky, np.inf, hi).astype(np.float32))

    def lipschitz(self, *in_l):
        return add_up(*(v for v in in_l if v is not None))
