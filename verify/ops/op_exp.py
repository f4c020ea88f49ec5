"""Exp: monotone; float64 endpoints widened by the libm error model of onnxruntime's float32
kernel (verify/ops/_elementwise.py, measured in tests/test_ops_new_soundness.py), which also covers
its flushing of subnormal results to 0. Overflow (x > 88.72) gives +inf, as in onnxruntime. Not
globally Lipschitz: ``math.inf`` for a variable input."""

from __future__ import annotations

import math

import numpy as np
import torch

from verify.ops._elementwise import f32, monotone_libm
from verify.ops.base import Op


class Exp(Op):
    op_type = "Exp"
    inf_safe = True  # exp(-inf) = 0, exp(+inf) = +inf
    foldable = False

    def forward(self, x):
        with np.errstate(over="ignore"):
            return np.exp(f32(x).astype(np.float64)).astype(np.float32)

    def torch_forward(self, ctx, x):
        return torch.exp(x)

    def interval(self, b):
        return monotone_libm(np.exp, b)

    def lipschitz(self, lx=None):
        return 0.0 if not lx else math.inf

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
