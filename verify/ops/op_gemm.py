"""Gemm: Y = alpha * A' B' + beta * C (A' = A or Aᵀ per transA, B' likewise), one side constant.

With alpha = beta = 1 one affine bound (verify/ops/_affine.py). Otherwise the float32 evaluation is
bounded as onnxruntime (MLAS) performs it: the dot product A'B' (which may overflow, or whose
products may underflow, where alpha·A'B' would not), one rounded product by alpha, one rounded
sum with fl(beta·C) (FMA or not: each stage's box bounds the real value too, and rounding is
monotone)."""

from __future__ import annotations

import numpy as np

from verify.ops._affine import affine_interval
from verify.ops._elementwise import add_boxes, scale_box
from verify.ops.base import Box, Op, inf_norm_up, mul_up


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

    def interval(self, ab, bb, cb=None):
        alpha, beta = self._mats()
        if alpha == 1.0 and (beta == 1.0 or cb is None):  # one affine map: bias inside the proven bound
            bias = None if cb is None else np.asarray(cb.lo, np.float64)
            return self._affine(ab, bb, bias)
        # onnxruntime (MLAS) scales the float32 dot product by alpha, then adds beta·C: the dot
        # product may overflow (or its products underflow) where alpha·(A·B) does not, so bound
        # A·B first, then the rounded product by alpha and the rounded sum with fl(beta·C)
        y = scale_box(self._affine(ab, bb, None), alpha)
        if cb is not None:
            y = add_boxes(y, cb if beta == 1.0 else scale_box(cb, beta))
        return y

    def _affine(self, ab, bb, bias):
        """Sound box of ``A'B' + bias`` (the variable side as the box, the other constant)."""
        if not (self.is_var(1) and not self.is_var(0)):
            bm = self._op(np.asarray(bb.lo, np.float64), "transB")
            abm = np.abs(bm)
            box = Box(self._op(ab.lo, "transA"), self._op(ab.hi, "transA"))
            return affine_interval(box, lambda v: v @ bm, lambda v: v @ abm, bm.shape[0], bias)
        am = self._op(np.asarray(ab.lo, np.float64), "transA")
        aam = np.abs(am)
        box = Box(self._op(bb.lo, "transB"), self._op(bb.hi, "transB"))
        return affine_interval(box, lambda v: am @ v, lambda v: aam @ v, am.shape[1], bias)

    def contraction_length(self) -> int:
        """Number of terms of each output's dot product."""
        if self.is_var(0) or not self.is_var(1):
            b = self._op(self.const(1), "transB")
            return int(b.shape[0])
        return int(self._op(self.const(0), "transA").shape[1])

    def bias_abs(self):
        """|beta * C| as float64 (0 without C): the bias onnxruntime may fold later ops into."""
        c = self.const(2) if len(self.inputs) > 2 and self.inputs[2] else None
        _, beta = self._mats()
        return 0.0 if c is None else np.abs(beta * c.astype(np.float64))

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
