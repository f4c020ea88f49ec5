"""AveragePool (2-D, ceil_mode 0, explicit pads): a linear map with non-negative weights.

count_include_pad = 1: each output is sum(window incl. zero padding) / prod(kernel);
count_include_pad = 0: sum over the in-bounds elements / their count. Lipschitz 1 either way (the
weights of each output are non-negative and sum to 1). Bounds via the sound affine helper with two
extra rounded operations (a division, or a reciprocal and a product)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from verify.bounds.linear import Relaxed, affine_bias, t64, up
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
        return F.avg_pool2d(xp, k, s, 0, divisor_override=1) / self._divisor(xt)

    def _divisor(self, xt: torch.Tensor):
        """The divisor of each window (a number, or [1, 1, Ho, Wo] in xt's dtype): the kernel size,
        or the count of its in-bounds elements (count_include_pad = 0); exact integers."""
        k, s, p, _ = pool_params(self)
        if int(self.attr("count_include_pad", 0)):
            return float(np.prod(k))
        ones = F.pad(torch.ones_like(xt[:1, :1]), (p[1], p[3], p[0], p[2]))
        return F.avg_pool2d(ones, k, s, 0, divisor_override=1)

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

    def relax(self, a, ins, out, ctx):
        """CROWN step (verify/bounds/linear.affine_bias) for y = L x, L = window sums / divisor:
        A_in = (window sum)ᵀ(fl64(A / divisor)), torch's conv2d_input with a kernel of ones in
        float64. Each coefficient is a sum of at most m = ceil(kh/sh)·ceil(kw/sw) rounded
        quotients: |A_in − Lᵀ A| <= γ_m (1 + u) |L|ᵀ|A| + u |L|ᵀ|A| <= γ_{m+1} |L|ᵀ|A|.
        |L| mag(x) is the pool of mag(x) (one step up after its division). onnxruntime's error:
        the interval's model (kh·kw-term sums, two extra operations, scaling 1/(kh·kw))."""
        k, st, p, _ = pool_params(self)
        x = ins[0]
        n, s = a.shape[:2]
        c, h, w = x.lo.shape[1:]
        div = self._divisor(torch.zeros((1, 1, h, w), dtype=torch.float64))
        ak = (a / div).reshape(n * s * c, 1, *a.shape[3:])
        ones = torch.ones((1, 1, *k), dtype=torch.float64)
        g = torch.nn.grad.conv2d_input((n * s * c, 1, h + p[0] + p[2], w + p[1] + p[3]), ones, ak, stride=st)
        a_in = g[:, :, p[0]:p[0] + h, p[1]:p[1] + w].reshape(n, s, c, h, w)
        img = up(t64(self._pool(x.mag.detach().numpy(), np.float64)))
        m = -(-k[0] // st[0]) * -(-k[1] // st[1])
        kk = int(np.prod(k))
        return Relaxed({0: a_in}, affine_bias(a, m + 1, kk, img, None, ctx, extra_ops=2,
                                                 scaling=1.0 / kk, in_mag=x.mag))

    def lipschitz(self, lx=None):
        return scaled([lx], 1.0)

    def batch_axis(self, f):
        from verify.front.batch_axis import keep_rows0

        return keep_rows0(self, f)
