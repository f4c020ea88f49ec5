"""Sqrt: monotone and correctly rounded (IEEE 754 square root, as onnxruntime's kernel), so the
float32 square roots of the endpoints stepped outward bound the real AND the float32 result. A box
reaching below 0 is refused (onnxruntime computes NaN there; the real function is undefined).
Not Lipschitz near 0: ``math.inf`` for a variable input."""

from __future__ import annotations

import math

import numpy as np
import torch

from verify.ops._elementwise import f32, outward
from verify.ops.base import Op


class Sqrt(Op):
    op_type = "Sqrt"
    inf_safe = True  # sqrt(+inf) = +inf; a -inf endpoint is refused as negative

    def forward(self, x):
        with np.errstate(invalid="ignore"):
            return np.sqrt(f32(x))

    def torch_forward(self, ctx, x):
        return torch.sqrt(x)

    def exact_forward(self, x):
        r = self.forward(x)
        r64 = r.astype(np.float64)
        ok = np.isfinite(r).all() and np.array_equal(r64 * r64, f32(x).astype(np.float64))  # exact in float64
        return r if ok else None

    def interval(self, b):
        if np.any(b.lo < 0):
            raise self.fail("the input may be negative (the square root is then NaN); cannot certify")
        return outward(np.sqrt(f32(b.lo)), np.sqrt(f32(b.hi)))

    def lipschitz(self, lx=None):
        return 0.0 if not lx else math.inf

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
