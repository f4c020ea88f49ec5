"""Div (numpy broadcasting): corner quotients when the divisor's box excludes 0, one rounding,
stepped outward. A divisor box containing 0 gives [-inf, inf] when the dividend's box excludes 0
(a / ±0 = ±inf, never NaN); when both contain 0, onnxruntime may compute 0/0 = NaN, which no box
holds: refused (ModelError, the sample is ``unknown``). Integer division by 0 is refused too."""

from __future__ import annotations

import math

import numpy as np
import torch

from verify.ops._elementwise import corner_box, exact_result, f32, int_div, int_forward, int_interval, is_int
from verify.bounds.scale import by_constant_relax
from verify.ops._torch import binary
from verify.ops.base import Box, Op, mul_up


class Div(Op):
    op_type = "Div"

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        c = self.const(1)
        if c is not None and np.any(c == 0):
            return "division by a constant containing 0"
        return None

    def forward(self, a, b):
        if is_int(a) and is_int(b):
            return int_forward(int_div, a, b)
        with np.errstate(all="ignore"):
            return f32(a) / f32(b)

    def torch_forward(self, ctx, a, b):
        return binary(self, torch.div, a, b)

    def exact_forward(self, a, b):
        return exact_result("div", self.forward(a, b), a, b)

    def interval(self, a, b):
        if is_int(a.lo) and is_int(b.lo):
            if np.any(b.lo == 0):
                raise self.fail("integer division by 0")
            return int_interval(self, int_div, a, b)
        spans0 = (f32(b.lo) <= 0) & (f32(b.hi) >= 0)
        if np.any(spans0 & (f32(a.lo) <= 0) & (f32(a.hi) >= 0)):
            raise self.fail("0 / 0 (NaN in onnxruntime) is possible in this box; cannot certify")
        box = corner_box(np.divide, a, Box(np.where(spans0, 1, b.lo), np.where(spans0, 1, b.hi)))
        if np.any(spans0):
            shape = np.broadcast_shapes(box.lo.shape, spans0.shape)
            lo = np.where(spans0, -np.inf, np.broadcast_to(box.lo, shape)).astype(np.float32)
            hi = np.where(spans0, np.inf, np.broadcast_to(box.hi, shape)).astype(np.float32)
            return Box(lo, hi)
        return box

    def lipschitz(self, la=None, lb=None):
        if lb is not None:
            return 0.0 if lb == 0 and not la else math.inf
        if la is None:
            return 0.0
        c = np.abs(self.const(1).astype(np.float64))
        inv = math.nextafter(float(1.0 / np.min(c)), math.inf) if c.size else 0.0
        return mul_up(inv, la)

    def relax(self, a, ins, out, ctx):
        """CROWN step for a division by a constant c (verify/bounds/scale.py): x / c = (1/c)·x with
        1/c computed in float64 (one rounding: within u·|1/c|·(1 + 2u), charged); onnxruntime's one
        rounding is charged. None for a variable divisor."""
        if not self.is_var(0) or self.const(1) is None:
            return None
        return by_constant_relax(a, ins, out, ctx, 0, self.const(1), invert=True)

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
