"""Tanh: monotone; float64 endpoints widened by the libm error model (see _elementwise)."""

from __future__ import annotations

import numpy as np
import torch

from verify.bounds.sshape import TANH, sshape_relax
from verify.ops._elementwise import f32, monotone_libm
from verify.ops._torch import unary
from verify.ops.base import Op, scaled


class Tanh(Op):
    op_type = "Tanh"
    inf_safe = True
    foldable = False

    def forward(self, x):
        return np.tanh(f32(x))

    def torch_forward(self, ctx, x):
        return unary(self, torch.tanh, x)

    def interval(self, b):
        return monotone_libm(np.tanh, b)

    def lipschitz(self, lx=None):
        return scaled([lx], 1.0)  # tanh' = 1 - tanh^2 <= 1

    wants_input_bounds = True  # verify/bounds/crown.py tightens the input box before relaxing

    def relax(self, a, ins, out, ctx):
        """CROWN's tangent/chord lines on the input box with outward-rounded intercepts, the float64
        function's error and (ctx.ort) onnxruntime's libm error charged (verify/bounds/sshape.py)."""
        return sshape_relax(TANH, a, ins[0], out, ctx)

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
