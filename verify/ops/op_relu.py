"""Relu: exact, monotone, 1-Lipschitz."""

from __future__ import annotations

import numpy as np
import torch

from verify.ops._elementwise import same_kind
from verify.ops._torch import unary
from verify.ops.base import Box, Op, scaled


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

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
