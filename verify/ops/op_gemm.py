"""Gemm: Y = alpha * A' B' + beta * C (A' = A or Aᵀ per transA, B' likewise), one side constant."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from verify.ops._affine import affine_interval
from verify.ops._torch import f32t
from verify.ops.base import Box, Op, inf_norm_up, mul_up
from verify.bounds.linear import Relaxed, affine_bias, coef_product, t64


class Gemm(Op):
    op_type = "Gemm"
    foldable = False
    known_attrs = frozenset({"alpha", "beta", "transA", "transB"})

    def _mats(self):
        return float(self.attr("alpha", 1.0)), float(self.attr("beta", 1.0))

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if self.is_var(0) and self.is_var(1):
            return "A and B both variable (bilinear) is not supported"
        if self._mats()[0] == 0.0:
            return "alpha = 0 is not supported"
        if len(self.inputs) > 2 and self.is_var(2):
            return "a variable C input is not supported"
        return None

    def _op(self, m, trans_key):
        return m.T if self.attr(trans_key, 0) else m

    def forward(self, a, b, c=None):
        alpha, beta = self._mats()
        a32 = self._op(np.asarray(a, np.float32), "transA")
        b32 = self._op(np.asarray(b, np.float32), "transB")
        y = a32 @ b32
        if alpha != 1.0:
            y = np.float32(alpha) * y
        if c is not None:
            cc = np.asarray(c, np.float32)
            y = y + (cc if beta == 1.0 else np.float32(beta) * cc)
        return y.astype(np.float32)

    def torch_forward(self, ctx, a, b, c=None):
        alpha, beta = self._mats()
        y = self._op(f32t(a), "transA") @ self._op(f32t(b), "transB")
        if alpha != 1.0:
            y = float(np.float32(alpha)) * y
        if c is not None:
            y = y + (f32t(c) if beta == 1.0 else float(np.float32(beta)) * f32t(c))
        return y

    def interval(self, ab, bb, cb=None):
        alpha, beta = self._mats()
        extra = (alpha != 1.0) + (beta != 1.0)  # onnxruntime sums A B, then scales by alpha (measured)
        bias = None
        if cb is not None:
            bias = beta * np.asarray(cb.lo, np.float64)  # float32 * float32 is exact in float64
        if not (self.is_var(1) and not self.is_var(0)):
            bm = alpha * self._op(np.asarray(bb.lo, np.float64), "transB")
            abm = np.abs(bm)
            box = Box(self._op(ab.lo, "transA"), self._op(ab.hi, "transA"))
            return affine_interval(box, lambda v: v @ bm, lambda v: v @ abm, bm.shape[0], bias, extra, alpha)
        am = alpha * self._op(np.asarray(ab.lo, np.float64), "transA")
        aam = np.abs(am)
        box = Box(self._op(bb.lo, "transB"), self._op(bb.hi, "transB"))
        return affine_interval(box, lambda v: am @ v, lambda v: aam @ v, am.shape[1], bias, extra, alpha)

    def lipschitz(self, la=None, lb=None, lc=None):
        alpha, _ = self._mats()
        if la is not None and lb is not None:
            return np.inf if (la or lb) else 0.0
        if la is not None:
            bm = self._op(self.const(1), "transB")  # y[i, j] = sum_k a[i, k] bm[k, j]
            return mul_up(mul_up(abs(alpha), inf_norm_up(bm, 0)), la)
        if lb is not None:
            am = self._op(self.const(0), "transA")  # y[i, j] = sum_k am[i, k] b[k, j]
            return mul_up(mul_up(abs(alpha), inf_norm_up(am, 1)), lb)
        return 0.0

    @cached_property
    def _relax_consts(self):
        """(alpha B' [D, K], |alpha B'|, beta C or None) in float64 torch, once per node (the
        constants are fixed at load): alpha·B' is exact (float32 * float32), beta·C too."""
        alpha, beta = self._mats()
        bm = alpha * t64(self._op(self.const(1), "transB"))
        bias = beta * t64(self.const(2)) if len(self.inputs) > 2 and self.inputs[2] else None
        return bm, bm.abs(), bias

    def relax(self, a, ins, out, ctx):
        """CROWN step (verify/bounds/linear.affine_bias): A_in = A (alpha B')ᵀ for a variable A
        input with batch rows (transA = 0); None (concretise) otherwise."""
        if not self.is_var(0) or self.is_var(1) or self.attr("transA", 0):
            return None
        alpha, beta = self._mats()
        bm, bm_abs, bias = self._relax_consts
        extra = (alpha != 1.0) + (beta != 1.0)
        a_in = coef_product(a, bm)
        img = ins[0].mag @ bm_abs
        return Relaxed({0: a_in}, affine_bias(a, bm.shape[1], bm.shape[0], img, bias, ctx, extra, alpha,
                                                     in_mag=ins[0].mag))

    def batch_axis(self, f):
        from verify.front.batch_axis import Rows, coupled

        if f.rows(0) != int(self.attr("transA", 0)) or not f.free():
            return coupled(self, "does not keep the batch on the rows of A (B and C constant)")
        c = f.shapes[2] if len(f.shapes) > 2 and f.shapes[2] is not None else ()
        if len(c) == 2 and c[0] != 1:
            return coupled(self, f"adds a C with {c[0]} rows (one per sample position)")
        return Rows(0)
