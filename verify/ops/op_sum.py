"""Sum (variadic, broadcasting). Two inputs: one rounded add (like Add). More: onnxruntime may
add in any order, so the bound is the float64 sum of the endpoints widened by a proven error bound
(γ_k in float64 for our own sum, γ^{(32)}_k for onnxruntime's float32 sum) and rounded outward.
That error bound assumes no float32 overflow: where a partial sum may overflow (the magnitudes sum to
about FLT_MAX) onnxruntime may return ±inf, or NaN when two partial sums overflow with opposite
signs, even though the exact sum is finite: refused (ModelError, the sample is ``unknown``)."""

from __future__ import annotations

from functools import reduce

import numpy as np
import torch

from verify.ops._elementwise import f32, outward
from verify.ops._torch import f32t
from verify.ops.base import Box, Op, add_up
from verify.bounds.rounding import U64, dot_error_bound, down, gamma, may_overflow32, step_down64, step_up64, up
from verify.bounds.sums import sum_relax


class Sum(Op):
    op_type = "Sum"
    foldable = False

    def forward(self, *xs):
        return reduce(np.add, [f32(x) for x in xs]).astype(np.float32)

    def torch_forward(self, ctx, *xs):
        return reduce(torch.add, [f32t(x) for x in xs])

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
        if np.any(may_overflow32(mag, e32)):
            raise self.fail("a float32 partial sum may overflow (onnxruntime may return ±inf or NaN); cannot certify")
        err = step_up64(2.0 * gamma(k, U64) * mag + e32)
        return Box(down(step_down64(lo64 - err)), up(step_up64(hi64 + err)))

    def relax(self, a, ins, out, ctx):
        """CROWN step: ``A·y = Σ_i A·x_i`` exactly; onnxruntime's rounding of the sum charged as
        verify/bounds/sums.py says (one rounding for two operands, the k-term bound for more)."""
        return sum_relax(self, a, ins, out, ctx, (1.0,) * len(ins))

    def lipschitz(self, *in_l):
        return add_up(*(v for v in in_l if v is not None))

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
