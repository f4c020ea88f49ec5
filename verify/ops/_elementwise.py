"""Helpers for elementwise ops: outward rounding of correctly rounded float32 results, and the
error model of float32 transcendental functions in onnxruntime.

Correctly rounded ops (+, -, *, / of float32): the float32 result is RN(exact); RN is monotone, so
bounds computed in float32 from the box corners are RN(exact extreme) and one step outward
(``step_down`` / ``step_up``) makes them sound for the reals AND for every float32 evaluation.

Transcendental ops (tanh, sigmoid, exp): evaluated in float64 at the endpoints (the function is
monotone) and widened by ``LIBM_REL`` relative + ``LIBM_ABS`` absolute before rounding outward.
ASSUMPTION (tested against onnxruntime by sampling in tests/test_ops_soundness.py): the float32
kernels of onnxruntime (MLAS vectorised approximations) are within 2^-16 relative of the true value
plus 2^-20 absolute; float64 libm is within a few ulp (negligible). Measured on onnxruntime 1.32
(4e5 samples, |x| from 1e-45 to 316): tanh max relative error 2.5e-7 but it returns 1.0000001 for
x ≈ 8.9 (outside the real range!) and flushes subnormal results to 0; sigmoid is only absolutely
accurate (max abs error 1.3e-7, relative error 4.2 at x = -17.9). Hence no clipping of these bounds
to the real range of the function, and an absolute margin well above the observed errors.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from verify.ops.base import Box
from verify.rounding import TINY32, U32, down, gamma, step_down, step_up, up

LIBM_REL = 2.0**-16
LIBM_ABS = 2.0**-20


def f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def outward(lo32: np.ndarray, hi32: np.ndarray) -> Box:
    """Sound box from float32 values that are each one correctly rounded op of the exact extreme."""
    return Box(step_down(lo32), step_up(hi32))


def corner_box(fn: Callable, a: Box, b: Box) -> Box:
    """Sound box of the correctly rounded binary op ``fn`` (monotone in each argument on each sign
    region, extremes at corners: * and / away from 0) from the four float32 corner values."""
    with np.errstate(all="ignore"):
        cands = [fn(f32(x), f32(y)) for x in (a.lo, a.hi) for y in (b.lo, b.hi)]
    lo = cands[0]
    hi = cands[0]
    for c in cands[1:]:
        lo = np.minimum(lo, c)
        hi = np.maximum(hi, c)
    return outward(lo, hi)


def unbounded_where_nan(box: Box) -> Box:
    """``box`` with every entry that has a NaN endpoint (0·inf, inf − inf) widened to [-inf, inf]."""
    bad = np.isnan(box.lo) | np.isnan(box.hi)
    if not bad.any():
        return box
    return Box(np.where(bad, -np.inf, box.lo).astype(np.float32), np.where(bad, np.inf, box.hi).astype(np.float32))


def scale_box(box: Box, k: float) -> Box:
    """Sound box of ``fl32(k · v)`` and of the real ``k · v`` for v in ``box`` (one correctly rounded
    product by the float32 scalar k: monotone, so corners stepped outward; 0 · inf gives [-inf, inf])."""
    kk = Box.point(np.float32(k))
    return unbounded_where_nan(corner_box(np.multiply, kk, box))


def add_boxes(a: Box, b: Box) -> Box:
    """Sound box of one correctly rounded float32 addition (and the real sum) of values in a and b."""
    with np.errstate(invalid="ignore"):
        return unbounded_where_nan(outward(f32(a.lo) + f32(b.lo), f32(a.hi) + f32(b.hi)))


def monotone_libm(fn64: Callable, box: Box) -> Box:
    """Sound box of a non-decreasing transcendental ``fn`` (float64 endpoints, widened by the error
    model, rounded outward; deliberately not clipped to fn's real range, see the module docstring)."""
    with np.errstate(all="ignore"):
        flo = fn64(box.lo.astype(np.float64))
        fhi = fn64(box.hi.astype(np.float64))
    lo = down(flo - (np.abs(flo) * LIBM_REL + LIBM_ABS))
    hi = up(fhi + (np.abs(fhi) * LIBM_REL + LIBM_ABS))
    return Box(lo, hi)


def ort_fusion_widen(op, box: Box) -> Box:
    """Widen ``box`` by γ^{(32)}_{n+8} · beta when ``op.ort_slack = (n, beta)`` is set (an op that
    onnxruntime may fold into the preceding Gemm/Conv; see verify.fuse.annotate_ort_fusions)."""
    slack = getattr(op, "ort_slack", None)
    if not slack:
        return box
    n, beta = slack
    e = gamma(n + 8, U32) * np.asarray(beta, np.float64) * (1 + 2.0**-20) + (n + 8) * TINY32
    lo = down(box.lo.astype(np.float64) - e)
    hi = up(box.hi.astype(np.float64) + e)
    return Box(lo, hi)


def is_int(a) -> bool:
    return np.issubdtype(np.asarray(a).dtype, np.integer)


def int_forward(fn: Callable, a, b) -> np.ndarray:
    """Integer arithmetic of shape computations (both operands integer): exact in int64."""
    with np.errstate(all="ignore"):
        return np.asarray(fn(np.asarray(a), np.asarray(b)))


def int_interval(op, fn: Callable, a: Box, b: Box) -> Box:
    """Integer operands (shape arithmetic): only data-independent (point) boxes are supported."""
    if not (np.array_equal(a.lo, a.hi) and np.array_equal(b.lo, b.hi)):
        raise op.fail("integer arithmetic on values that depend on the input")
    return Box.point(int_forward(fn, a.lo, b.lo))


def int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX integer Div: truncation towards zero."""
    q = np.abs(a) // np.abs(b)
    return (np.sign(a) * np.sign(b) * q).astype(np.result_type(a, b))
