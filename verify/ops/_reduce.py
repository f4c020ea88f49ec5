"""Helpers of the reductions (ReduceMax, ReduceMean, ReduceSum, GlobalAveragePool, GlobalMaxPool):
which axes are reduced, their per-sample analysis, and the sound bound of a linear reduction.

Axes come from the ``axes`` attribute (old opsets) or the constant second input (ReduceSum from
opset 13, the others from 18); absent or EMPTY axes reduce every axis unless
``noop_with_empty_axes`` = 1, when the op is the identity (onnxruntime's reading).
"""

from __future__ import annotations

import numpy as np
import torch

from verify.bounds.linear import Relaxed, affine_bias, t64, up, zero_bias
from verify.ops._affine import affine_interval
from verify.ops._shape import axes_from, norm_axes
from verify.ops.base import Box, Op

GLOBAL = "global"  # marker of the Global*Pool ops: every axis from 2 on, kept


def reduced_axes(op: Op, rank: int) -> tuple[int, ...] | None:
    """The reduced axes (normalised, each once), or None for the identity (noop_with_empty_axes)."""
    if getattr(op, "reduce_kind", None) == GLOBAL:
        return tuple(range(2, rank))
    axes = axes_from(op, 1)
    if not axes:
        if int(op.attr("noop_with_empty_axes", 0)):
            return None
        axes = range(rank)
    return tuple(norm_axes(op, axes, rank))


def keepdims(op: Op) -> bool:
    return getattr(op, "reduce_kind", None) == GLOBAL or bool(int(op.attr("keepdims", 1)))


def reduce_batch_axis(op: Op, f):
    """Per-sample analysis of a reduction: the batch axis must not be reduced."""
    from verify.front.batch_axis import reduce_rows

    axes = reduced_axes(op, f.rank(0))
    return reduce_rows(op, f, set(axes or ()), keepdims(op) or axes is None)


def reduce_unsupported(op: Op) -> str | None:
    if op.is_var(1):
        return "axes must be a constant"
    return None


class LinearReduce(Op):
    """Mean or sum over axes: y = A x with non-negative weights (1/n or 1), bounded by the sound
    affine helper (verify/ops/_affine.py) with n-term sums; a mean adds two rounded operations (a
    division, or a reciprocal and a product) and scales by 1/n. Non-finite inputs are refused
    (``inf_safe`` False: onnxruntime's inf + (-inf) is NaN)."""

    foldable = False
    mean: bool = True

    def unsupported(self):
        return super().unsupported() or reduce_unsupported(self)

    def _apply(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """(the reduction of x in x's dtype, number of reduced terms)."""
        axes = reduced_axes(self, x.ndim)
        if axes is None:
            return x, 1
        n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
        if n == 0:
            raise self.fail("reduction over an empty axis")
        s = np.sum(x, axis=axes, keepdims=keepdims(self))
        return (s / x.dtype.type(n) if self.mean else s), n

    def forward(self, x, *_):
        if np.issubdtype(np.asarray(x).dtype, np.integer):  # shape arithmetic: exact in python ints
            if self.mean:
                raise self.fail("the mean of integers is not supported")
            r = self._apply(np.asarray(x).astype(object))[0]
            if np.any(np.abs(np.asarray(r, dtype=object)) > np.iinfo(np.int64).max):
                raise self.fail("integer overflow (the result would wrap around)")
            return np.asarray(r).astype(np.asarray(x).dtype)
        x64 = np.asarray(x, np.float32).astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            return self._apply(x64)[0].astype(np.float32)

    def torch_forward(self, ctx, x, *_):
        axes = reduced_axes(self, x.dim())
        if not axes:  # the identity (torch would reduce every axis for dim=())
            return x
        if self.mean:
            return torch.mean(x, dim=axes, keepdim=keepdims(self))
        return torch.sum(x, dim=axes, keepdim=keepdims(self))

    def interval(self, b, *_):
        if np.issubdtype(b.lo.dtype, np.integer):
            if not np.array_equal(b.lo, b.hi):
                raise self.fail("integer arithmetic on values that depend on the input")
            return Box.point(self.forward(b.lo))
        lo64 = b.lo.astype(np.float64)
        if reduced_axes(self, lo64.ndim) is None:
            return Box(b.lo, b.hi)
        n = self._apply(lo64)[1]
        f = lambda v: self._apply(v)[0]  # noqa: E731 - non-negative weights: |A| = A
        if self.mean:
            return affine_interval(b, f, f, n, None, extra_ops=2, scaling=1.0 / n)
        return affine_interval(b, f, f, n)

    def relax(self, a, ins, out, ctx):
        """CROWN step (verify/bounds/linear.affine_bias): every input position of a reduced group gets
        its output's coefficient, A_in = fl64(A / n) for a mean (one rounding: a 1-term product with
        the exact weight 1/n) or A for a sum; |L| mag(x) is the reduction of mag(x) (one step up
        after the division). onnxruntime's error: the interval's model (same n, extra_ops, scaling).
        None when the batch axis is reduced."""
        x = ins[0]
        axes = reduced_axes(self, x.lo.dim())
        if axes is None:
            return Relaxed({0: a}, zero_bias(a))
        if 0 in axes:
            return None
        ak = a
        if not keepdims(self):
            for ax in axes:
                ak = ak.unsqueeze(ax + 1)
        img, n = self._apply(x.mag.detach().numpy())
        ak = ak / n if self.mean else ak
        a_in = ak.expand(*a.shape[:2], *x.lo.shape[1:])
        extra, scaling = (2, 1.0 / n) if self.mean else (0, 1.0)
        return Relaxed({0: a_in}, affine_bias(a, 1, n, up(t64(img)), None, ctx, extra, scaling,
                                                 in_mag=x.mag))

    def batch_axis(self, f):
        return reduce_batch_axis(self, f)
