"""Sigmoid: monotone, Lipschitz 1/4 (s' = s(1 - s) <= 1/4); libm error model of _elementwise."""

from __future__ import annotations

import numpy as np
import torch

from verify.bounds.sshape import SIGMOID, sshape_relax
from verify.ops._elementwise import f32, monotone_libm
from verify.ops._torch import unary
from verify.ops.base import Op, scaled


def _sigmoid64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


class Sigmoid(Op):
    op_type = "Sigmoid"
    inf_safe = True
    foldable = False

    def forward(self, x):
        return _sigmoid64(f32(x).astype(np.float64)).astype(np.float32)

    def torch_forward(self, ctx, x):
        return unary(self, torch.sigmoid, x)

    def interval(self, b):
        return monotone_libm(_sigmoid64, b)

    def lipschitz(self, lx=None):
        return scaled([lx], 0.25)

    wants_input_bounds = True  # verify/bounds/crown.py tightens the input box before relaxing

    def relax(self, a, ins, out, ctx):
        """CROWN's tangent/chord lines on the input box with outward-rounded intercepts, the float64
        function's error and (ctx.ort) onnxruntime's libm error charged (verify/bounds/sshape.py)."""
        return sshape_relax(SIGMOID, a, ins[0], out, ctx)

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
