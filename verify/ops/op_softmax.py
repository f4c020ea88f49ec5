"""Softmax(axis) (opset >= 13 semantics; before 13 only on the last axis).

Bounds: s_i = 1 / (1 + sum_{j != i} exp(x_j - x_i)) increases in x_i and decreases in every x_j, so
s_i >= 1 / (1 + sum_{j != i} exp(u_j - l_i)) and s_i <= 1 / (1 + sum_{j != i} exp(l_j - u_i)),
evaluated in float64 (O(K^2) per slice), then widened for onnxruntime's float32 evaluation:
exp(fl(x_j - m)) with m the max has relative error <= η = LIBM_REL + 110 u32 for non-underflowing
terms (|x_j - m| <= 104), so the ratio e_i / sum e_j is within relative 2η + γ_{K+2} (sum and
division) of s_i, plus (K + 2) 2^-148 absolute for underflowing terms (the sum is >= 1), plus
2^-126 (1 + 2η) absolute: onnxruntime's AVX2 exp kernel flushes subnormal results to 0 (measured on
onnxruntime 1.32, AMD EPYC without AVX-512: softmax 0 where the exact value is 5e-43), so any term
e_j < 2^-126, and hence any output below 2^-126, may come back as 0. A slice whose box has an
infinite endpoint gets [-inf, inf]: onnxruntime's x - max(x) is then inf - inf = NaN.

Lipschitz 1/2 (ℓ∞→ℓ∞): the Jacobian of one slice is J = diag(s) - s sᵀ; the ℓ1 norm of row i is
s_i (1 - s_i) + s_i sum_{j != i} s_j = 2 s_i (1 - s_i) <= 1/2, and slices do not interact, so by the
mean value theorem |softmax(x) - softmax(y)|_∞ <= 1/2 |x - y|_∞.
"""

from __future__ import annotations

import numpy as np
import torch

from verify.ops._elementwise import LIBM_REL
from verify.ops._torch import f32t
from verify.ops.base import Box, Op, scaled
from verify.bounds.rounding import U32, down, gamma, up


def _softmax64(x: np.ndarray, axis: int) -> np.ndarray:
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


class Softmax(Op):
    op_type = "Softmax"
    foldable = False
    known_attrs = frozenset({"axis"})

    def _axis(self, ndim: int) -> int:
        default = -1 if self.opset >= 13 else 1
        ax = int(self.attr("axis", default)) % ndim
        if self.opset < 13 and ax != ndim - 1:
            raise self.fail("Softmax before opset 13 is only supported on the last axis")
        return ax

    def forward(self, x):
        x = np.asarray(x, np.float32)
        return _softmax64(x.astype(np.float64), self._axis(x.ndim)).astype(np.float32)

    def torch_forward(self, ctx, x):
        x = f32t(x)
        return torch.softmax(x, dim=self._axis(x.dim()))

    def interval(self, b):
        ax = self._axis(b.lo.ndim)
        lo = np.moveaxis(b.lo.astype(np.float64), ax, -1)
        hi = np.moveaxis(b.hi.astype(np.float64), ax, -1)
        k = lo.shape[-1]
        with np.errstate(over="ignore"):
            # d_low[..., i, j] = u_j - l_i ; d_high[..., i, j] = l_j - u_i (diagonal excluded)
            e_low = np.exp(hi[..., None, :] - lo[..., :, None])
            e_high = np.exp(lo[..., None, :] - hi[..., :, None])
        eye = np.eye(k, dtype=bool)
        s_low = 1.0 / (1.0 + np.where(eye, 0.0, e_low).sum(-1))
        s_high = 1.0 / (1.0 + np.where(eye, 0.0, e_high).sum(-1))
        eta = LIBM_REL + 110 * U32
        rel = 2.0 * eta + gamma(k + 2, U32) + 2.0**-40
        absm = (k + 2) * 2.0**-148 + 2.0**-126 * (1.0 + 2.0 * eta)  # flushed subnormal exp
        lo_out = down(s_low * (1.0 - rel) - absm)
        hi_out = up(s_high * (1.0 + rel) + absm)
        # exp >= 0, so onnxruntime's result is >= 0 too; no upper clip (a reciprocal-multiply
        # kernel could return 1 + ulp, like tanh does, see _elementwise)
        lo_out = np.maximum(lo_out, np.float32(0.0)).astype(np.float32)
        # an infinite input makes onnxruntime's x - max(x) inf - inf = NaN for its whole slice
        inf_slice = ~(np.isfinite(lo) & np.isfinite(hi)).all(axis=-1, keepdims=True)
        lo_out = np.where(inf_slice, -np.inf, lo_out).astype(np.float32)
        hi_out = np.where(inf_slice, np.inf, hi_out).astype(np.float32)
        return Box(np.moveaxis(lo_out, -1, ax), np.moveaxis(hi_out, -1, ax))

    def lipschitz(self, lx=None):
        return scaled([lx], 0.5)

    def batch_axis(self, f):
        from verify.front.batch_axis import reduce_rows

        return reduce_rows(self, f, {self._axis(f.rank(0))}, True)
