"""Erf: monotone, values in [-1, 1]; float64 endpoints widened by the libm error model of
onnxruntime's float32 kernel (verify/ops/_elementwise.py; measured in
tests/test_ops_new_soundness.py). Lipschitz 2/sqrt(pi) (erf' = 2/sqrt(pi) exp(-x^2)), rounded up."""

from __future__ import annotations

import math

import numpy as np
import torch

from verify.ops._elementwise import f32, monotone_libm
from verify.ops.base import Op, scaled

#: an upper bound of 2 / sqrt(pi) = 1.1283791670955126 (float64 evaluation stepped up twice)
ERF_SLOPE = math.nextafter(math.nextafter(2.0 / math.sqrt(math.pi), math.inf), math.inf)


def erf64(x: np.ndarray) -> np.ndarray:
    """erf in float64 (torch's libm-quality kernel; ±inf give ±1)."""
    return torch.erf(torch.from_numpy(np.asarray(x, np.float64))).numpy()


class Erf(Op):
    op_type = "Erf"
    inf_safe = True
    foldable = False

    def forward(self, x):
        return erf64(f32(x).astype(np.float64)).astype(np.float32)

    def torch_forward(self, ctx, x):
        return torch.erf(x)

    def interval(self, b):
        return monotone_libm(erf64, b)

    def lipschitz(self, lx=None):
        return scaled([lx], ERF_SLOPE)

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
