"""LeakyRelu(alpha >= 0): monotone; x >= 0 exact, x < 0 one rounded product (stepped outward);
Lipschitz max(1, alpha)."""

from __future__ import annotations

import numpy as np
import torch

from verify.ops._elementwise import f32
from verify.ops._torch import f32t
from verify.ops.base import Box, Op, scaled
from verify.bounds.rounding import step_down, step_up
from verify.bounds.relu import relu_like_relax


class LeakyRelu(Op):
    op_type = "LeakyRelu"
    known_attrs = frozenset({"alpha"})

    @property
    def inf_safe(self) -> bool:  # alpha * -inf is NaN for alpha = 0
        return bool(self._alpha() > 0)

    def _alpha(self):
        return np.float32(self.attr("alpha", 0.01))

    def unsupported(self):
        return super().unsupported() or (None if self._alpha() >= 0 else "alpha < 0 (not monotone)")

    def forward(self, x):
        x = f32(x)
        return np.where(x >= 0, x, self._alpha() * x).astype(np.float32)

    def torch_forward(self, ctx, x):
        x = f32t(x)
        return torch.where(x >= 0, x, float(self._alpha()) * x)

    def interval(self, b):
        a = self._alpha()
        lo, hi = f32(b.lo), f32(b.hi)
        out_lo = np.where(lo >= 0, lo, step_down(a * lo)).astype(np.float32)
        out_hi = np.where(hi >= 0, hi, step_up(a * hi)).astype(np.float32)
        return Box(out_lo, out_hi)

    def lipschitz(self, lx=None):
        return scaled([lx], max(1.0, float(self._alpha())))

    wants_input_bounds = True  # verify/bounds/crown.py tightens the input box before relaxing

    def relax(self, a, ins, out, ctx):
        """The Relu relaxation with slope alpha below 0 (verify/bounds/relu.py); alpha > 1 is not
        convex: None (concretised)."""
        alpha = float(self._alpha())
        return relu_like_relax(self, a, ins[0], out, ctx, alpha) if alpha <= 1.0 else None

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
