"""Sound interval bounds of linear maps y = A(x) + b with a constant linear map A (Gemm, MatMul,
Conv, AveragePool, BatchNormalization, Sum).

Method (centre-radius form in float64, proven error bound, directed rounding to float32):

1. ``c = RN64((l + u) / 2)`` and ``r = max(up64(u - c), up64(c - l))`` so ``[l, u] ⊆ [c - r, c + r]``
   exactly (each float64 difference is one rounded op; one step up makes it an upper bound).
2. ``yc = fl64(A c)``, ``yr = fl64(|A| r)``, ``ya = fl64(|A| |c|)``. For n-term dot products in any
   order (BLAS, FMA or not) Higham's bound gives ``|yc - A c| <= γ_n |A||c|`` and
   ``| yr - |A| r| <= γ_n |A| r``, γ_n = γ_n^{(64)}. Products of float32-derived values are exact in
   float64 except for underflow below 2^-1022, covered by an absolute 1e-290.
3. Exact real range: ``A x + b ∈ [A c - |A| r + b, A c + |A| r + b]``, so with
   ``s = ya + yr`` (≥ (1 - 2γ)(|A|(|c| + r))) the float64 quantities are off by at most
   ``E64 = 4 γ_{n+2} s + 1e-290``.
4. onnxruntime's float32 evaluation ``z`` of the same map at a float32 ``x`` in the box satisfies
   ``|z - (A x + b)| <= γ^{(32)}_{n+1} (|A||x| + |b|) + (n + 2) 2^-149`` (any order, FMA or not,
   gradual underflow), and ``|A||x| + |b| <= s (1 + 2^-30) + |b|``. ``extra_ops`` k counts further
   rounded operations per output (a division by the pool size, alpha, beta, BatchNorm's scale and
   shift): by Higham's Lemma 3.1 the product of n + 1 + k factors (1 + δ)^{±1} stays within
   γ_{n+1+k}, so the bound becomes γ^{(32)}_{n+1+k} (|A||x| + |b|) + (n + 2 + k) 2^-149.
   onnxruntime runs this node as written: the pinned session (common/runtime.py, graph
   optimisations off) never folds a following Mul/BatchNormalization/Add into the weights, which
   would re-round them (up to 10 times, tests/test_ort_config.py), so no allowance is added for it.
5. ``lo = down(sd(sd(sd(yc - yr) + b) - E))``, ``hi = up(su(su(su(yc + yr) + b) + E))`` with
   sd/su one float64 step down/up after every rounded float64 operation.

Non-finite input bounds never reach here (``Op.bound`` refuses them: 0 * inf and inf - inf are NaN in
onnxruntime). Where onnxruntime's float32 evaluation may overflow, it may return ±inf or NaN whatever
the exact value: refused with a ModelError (the sample is ``unknown``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from common.errors import ModelError
from verify.ops.base import Box
from verify.bounds.rounding import (
    TINY32,
    U64,
    dot_error_bound,
    down,
    gamma,
    may_overflow32,
    step_down64,
    step_up64,
    up,
)

Linear = Callable[[np.ndarray], np.ndarray]


def center_radius(box: Box) -> tuple[np.ndarray, np.ndarray]:
    """float64 ``(c, r)`` with ``[box.lo, box.hi] ⊆ [c - r, c + r]`` exactly (finite boxes)."""
    lo = box.lo.astype(np.float64)
    hi = box.hi.astype(np.float64)
    c = 0.5 * (lo + hi)
    r = np.maximum(step_up64(hi - c), step_up64(c - lo))
    return c, np.maximum(r, 0.0)


def affine_interval(
    box: Box,
    apply: Linear,
    apply_abs: Linear,
    n: int,
    bias: np.ndarray | None = None,
    extra_ops: int = 0,
    scaling: float = 1.0,
) -> Box:
    """Sound box of ``apply(x) + bias`` for x in ``box`` (see the module docstring for the proof).

    ``apply`` is the linear map in float64, ``apply_abs`` the same map with every coefficient
    replaced by its absolute value, ``n`` the number of terms of the longest dot product, ``bias``
    a float64-representable array broadcastable to the output (or None). ``scaling``: a factor that
    onnxruntime applies after summing (Gemm's alpha, AveragePool's 1/window; ``apply`` includes it):
    its partial sums may reach 1/|scaling| times |A||x| + |b| (overflow check), and the absolute
    (underflow) errors of its products are multiplied by |scaling|.
    """
    if not (np.all(np.isfinite(box.lo)) and np.all(np.isfinite(box.hi))):
        raise ModelError("an input of a linear map may be ±inf (onnxruntime may compute NaN); cannot certify")
    c, r = center_radius(box)
    yc = apply(c)
    yr = apply_abs(r)
    s = step_up64(apply_abs(np.abs(c)) + yr)
    b = np.zeros((), np.float64) if bias is None else np.asarray(bias, dtype=np.float64)
    e64 = 4.0 * gamma(n + 2, U64) * s + 1e-290
    abs_in = s * (1.0 + 2.0**-30) + np.abs(b)
    m = n + 1 + extra_ops
    grow, amp = max(1.0, 1.0 / abs(scaling)), max(1.0, abs(scaling))
    e32 = dot_error_bound(m, abs_in) + (amp - 1.0) * (m + 1) * TINY32  # underflowed products, scaled
    err = step_up64(step_up64(e64 + e32) * (1.0 + 4 * U64))
    lo = step_down64(step_down64(step_down64(yc - yr) + b) - err)
    hi = step_up64(step_up64(step_up64(yc + yr) + b) + err)
    # where onnxruntime's float32 evaluation may overflow it may return ±inf, or NaN when two
    # partial sums overflow with opposite signs (vectorised kernels keep several): no box holds NaN
    if np.any(may_overflow32(abs_in * grow, e32 * grow)):
        raise ModelError("a float32 dot product may overflow (onnxruntime may return ±inf or NaN); cannot certify")
    return Box(down(lo), up(hi))
