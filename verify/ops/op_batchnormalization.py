"""BatchNormalization, inference mode: y = a (x - mean) + B per channel, a = scale / sqrt(var + eps).

Real bound: with x ∈ [c - r, c + r] (float64 centre-radius), y ∈ a (c - mean) ± |a| r + B, computed
in float64 with a relative slack of 16 u64 on |a| (|c - mean| + r) + |B| (a has <= 3 roundings,
each further float64 op one). onnxruntime's float32 evaluation: ASSUMED to use at most 10 correctly
rounded float32 operations per element (sqrt, add, divide/reciprocal, multiply, subtract, add in any
association), so its error is <= γ_10^{(32)} (|a| (|x| + |mean|) + |B|) + 10·2^-149 (we use 12 u32) plus
2·2^-149 (|x| + |mean|) for a subnormal folded scale s = scale/sqrt(var + eps), unless an
intermediate may overflow (|a|, |a x|, |a mean|, the sum): there the box is [-inf, inf].
Lipschitz: max |a| (upward rounded).
"""

from __future__ import annotations

import math

import numpy as np

from verify.ops._affine import center_radius
from verify.ops._elementwise import ort_fusion_widen
from verify.ops.base import Box, Op, scaled
from verify.rounding import TINY32, U32, U64, down, may_overflow32, step_up64, up


class BatchNormalization(Op):
    op_type = "BatchNormalization"
    foldable = False
    known_attrs = frozenset({"epsilon", "momentum", "training_mode", "spatial"})

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if int(self.attr("training_mode", 0)) or len(self.outputs) > 1:
            return "training mode is not supported"
        if int(self.attr("spatial", 1)) != 1:
            return "spatial = 0 is not supported"
        if any(self.is_var(i) for i in range(1, 5)):
            return "scale, B, mean and var must be constants"
        return None

    def _params(self, ndim: int):
        shape = [1, -1] + [1] * (ndim - 2)
        scale, bias, mean, var = (self.const(i).astype(np.float64).reshape(shape) for i in range(1, 5))
        eps = float(np.float32(self.attr("epsilon", 1e-5)))
        a = scale / np.sqrt(var + eps)
        return a, bias, mean

    def forward(self, x, *_):
        x = np.asarray(x, np.float32)
        a, b, mean = self._params(x.ndim)
        return (a * (x.astype(np.float64) - mean) + b).astype(np.float32)

    def interval(self, bx, *_):
        a, b, mean = self._params(bx.lo.ndim)
        if not (np.all(np.isfinite(bx.lo)) and np.all(np.isfinite(bx.hi))):
            shape = np.broadcast_shapes(bx.lo.shape, a.shape)
            return Box(np.full(shape, -np.inf, np.float32), np.full(shape, np.inf, np.float32))
        c, r = center_radius(bx)
        cm = c - mean
        r2 = step_up64(r + np.abs(cm) * 2 * U64)
        mag = np.abs(a) * (np.abs(cm) + r2) + np.abs(b)
        e64 = 16 * U64 * mag
        mag32 = np.abs(a) * (np.abs(c) + r + np.abs(mean)) + np.abs(b)
        # + a subnormal s = scale/sqrt(var + eps) (absolute error 2^-150 per rounding) times x, mean
        e32 = 12 * U32 * mag32 * (1 + 2.0**-20) + 10 * TINY32 + 2 * TINY32 * (np.abs(c) + r + np.abs(mean))
        err = step_up64((e64 + e32) * (1 + 4 * U64))
        mid = a * cm + b
        rad = np.abs(a) * r2
        box = ort_fusion_widen(self, Box(down(mid - rad - err), up(mid + rad + err)))
        # onnxruntime computes x·s + (B - mean·s), s = scale/sqrt(var + eps): s, x·s or mean·s may
        # overflow (inf - inf = NaN) where a·(x - mean) + B does not
        risky = may_overflow32(mag32 + np.abs(a), e32)
        return Box(np.where(risky, -np.inf, box.lo).astype(np.float32), np.where(risky, np.inf, box.hi).astype(np.float32))

    def lipschitz(self, lx=None, *_):
        scale, var = self.const(1).astype(np.float64), self.const(4).astype(np.float64)
        eps = float(np.float32(self.attr("epsilon", 1e-5)))
        amax = float(np.max(np.abs(scale / np.sqrt(var + eps)))) if scale.size else 0.0
        return scaled([lx], math.nextafter(amax * (1 + 8 * U64), math.inf))
