"""Mul (numpy broadcasting): interval product of the corners, one rounding, stepped outward."""

from __future__ import annotations

import math

import numpy as np
import torch

from verify.ops._elementwise import corner_box, exact_result, f32, int_forward, int_interval, is_int
from verify.bounds.scale import by_constant_relax
from verify.ops._torch import binary
from verify.ops.base import Op, mul_up


class Mul(Op):
    op_type = "Mul"

    def forward(self, a, b):
        if is_int(a) and is_int(b):
            return int_forward(np.multiply, a, b)
        with np.errstate(over="ignore", under="ignore"):
            return f32(a) * f32(b)

    def torch_forward(self, ctx, a, b):
        return binary(self, torch.mul, a, b)

    def exact_forward(self, a, b):
        return exact_result("mul", self.forward(a, b), a, b)

    def interval(self, a, b):
        if is_int(a.lo) and is_int(b.lo):
            return int_interval(self, np.multiply, a, b)
        return corner_box(np.multiply, a, b)

    def lipschitz(self, la=None, lb=None):
        if la is not None and lb is not None:
            return 0.0 if la == 0 and lb == 0 else math.inf  # variable x variable: unbounded
        if la is None and lb is None:
            return 0.0
        c, lv = (self.const(1), la) if la is not None else (self.const(0), lb)
        cmax = float(np.max(np.abs(c))) if c.size else 0.0
        return mul_up(cmax, lv)

    def relax(self, a, ins, out, ctx):
        """CROWN step for a product with a constant (verify/bounds/scale.py): A·(c x) = (A c)·x in
        the reals; onnxruntime's one rounding is charged. None for two variable operands."""
        if self.is_var(0) == self.is_var(1):
            return None
        k = 0 if self.is_var(0) else 1
        return by_constant_relax(a, ins, out, ctx, k, self.const(1 - k))

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
