"""Relu: exact, monotone, 1-Lipschitz."""

from __future__ import annotations

import numpy as np
import torch

from verify.ops._elementwise import same_kind
from verify.ops._torch import unary
from verify.ops.base import Box, Op, scaled
from verify.bounds.relu import relu_like_relax


class Relu(Op):
    op_type = "Relu"
    inf_safe = True

    def forward(self, x):
        (v,) = same_kind([x])  # integers stay integers (exact), floats become float32
        return np.maximum(v, v.dtype.type(0))

    def torch_forward(self, ctx, x):
        return unary(self, torch.relu, x)

    def interval(self, b):
        return Box(self.forward(b.lo), self.forward(b.hi))

    def lipschitz(self, lx=None):
        return scaled([lx], 1.0)

    wants_input_bounds = True  # verify/bounds/crown.py tightens the input box before relaxing

    def relax(self, a, ins, out, ctx):
        """Triangle relaxation on [l, u]: stable coordinates exactly; unstable ones (l < 0 < u)
        relu(z) >= alpha z (alpha in [0, 1]: ctx.slopes, else 1 if u > -l else 0) where A >= 0, and
        relu(z) <= s (z - l) with s >= u / (u - l) (rounded up) where A < 0. The float64 products
        A*slope are charged (rescaled_err, |z - l| <= 2 mag z); onnxruntime's Relu is exact."""
        return relu_like_relax(self, a, ins[0], out, ctx, 0.0)

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
