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
from verify.bounds.rounding import down, step_down, step_up, up

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


def monotone_libm(fn64: Callable, box: Box) -> Box:
    """Sound box of a non-decreasing transcendental ``fn`` (float64 endpoints, widened by the error
    model, rounded outward; deliberately not clipped to fn's real range, see the module docstring)."""
    with np.errstate(all="ignore"):
        flo = fn64(box.lo.astype(np.float64))
        fhi = fn64(box.hi.astype(np.float64))
    lo = down(flo - libm_error(flo))
    hi = up(fhi + libm_error(fhi))
    return Box(lo, hi)


def libm_error(v):
    """The error model above: onnxruntime's float32 result of a transcendental op whose value is
    ``v`` (numpy or torch float64) is within ``|v|·LIBM_REL + LIBM_ABS`` of it (rounded to nearest
    here: callers round outward). The one bound used by the intervals and the linear relaxations
    (verify/bounds/sshape.py)."""
    return abs(v) * LIBM_REL + LIBM_ABS


def _sum64(a64: np.ndarray, b64: np.ndarray) -> np.ndarray:
    """a + b in float64 where that sum is exact, NaN elsewhere (Knuth's TwoSum: the rounding error
    of s = fl(a + b) is exactly (a - (s - bb)) + (b - bb) with bb = s - a)."""
    s = a64 + b64
    bb = s - a64
    return np.where((a64 - (s - bb)) + (b64 - bb) == 0, s, np.nan)


def _quot64(r64: np.ndarray, a64: np.ndarray, b64: np.ndarray) -> np.ndarray:
    """r where r * b = a exactly (r * b of float32 values is exact in float64), NaN elsewhere."""
    return np.where(r64 * b64 == a64, r64, np.nan)


_EXACT64 = {  # float64 arrays holding the exact real result (NaN where it is not found exactly)
    "add": lambda r, a, b: _sum64(a, b),
    "sub": lambda r, a, b: _sum64(a, -b),
    "mul": lambda r, a, b: a * b,  # a product of two float32 values is exact in float64
    "div": _quot64,
}


def exact_result(kind: str, r32: np.ndarray, a, b) -> np.ndarray | None:
    """``r32``, the float32 result of the correctly rounded op ``kind`` on float operands ``a``, ``b``,
    when it is finite and equals the exact real result everywhere (no rounding happened), else None
    (also for integer operands, whose exactness ``int_interval`` decides)."""
    if is_int(a) and is_int(b):
        return None
    r32 = np.asarray(r32)
    with np.errstate(all="ignore"):
        exact = _EXACT64[kind](r32.astype(np.float64), f32(a).astype(np.float64), f32(b).astype(np.float64))
        ok = np.isfinite(r32).all() and np.array_equal(r32.astype(np.float64), np.broadcast_to(exact, r32.shape))
    return r32 if ok else None


def is_int(a) -> bool:
    return np.issubdtype(np.asarray(a).dtype, np.integer)


def same_kind(xs) -> list[np.ndarray]:
    """Operands of a variadic elementwise op: integers stay integers (shape arithmetic: a float32
    detour would round int64 values past 2^24), anything else becomes float32."""
    xs = [np.asarray(x) for x in xs]
    return xs if all(is_int(x) for x in xs) else [f32(x) for x in xs]


def int_forward(fn: Callable, a, b) -> np.ndarray:
    """Integer arithmetic of shape computations (both operands integer): exact in int64."""
    with np.errstate(all="ignore"):
        return np.asarray(fn(np.asarray(a), np.asarray(b)))


def int_exact(fn: Callable, a, b) -> np.ndarray | None:
    """``fn(a, b)`` in the integers' own dtype when it equals the exact (unbounded) integer result,
    else None (the fixed-width result wrapped around, as onnxruntime's would)."""
    r = int_forward(fn, a, b)
    exact = fn(np.asarray(a).astype(object), np.asarray(b).astype(object))
    return r if np.array_equal(r.astype(object), np.asarray(exact, dtype=object)) else None


def int_interval(op, fn: Callable, a: Box, b: Box) -> Box:
    """Integer operands (shape arithmetic): only data-independent (point) boxes are supported, and
    only results without wrap-around (their exact value is the real semantics)."""
    if not (np.array_equal(a.lo, a.hi) and np.array_equal(b.lo, b.hi)):
        raise op.fail("integer arithmetic on values that depend on the input")
    r = int_exact(fn, a.lo, b.lo)
    if r is None:
        raise op.fail("integer overflow (the result would wrap around)")
    return Box.point(r)


def int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX integer Div: truncation towards zero (also on object arrays of python ints)."""
    q = np.abs(a) // np.abs(b)
    return np.where((np.asarray(a) < 0) != (np.asarray(b) < 0), -q, q).astype(np.result_type(a, b))
