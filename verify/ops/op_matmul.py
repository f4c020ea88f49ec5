"""MatMul (numpy semantics). One constant operand: a sound linear map (verify/ops/_affine.py).
Integer operands (a Cast of the input): exact on point boxes without wrap-around, else refused.
Two variable operands (attention): the centre-radius product of verify/ops/_bilinear.py, not
Lipschitz on an unbounded domain (``math.inf``); their batch axes must be the same stacking axis."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from verify.ops._affine import affine_interval
from verify.ops._elementwise import int_forward, int_interval, is_int
from verify.ops._bilinear import bilinear_interval
from verify.ops._torch import f32t
from verify.ops.base import Op, inf_norm_up, mul_up
from verify.bounds.linear import Relaxed, affine_bias, coef_product, t64


class MatMul(Op):
    op_type = "MatMul"
    foldable = False

    def forward(self, a, b):
        if is_int(a) and is_int(b):  # integer MatMul: onnxruntime's int64 arithmetic (wraps around)
            return int_forward(np.matmul, a, b)
        return np.matmul(np.asarray(a, np.float32), np.asarray(b, np.float32)).astype(np.float32)

    def torch_forward(self, ctx, a, b):
        return f32t(a) @ f32t(b)

    def interval(self, ab, bb):
        if is_int(ab.lo) or is_int(bb.lo):  # integers: point boxes without wrap-around only
            return int_interval(self, np.matmul, ab, bb)
        if self.is_var(0) and self.is_var(1):
            if ab.lo.ndim < 2 or bb.lo.ndim < 2:
                raise self.fail("a product of two variable vectors is not supported")
            return bilinear_interval(ab, bb, ab.lo.shape[-1])
        if self.is_var(1) and not self.is_var(0):
            am = np.asarray(ab.lo, np.float64)
            aam = np.abs(am)
            n = am.shape[-1]
            return affine_interval(bb, lambda v: np.matmul(am, v), lambda v: np.matmul(aam, v), n)
        bm = np.asarray(bb.lo, np.float64)
        abm = np.abs(bm)
        n = bm.shape[0] if bm.ndim == 1 else bm.shape[-2]
        return affine_interval(ab, lambda v: np.matmul(v, bm), lambda v: np.matmul(v, abm), n)

    def lipschitz(self, la=None, lb=None):
        if la is not None and lb is not None:
            return np.inf if (la or lb) else 0.0
        if la is not None:
            b = self.const(1)
            b2 = b[:, None] if b.ndim == 1 else b  # y[.., i, j] = sum_k a[.., i, k] b[.., k, j]
            return mul_up(inf_norm_up(b2, b2.ndim - 2), la)
        if lb is not None:
            a = self.const(0)
            a2 = a[None, :] if a.ndim == 1 else a  # y[.., i, j] = sum_k a[.., i, k] b[.., k, j]
            return mul_up(inf_norm_up(a2, a2.ndim - 1), lb)
        return 0.0

    @cached_property
    def _relax_consts(self):
        """(B, |B|) in float64 torch, once per node (the constant is fixed at load)."""
        bm = t64(self.const(1))
        return bm, bm.abs()

    def relax(self, a, ins, out, ctx):
        """CROWN step for X @ B with X [N, D] variable and B [D, K] constant; None otherwise."""
        b = self.const(1)
        if not self.is_var(0) or b is None or b.ndim != 2 or ins[0].lo.dim() != 2:
            return None
        bm, bm_abs = self._relax_consts
        return Relaxed({0: coef_product(a, bm)}, affine_bias(a, bm.shape[1], bm.shape[0], ins[0].mag @ bm_abs, None, ctx,
                                                         in_mag=ins[0].mag))

    def batch_axis(self, f):
        from verify.front.batch_axis import Rows, coupled

        if f.rows(0) is not None and f.rows(1) is not None:
            return self._bilinear_batch_axis(f)
        v = 0 if f.rows(0) is not None else 1  # the variable operand; the other must be FREE
        k, r, rc = f.rows(v), [max(f.rank(0), 2), max(f.rank(1), 2)], max(f.rank(1 - v), 2)
        contracted = f.rank(v) - 1 if v == 0 else max(f.rank(1) - 2, 0)
        if k is None or not f.free(1 - v) or k == contracted:
            return coupled(self, "contracts the batch axis or multiplies two variables")
        a = k + max(r) - f.rank(v)  # the batch axis in the output before a 1-D operand's axis is dropped
        j = a - (max(r) - rc)  # the constant's axis aligned with it, if one of its stacking axes
        if 0 <= j < rc - 2 and (1, 1, *f.shapes[1 - v])[-rc:][j] != 1:
            return coupled(self, "broadcasts a stack of constant matrices along the batch axis")
        return Rows(a - (f.rank(0) == 1 and a == max(r) - 1))

    def _bilinear_batch_axis(self, f):
        """Two variable operands: the batch must be the same stacking axis (not one of the last two)
        of both, aligned in the output."""
        from verify.front.batch_axis import Rows, coupled

        r = max(f.rank(0), f.rank(1))
        pos = {f.rows(i) + r - f.rank(i) for i in (0, 1)}
        if f.rank(0) < 2 or f.rank(1) < 2 or len(pos) != 1 or next(iter(pos)) >= r - 2:
            return coupled(self, "multiplies two variables whose batch axes are not one stacking axis")
        return Rows(next(iter(pos)))
