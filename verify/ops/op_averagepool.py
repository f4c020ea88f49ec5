"""AveragePool (2-D, ceil_mode 0, explicit pads): a linear map with non-negative weights.

count_include_pad = 1: each output is sum(window incl. zero padding) / prod(kernel);
count_include_pad = 0: sum over the in-bounds elements / their count. Lipschitz 1 either way (the
weights of each output are non-negative and sum to 1). onnxruntime sums each window in float32, then
divides by the count (or multiplies by its rounded reciprocal): the sum may overflow where the mean
does not, so the window SUM is bounded with the sound affine helper, then both divisions (each one
correctly rounded, monotone operation) and stepped outward."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from verify.ops._affine import affine_interval
from verify.ops.base import Box, Op, scaled
from verify.rounding import step_down, step_up
from verify.ops.op_maxpool import pool_params, pool_unsupported


class AveragePool(Op):
    op_type = "AveragePool"
    foldable = False
    known_attrs = frozenset({"kernel_shape", "strides", "pads", "ceil_mode", "auto_pad", "count_include_pad", "dilations"})

    def unsupported(self):
        r = super().unsupported() or pool_unsupported(self)
        if r:
            return r
        _, _, _, d = pool_params(self)
        if any(v != 1 for v in d):
            return "dilations != 1 are not supported"
        return None

    def _sum_and_count(self, x: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
        """The window sums (zero padding) in ``dtype`` and the divisor of each output (float32)."""
        k, s, p, _ = pool_params(self)
        xt = torch.from_numpy(np.require(x, dtype, ["C", "W"]))
        xp = F.pad(xt, (p[1], p[3], p[0], p[2]))
        with torch.no_grad():
            summed = F.avg_pool2d(xp, k, s, 0, divisor_override=1).numpy()
            if int(self.attr("count_include_pad", 0)):
                return summed, np.float32(np.prod(k))
            ones = F.pad(torch.ones_like(xt[:1, :1], dtype=torch.float32), (p[1], p[3], p[0], p[2]))
            return summed, F.avg_pool2d(ones, k, s, 0, divisor_override=1).numpy()

    def forward(self, x):
        total, count = self._sum_and_count(x, np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            return (total / count).astype(np.float32)

    def interval(self, b):
        k, _, _, _ = pool_params(self)
        f = lambda v: self._sum_and_count(v, np.float64)[0]  # noqa: E731 - weights 1: |A| = A
        total = affine_interval(b, f, f, int(np.prod(k)), None)
        _, count = self._sum_and_count(b.lo, np.float32)
        inv = np.float32(1.0) / count
        with np.errstate(over="ignore", invalid="ignore"):
            lo = np.minimum(step_down(total.lo / count), step_down(total.lo * inv))
            hi = np.maximum(step_up(total.hi / count), step_up(total.hi * inv))
        return Box(lo.astype(np.float32), hi.astype(np.float32))

    def lipschitz(self, lx=None):
        return scaled([lx], 1.0)
