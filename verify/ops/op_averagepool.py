"""AveragePool (2-D, ceil_mode 0, explicit pads): a linear map with non-negative weights.

count_include_pad = 1: each output is sum(window incl. zero padding) / prod(kernel);
count_include_pad = 0: sum over the in-bounds elements / their count. Lipschitz 1 either way (the
weights of each output are non-negative and sum to 1). Bounds via the sound affine helper with two
extra rounded operations (a division, or a reciprocal and a product)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from verify.ops._affine import affine_interval
from verify.ops._torch import f32t
from verify.ops.base import Op, scaled
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

    def _pool_t(self, xt: torch.Tensor) -> torch.Tensor:
        k, s, p, _ = pool_params(self)
        xp = F.pad(xt, (p[1], p[3], p[0], p[2]))
        summed = F.avg_pool2d(xp, k, s, 0, divisor_override=1)
        if int(self.attr("count_include_pad", 0)):
            return summed / float(np.prod(k))
        ones = F.pad(torch.ones_like(xt[:1, :1]), (p[1], p[3], p[0], p[2]))
        return summed / F.avg_pool2d(ones, k, s, 0, divisor_override=1)

    def _pool(self, x: np.ndarray, dtype) -> np.ndarray:
        with torch.no_grad():
            return self._pool_t(torch.from_numpy(np.require(x, dtype, ["C", "W"]))).numpy()

    def forward(self, x):
        return self._pool(x, np.float32).astype(np.float32)

    def torch_forward(self, ctx, x):
        return self._pool_t(f32t(x))

    def interval(self, b):
        k, _, _, _ = pool_params(self)
        n = int(np.prod(k))
        f = lambda v: self._pool(v, np.float64)  # noqa: E731 - non-negative weights: |A| = A
        return affine_interval(b, f, f, n, None, extra_ops=2, scaling=1.0 / n)  # sum, then divide

    def lipschitz(self, lx=None):
        return scaled([lx], 1.0)

    def batch_axis(self, f):
        from verify.front.batch_axis import keep_rows0

        return keep_rows0(self, f)
