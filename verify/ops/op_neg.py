"""Neg: exact."""

from __future__ import annotations

import numpy as np
import torch

from verify.ops._elementwise import f32, int_interval, is_int
from verify.ops._torch import unary
from verify.ops.base import Box, Op, scaled
from verify.bounds.linear import Relaxed, zero_bias


class Neg(Op):
    op_type = "Neg"
    inf_safe = True

    def forward(self, x):
        return np.negative(x) if is_int(x) else -f32(x)  # integers: -INT_MIN wraps like onnxruntime

    def torch_forward(self, ctx, x):
        return unary(self, torch.neg, x)

    def interval(self, b):
        if is_int(b.lo):  # shape arithmetic: a point box, refused where it wraps
            return int_interval(self, lambda a, _: np.negative(a), b, b)
        return Box(-f32(b.hi), -f32(b.lo))

    def lipschitz(self, lx=None):
        return scaled([lx], 1.0)

    def relax(self, a, ins, out, ctx):
        """A·(−x) = (−A)·x exactly; onnxruntime's negation is exact."""
        if not ins[0].lo.is_floating_point():
            return None
        return Relaxed({0: -a}, zero_bias(a))

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
