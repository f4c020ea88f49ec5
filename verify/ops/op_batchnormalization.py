"""BatchNormalization, inference mode: y = a (x - mean) + B per channel, a = scale / sqrt(var + eps).

Real bound: with x ∈ [c - r, c + r] (float64 centre-radius), y ∈ a (c - mean) ± |a| r + B, computed
in float64 with a relative slack of 16 u64 on |a| (|c - mean| + r) + |B| (a has <= 3 roundings,
each further float64 op one). onnxruntime's float32 evaluation: ASSUMED to use at most 10 correctly
rounded float32 operations per element (sqrt, add, divide/reciprocal, multiply, subtract, add in any
association), so its error is <= γ_10^{(32)} (|a| (|x| + |mean|) + |B|) (we use 12 u32) plus the
absolute (subnormal) rounding errors, <= 2^-150 each, of up to 10 intermediates, amplified by at
most g = max(1, |scale|, |a|, 1/sqrt(var + eps)) and by |x| + |mean| (a subnormal coefficient a
times a large x): 10·2^-149·g·(1 + |x| + |mean|). Intermediates stay below g (|x| + |mean|) + |B|,
which must not reach FLT_MAX (else refused).
Lipschitz: max |a| (upward rounded).
Constants: finite (Op.nonfinite_constants), var + epsilon > 0 in float64 and in float32 (else
onnxruntime divides by 0 or takes the root of a negative number), |a| < FLT_MAX / 2; a box where
onnxruntime's float32 evaluation may overflow is refused (ModelError, the sample is ``unknown``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from verify.bounds.linear import t64
from verify.bounds.scale import scaled_relax
from verify.ops._affine import center_radius
from verify.ops.base import Box, Op, scaled
from verify.bounds.rounding import F32_MAX, TINY32, U32, U64, down, may_overflow32, step_up64, up


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

    def constants_problem(self):
        if any(self.const(i) is None for i in range(1, 5)):
            return "scale, B, mean and var must be constants"
        if len({self.const(i).size for i in range(1, 5)}) != 1:
            return "scale, B, mean and var must have the same size"
        var = self.const(4).astype(np.float32)
        eps32 = np.float32(self.attr("epsilon", 1e-5))
        if not (np.all(var.astype(np.float64) + float(eps32) > 0) and np.all(var + eps32 > 0)):
            return "var + epsilon must be > 0"
        a, _, _ = self._params(2)
        if not np.all(np.abs(a) < F32_MAX / 2):
            return "scale / sqrt(var + epsilon) overflows float32"
        return None

    def _params(self, ndim: int):
        shape = [1, -1] + [1] * (ndim - 2)
        scale, bias, mean, var = (self.const(i).astype(np.float64).reshape(shape) for i in range(1, 5))
        eps = float(np.float32(self.attr("epsilon", 1e-5)))
        a = scale / np.sqrt(var + eps)
        return a, bias, mean

    def _growth(self, ndim: int) -> np.ndarray:
        """max(1, |scale|, |a|, 1/sqrt(var + eps)) per channel: how much an intermediate of any
        association (x - mean, scale (x - mean), (x - mean) / sqrt(...), a x) may exceed |x| + |mean|,
        and how much an absolute (subnormal) rounding error of one may be amplified."""
        a, _, _ = self._params(ndim)
        shape = [1, -1] + [1] * (ndim - 2)
        scale, var = (self.const(i).astype(np.float64).reshape(shape) for i in (1, 4))
        inv = 1.0 / np.sqrt(var + float(np.float32(self.attr("epsilon", 1e-5))))
        return np.maximum(np.maximum(1.0, np.abs(scale)), np.maximum(np.abs(a), inv)) * (1 + 8 * U64)

    def forward(self, x, *_):
        x = np.asarray(x, np.float32)
        a, b, mean = self._params(x.ndim)
        return (a * (x.astype(np.float64) - mean) + b).astype(np.float32)

    def torch_forward(self, ctx, x, *_):
        a, b, mean = (torch.from_numpy(v) for v in self._params(x.dim()))
        return (a * (x.double() - mean) + b).float()

    def interval(self, bx, *_):
        a, b, mean = self._params(bx.lo.ndim)
        c, r = center_radius(bx)
        cm = c - mean
        r2 = step_up64(r + np.abs(cm) * 2 * U64)
        mag = np.abs(a) * (np.abs(cm) + r2) + np.abs(b)
        e64 = 16 * U64 * mag
        m_in = np.abs(c) + r + np.abs(mean)  # >= |x|, |mean| and |x - mean|
        g = self._growth(bx.lo.ndim)
        e32 = self._ort_error(m_in)
        if np.any(may_overflow32(g * m_in + np.abs(b), e32)):
            raise self.fail("float32 overflow is possible (onnxruntime may return ±inf or NaN); cannot certify")
        err = step_up64((e64 + e32) * (1 + 4 * U64))
        mid = a * cm + b
        rad = np.abs(a) * r2
        return Box(down(mid - rad - err), up(mid + rad + err))

    def _ort_error(self, m_in: np.ndarray) -> np.ndarray:
        """The bound of onnxruntime's float32 error (module docstring) at inputs with
        |x| + |mean| <= m_in (float64, [N, C, ...]); not yet rounded up."""
        a, b, _ = self._params(m_in.ndim)
        g = self._growth(m_in.ndim)
        return 12 * U32 * (np.abs(a) * m_in + np.abs(b)) * (1 + 2.0**-20) + 10 * TINY32 * g * (1 + m_in)

    def relax(self, a, ins, out, ctx):
        """CROWN step y = c·x + t per channel (verify/bounds/scale.py), c = scale / sqrt(var + eps)
        and t = B − c·mean computed in float64: c has at most 3 roundings (a sum, a root, a
        quotient: relative error <= 3u (1 + 3u)), charged as 8u·|c|; t two more, charged as
        16u·(|c||mean| + |B|) (>= 3u(1 + 3u)|c||mean| + u|c mean| + u(|B| + |c mean|)). With
        ``ctx.ort`` onnxruntime's float32 error (the interval's bound, at |x| <= mag(x)) is one more
        bounded term."""
        x = ins[0]
        c, b, mean = self._params(x.lo.dim())
        t = b - c * mean
        c_err = 8 * U64 * np.abs(c)
        t_err = step_up64(16 * U64 * step_up64(np.abs(c) * np.abs(mean) + np.abs(b)) + 2.0**-1022)
        e_out = None
        if ctx.ort:
            e_out = t64(step_up64(self._ort_error(x.mag.detach().numpy() + np.abs(mean)) * (1 + 4 * U64)))
        return scaled_relax(a, x, t64(c), t64(c_err), t64(t), t64(t_err), e_out)

    def lipschitz(self, lx=None, *_):
        scale, var = self.const(1).astype(np.float64), self.const(4).astype(np.float64)
        eps = float(np.float32(self.attr("epsilon", 1e-5)))
        amax = float(np.max(np.abs(scale / np.sqrt(var + eps)))) if scale.size else 0.0
        return scaled([lx], math.nextafter(amax * (1 + 8 * U64), math.inf))

    def batch_axis(self, f):
        from verify.front.batch_axis import keep_rows0

        return keep_rows0(self, f)
