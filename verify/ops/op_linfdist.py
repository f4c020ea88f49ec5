"""linf::LinfDist(X[N,D], W[M,D], B?[M]) -> Y[N,M] = max_d |X[n,d] - W[m,d]| + B[m]."""

from __future__ import annotations

import numpy as np

from verify.ops._linf_kernel import linf_bounds, linf_forward
from verify.ops._linf_torch import linf_dist
from verify.ops._torch import f32t
from verify.ops.base import Box, Op, add_up
from verify.bounds.rounding import step_down, step_up
from verify.bounds.linf import linf_relax


def add_bias_outward(lo: np.ndarray, hi: np.ndarray, b: Box | None) -> Box:
    """Sound box of ``[lo, hi] + [b.lo, b.hi]``: one float32 add (RN) then one outward step each."""
    if b is None:
        return Box(lo, hi)
    return Box(step_down(lo + b.lo.astype(np.float32)), step_up(hi + b.hi.astype(np.float32)))


def dist_box(lo: np.ndarray, hi: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sound float32 bounds of ``max_d |x_d - w_d|`` over the box (exact RN value, one step out)."""
    low, upp = linf_bounds(lo, hi, w)
    lower = np.maximum(step_down(low), np.float32(0.0))
    upper = step_up(upp)
    return lower, upper


class LinfDist(Op):
    op_type = "LinfDist"
    domain = "linf"
    inf_safe = True  # |x - w| with finite W: never NaN

    def unsupported(self):
        if self.attrs:
            return f"unsupported attribute(s) {', '.join(sorted(self.attrs))}"
        if self.is_var(1):
            return "W must be a constant (initializer)"
        w = self.const(1)
        if w is None or w.ndim != 2:
            return "W must be a constant of rank 2 [M, D]"
        return None

    def forward(self, x, w, b=None):
        y = linf_forward(np.asarray(x, np.float32), np.asarray(w, np.float32))
        if b is not None:
            y = y + np.asarray(b, np.float32)
        return y

    def torch_forward(self, ctx, x, w, b=None):
        y = linf_dist(f32t(x), f32t(w), ctx.p_grad)  # exact value; gradient per ctx.p_grad
        return y if b is None else y + f32t(b)

    def interval(self, xb, wb, bb=None):
        w = np.asarray(wb.lo, np.float32)
        lo, hi = dist_box(xb.lo.astype(np.float32), xb.hi.astype(np.float32), w)
        return add_bias_outward(lo, hi, bb)

    def lipschitz(self, lx=None, lw=None, lb=None):
        # |x - w|_inf is 1-Lipschitz in x (and jointly in (x, w)); + B adds B's own bound.
        return add_up(*(v for v in (lx, lw, lb) if v is not None))

    def relax(self, a, ins, out, ctx):
        """One chosen coordinate below, the interval above (verify/bounds/linf.py)."""
        return linf_relax(self, a, ins[0], out, ctx)

    def batch_axis(self, f):
        from verify.front.batch_axis import coupled, keep_rows0

        return keep_rows0(self, f) if f.rank(0) == 2 else coupled(self, "needs X of rank 2")
