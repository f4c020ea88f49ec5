"""Sub (numpy broadcasting): one correctly rounded float32 subtraction per element."""

from __future__ import annotations

import numpy as np
import torch

from verify.ops._elementwise import exact_result, f32, int_forward, int_interval, is_int, outward
from verify.ops._torch import binary
from verify.ops.base import Op, add_up
from verify.bounds.sums import sum_relax


class Sub(Op):
    op_type = "Sub"

    def forward(self, a, b):
        if is_int(a) and is_int(b):
            return int_forward(np.subtract, a, b)
        return f32(a) - f32(b)

    def torch_forward(self, ctx, a, b):
        return binary(self, torch.sub, a, b)

    def exact_forward(self, a, b):
        return exact_result("sub", self.forward(a, b), a, b)

    def interval(self, a, b):
        if is_int(a.lo) and is_int(b.lo):
            return int_interval(self, np.subtract, a, b)
        return outward(f32(a.lo) - f32(b.hi), f32(a.hi) - f32(b.lo))

    def lipschitz(self, la=None, lb=None):
        return add_up(*(v for v in (la, lb) if v is not None))

    def relax(self, a, ins, out, ctx):
        """A·(x - w) for inputs of the output's shape (a constant operand may broadcast): exact
        coefficients A, -A; onnxruntime's one float32 rounding charged when ``ctx.ort``."""
        return sum_relax(self, a, ins, out, ctx, (1.0, -1.0))

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
