"""Abs: exact, 1-Lipschitz."""

from __future__ import annotations

import numpy as np
import torch

from verify.ops._elementwise import f32, int_interval, is_int
from verify.ops._torch import unary
from verify.ops.base import Box, Op, scaled


class Abs(Op):
    op_type = "Abs"
    inf_safe = True

    def forward(self, x):
        return np.abs(x) if is_int(x) else np.abs(f32(x))  # integers: |INT_MIN| wraps like onnxruntime

    def torch_forward(self, ctx, x):
        return unary(self, torch.abs, x)

    def interval(self, b):
        if is_int(b.lo):  # shape arithmetic: a point box, refused where it wraps
            return int_interval(self, lambda a, _: np.abs(a), b, b)
        lo, hi = f32(b.lo), f32(b.hi)
        out_lo = np.where(lo >= 0, lo, np.where(hi <= 0, -hi, np.float32(0.0)))
        out_hi = np.maximum(np.abs(lo), np.abs(hi))
        return Box(out_lo.astype(np.float32), out_hi.astype(np.float32))

    def lipschitz(self, lx=None):
        return scaled([lx], 1.0)

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
