"""LayerNormalization(X, Scale, B?) (opset 17): y = (x - μ) / sqrt(var + ε) * scale + b over the
axes [axis, rank), μ and var the mean and (biased) variance of each slice; Scale and B constant;
stash_type 1 (float32); the optional Mean / InvStdDev outputs are not supported.

Interval (n terms per slice, everything in float64, then rounded outward):

1. d_i = x_i - μ = x_i (n-1)/n - Σ_{j≠i} x_j / n is linear: its exact range over the box is
   [l_i (n-1)/n - (S_u - u_i)/n, u_i (n-1)/n - (S_l - l_i)/n] (S_l, S_u the slice sums of the
   bounds), widened by e64 for our own float64 sums; var = Σ d_j² / n lies in [mean of the least
   squares of the d intervals, mean of the largest].
2. onnxruntime (ASSUMPTION, as measured in tests/test_ops_new_soundness.py, e.g. a slice with mean
   1e4 and deviation 0.01): the mean is a float32 (or float64 cast to float32) sum divided by n,
   |mean_f - μ| <= e_m = γ_{n+2} Σ|x| / n; the variance is either two-pass in float32 (Σ fl(x -
   mean_f)² / n = (var + (μ - mean_f)²) up to γ_{n+6}) or one-pass in float64 (E[x²] - mean², off
   by at most 4 γ^{(64)}_{n+6} max x²), plus 2 (n + 6) 2^-149 for float32 squares that underflow
   (a slice of deviations below ~1e-23 has variance 0 in float32: with ε = 0, a division by 0);
   so var_f ∈ [var_lo (1 - g) - e_v, (var_hi + e_m²)(1 + g) + e_v].
   Then σ_f = sqrt(var_f + ε) (γ_3), (x - mean_f) / σ_f (the d interval widened by e_m, one rounding
   for the subtraction, γ_3 for the division or a reciprocal and product), times scale plus b (γ_3).
   A slice whose var_f + ε may be <= 0 is refused (onnxruntime may divide by 0 or take sqrt of a
   negative number), and so is one whose float32 squares may overflow (n · max x² >= 2^124).
   The real values lie in every widened interval, so the box holds both theorems' results.

Lipschitz (theorem a): the Jacobian of one slice is (I - 11ᵀ/n - d dᵀ/(n σ²)) / σ; row i has ℓ1
norm <= (1 + 1 + |d_i| Σ_{j≠i} |d_j| / (n σ²)) / σ <= (2 + sqrt(n-1)/2) / sqrt(ε) (Cauchy-Schwarz
with d_i² + Σ_{j≠i} d_j² = n var <= n σ²), times max |scale|. n is read from Scale when its
shape fixes the normalised shape (one axis per normalised axis, every extent > 1); else (or ε = 0)
``math.inf``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from verify.ops._elementwise import f32
from verify.ops.base import Box, Op, mul_up
from verify.bounds.rounding import U32, U64, TINY32, down, gamma, up


def _corners(fn, a_lo, a_hi, b_lo, b_hi):
    c = [fn(a, b) for a in (a_lo, a_hi) for b in (b_lo, b_hi)]
    return np.minimum.reduce(c), np.maximum.reduce(c)


class LayerNormalization(Op):
    op_type = "LayerNormalization"
    foldable = False
    known_attrs = frozenset({"axis", "epsilon", "stash_type"})

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if any(self.is_var(i) for i in (1, 2)):
            return "Scale and B must be constants"
        if any(o for o in self.outputs[1:]):
            return "the Mean and InvStdDev outputs are not supported"
        if int(self.attr("stash_type", 1)) != 1:
            return "stash_type other than 1 (float32) is not supported"
        if self._eps() < 0:
            return "a negative epsilon is not supported"
        return None

    def _eps(self) -> float:
        return float(np.float32(self.attr("epsilon", 1e-5)))

    def _axes(self, rank: int) -> tuple[int, ...]:
        a = int(self.attr("axis", -1))
        if not -rank <= a < rank:
            raise self.fail(f"axis {a} out of range for rank {rank}")
        return tuple(range(a % rank, rank))

    def _params(self):
        s = f32(self.const(1))
        b = self.const(2) if len(self.inputs) > 2 and self.inputs[2] else None
        return s.astype(np.float64), (np.zeros((), np.float64) if b is None else f32(b).astype(np.float64))

    def forward(self, x, *_):
        x = f32(x).astype(np.float64)
        axes = self._axes(x.ndim)
        s, b = self._params()
        d = x - x.mean(axis=axes, keepdims=True)
        with np.errstate(all="ignore"):
            y = d / np.sqrt((d * d).mean(axis=axes, keepdims=True) + self._eps()) * s + b
        return y.astype(np.float32)

    def torch_forward(self, ctx, x, scale, bias=None):
        axes = self._axes(x.dim())
        d = x - x.mean(dim=axes, keepdim=True)
        y = d / torch.sqrt((d * d).mean(dim=axes, keepdim=True) + self._eps()) * scale
        return y if bias is None else y + bias

    def interval(self, xb, *_):
        lo, hi = xb.lo.astype(np.float64), xb.hi.astype(np.float64)
        axes = self._axes(lo.ndim)
        n = int(np.prod([lo.shape[a] for a in axes]))
        s, b = self._params()
        mag = np.maximum(np.abs(lo), np.abs(hi))
        big = mag.max(axis=axes, keepdims=True)
        if np.any(n * big * big >= 2.0**124):
            raise self.fail("float32 squares of the input may overflow; cannot certify")
        asum = mag.sum(axis=axes, keepdims=True)
        e64 = 8.0 * gamma(n + 4, U64) * (big + asum / n) + 1e-300
        d_lo = lo * ((n - 1) / n) - (hi.sum(axis=axes, keepdims=True) - hi) / n - e64
        d_hi = hi * ((n - 1) / n) - (lo.sum(axis=axes, keepdims=True) - lo) / n + e64
        sq_hi = np.maximum(d_lo * d_lo, d_hi * d_hi)
        sq_lo = np.where((d_lo <= 0) & (d_hi >= 0), 0.0, np.minimum(d_lo * d_lo, d_hi * d_hi))
        v_lo = sq_lo.mean(axis=axes, keepdims=True) * (1 - 2.0**-40)
        v_hi = sq_hi.mean(axis=axes, keepdims=True) * (1 + 2.0**-40)
        # onnxruntime's float32 mean and variance (module docstring, step 2)
        e_m = gamma(n + 2, U32) * asum / n * (1 + 2.0**-20) + (n + 2) * TINY32
        g = gamma(n + 6, U32) * (1 + 2.0**-20)
        # float32 squares below 2^-126 are subnormal (absolute error <= 2^-150 each, 0 under ~1e-23):
        # the relative bound g fails there, so each of the n squares and the division add TINY32
        e_v = 4.0 * gamma(n + 6, U64) * big * big + 2.0 * (n + 6) * TINY32
        vf_lo = v_lo * (1 - g) - e_v
        vf_hi = (v_hi + e_m * e_m) * (1 + g) + e_v
        eps = self._eps()
        g3 = gamma(3, U32) * (1 + 2.0**-20)
        if np.any(vf_lo + eps <= 0) or np.any((vf_lo + eps) * (1 - g3) <= 0):
            raise self.fail("the variance plus epsilon may be computed as <= 0 (division by 0); cannot certify")
        sig_lo = np.sqrt((vf_lo + eps) * (1 - g3)) * (1 - 2.0**-40)
        sig_hi = np.sqrt((vf_hi + eps) * (1 + g3)) * (1 + 2.0**-40)
        df_lo, df_hi = d_lo - e_m, d_hi + e_m
        dm = np.maximum(np.abs(df_lo), np.abs(df_hi))
        df_lo, df_hi = df_lo - U32 * dm - TINY32, df_hi + U32 * dm + TINY32  # the rounded subtraction
        q_lo, q_hi = _corners(np.divide, df_lo, df_hi, sig_lo, sig_hi)
        qm = np.maximum(np.abs(q_lo), np.abs(q_hi))
        q_lo, q_hi = q_lo - g3 * qm - TINY32, q_hi + g3 * qm + TINY32
        y_lo, y_hi = _corners(np.multiply, q_lo, q_hi, s, s)
        err = g3 * (np.maximum(np.abs(y_lo), np.abs(y_hi)) + np.abs(b)) * (1 + 2.0**-20) + 4 * TINY32
        return Box(down(y_lo + b - err), up(y_hi + b + err))

    def lipschitz(self, lx=None, *_):
        if not lx:
            return 0.0
        s = f32(self.const(1))
        eps, a = self._eps(), int(self.attr("axis", -1))
        if eps <= 0 or a >= 0 or s.ndim != -a or min(s.shape, default=0) <= 1:
            return math.inf
        n = s.size
        root = math.nextafter(math.sqrt(n - 1), math.inf)
        num = math.nextafter(2.0 + math.nextafter(root / 2.0, math.inf), math.inf)
        per = math.nextafter(num / math.nextafter(math.sqrt(eps), -math.inf), math.inf)
        return mul_up(mul_up(per, float(np.max(np.abs(s)))), float(lx))

    def batch_axis(self, f):
        from verify.front.batch_axis import reduce_rows

        return reduce_rows(self, f, set(self._axes(f.rank(0))), True)
