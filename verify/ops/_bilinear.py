"""Sound interval of a product of two variable matrices (MatMul of two boxes, e.g. attention's
Q Kᵀ and softmax(·) V), in centre-radius form in float64.

With A ∈ [Ac - Ar, Ac + Ar] and B ∈ [Bc - Br, Bc + Br] (``center_radius``), every product
a_ik b_kj lies in ac bc ± (|ac| br + ar |bc| + ar br), so the exact A B lies in
Ac Bc ± R, R = |Ac| Br + Ar |Bc| + Ar Br. Our float64 matrix products (n-term sums, any order)
are each within γ^{(64)}_n of |·| products bounded by M = (|Ac| + Ar)(|Bc| + Br): four of them,
hence 4 γ^{(64)}_{n+2} M (+ an absolute 1e-290 for float64 underflow). onnxruntime's float32
product of points of the boxes is within ``dot_error_bound(n, M)`` of the exact one; where a
float32 partial sum may overflow the sample is refused (ModelError). Non-finite boxes never get here
(``Op.bound`` refuses them)."""

from __future__ import annotations

import numpy as np

from common.errors import ModelError
from verify.ops._affine import center_radius
from verify.ops.base import Box
from verify.bounds.rounding import U64, dot_error_bound, down, gamma, may_overflow32, step_down64, step_up64, up


def bilinear_interval(a: Box, b: Box, n: int) -> Box:
    """Sound box of ``np.matmul(x, y)`` for x in ``a``, y in ``b``; ``n`` = the contracted extent."""
    ac, ar = center_radius(a)
    bc, br = center_radius(b)
    mm = np.matmul
    yc = mm(ac, bc)
    yr = step_up64(mm(np.abs(ac), br) + mm(ar, np.abs(bc)) + mm(ar, br))
    mag = step_up64(mm(np.abs(ac) + ar, np.abs(bc) + br) * (1.0 + 2.0**-40))
    e32 = dot_error_bound(n, mag)
    if np.any(may_overflow32(mag, e32)):
        raise ModelError("a float32 product of two variable matrices may overflow; cannot certify")
    err = step_up64(4.0 * gamma(n + 2, U64) * mag + e32 + 1e-290)
    return Box(down(step_down64(step_down64(yc - yr) - err)), up(step_up64(step_up64(yc + yr) + err)))
