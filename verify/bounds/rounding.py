"""Directed rounding helpers: the only place where float64 becomes float32 in a bound.

Guarantees (IEEE 754 binary32/binary64, round-to-nearest-even mode, no FTZ/DAZ):

* ``down(x)`` returns float32 values ``d`` with ``d <= x`` exactly (as real numbers), elementwise.
* ``up(x)`` returns float32 values ``v`` with ``v >= x`` exactly.
* ``step_down(f32)`` / ``step_up(f32)``: the adjacent float32 towards -inf / +inf. If ``f = RN(t)`` for
  a real ``t`` (one correctly rounded operation), then ``step_down(f) <= t <= step_up(f)``.
* ``gamma(n, u)``: Higham's gamma_n = n*u / (1 - n*u), rounded upward, the relative error bound of an
  n-term float dot product/sum in any order (FMA or not) with unit roundoff ``u``.

Proof of ``down``: ``f = float32(x)`` is the float32 nearest to ``x`` (numpy's cast is correctly rounded,
values beyond the float32 range become +-inf). The comparison ``float64(f) > x`` is exact because every
float32 is a float64. If ``f > x``, then ``x`` is at least the midpoint between ``pred(f)`` and
``f`` (``f`` is nearest), so ``pred(f) <= x``; for a finite ``x`` beyond FLT_MAX that rounded to
``+inf``, ``pred(+inf) = FLT_MAX <= x``. ``up`` is the mirror image. NaN is refused (it has no order).
"""

from __future__ import annotations

import math

import numpy as np

from common.errors import ModelError

U32 = 2.0**-24  # unit roundoff of binary32 (round to nearest)
U64 = 2.0**-53  # unit roundoff of binary64
TINY32 = 2.0**-149  # smallest positive float32 subnormal
TINY64 = 2.0**-1074  # smallest positive float64 subnormal
F32_MAX = float(np.finfo(np.float32).max)


def _check_nan(x: np.ndarray) -> None:
    if np.isnan(x).any():
        raise ModelError("a bound evaluated to NaN (inf - inf or 0 * inf); cannot certify this model")


def down(x) -> np.ndarray:
    """Float32 array ``<= x`` elementwise (x: float64 array or scalar). Raises ModelError on NaN."""
    x = np.asarray(x, dtype=np.float64)
    _check_nan(x)
    with np.errstate(over="ignore"):
        f = x.astype(np.float32)
        too_big = f.astype(np.float64) > x
        if too_big.any():
            f = np.where(too_big, np.nextafter(f, np.float32(-np.inf)), f)
    return f


def up(x) -> np.ndarray:
    """Float32 array ``>= x`` elementwise (x: float64 array or scalar). Raises ModelError on NaN."""
    x = np.asarray(x, dtype=np.float64)
    _check_nan(x)
    with np.errstate(over="ignore"):
        f = x.astype(np.float32)
        too_small = f.astype(np.float64) < x
        if too_small.any():
            f = np.where(too_small, np.nextafter(f, np.float32(np.inf)), f)
    return f


def step_down(f: np.ndarray) -> np.ndarray:
    """The next float32 below ``f`` (-inf stays -inf). Sound lower bound of t when f = RN(t)."""
    f = np.asarray(f, dtype=np.float32)
    _check_nan(f)
    with np.errstate(over="ignore"):
        return np.nextafter(f, np.float32(-np.inf))


def step_up(f: np.ndarray) -> np.ndarray:
    """The next float32 above ``f`` (+inf stays +inf). Sound upper bound of t when f = RN(t)."""
    f = np.asarray(f, dtype=np.float32)
    _check_nan(f)
    with np.errstate(over="ignore"):
        return np.nextafter(f, np.float32(np.inf))


def step_down64(x: np.ndarray) -> np.ndarray:
    """The next float64 below ``x``: sound lower bound of t when x = RN64(t) (one float64 op)."""
    return np.nextafter(np.asarray(x, dtype=np.float64), -np.inf)


def step_up64(x: np.ndarray) -> np.ndarray:
    """The next float64 above ``x``: sound upper bound of t when x = RN64(t) (one float64 op)."""
    return np.nextafter(np.asarray(x, dtype=np.float64), np.inf)


def gamma(n: int, u: float) -> float:
    """Upward-rounded gamma_n = n*u/(1 - n*u) (math.inf when n*u >= 1).

    ``n*u`` is exact (u a power of two, n < 2**53); the division result is rounded to nearest,
    so one step up makes it an upper bound.
    """
    nu = n * u
    if nu >= 1.0:
        return math.inf
    return math.nextafter(nu / (1.0 - nu), math.inf)


def dot_error_bound(n: int, abs_sum: np.ndarray) -> np.ndarray:
    """Float64 upper bound on |fl(dot) - dot| for any n-term float32 dot product evaluated in
    float32 in any order (with or without FMA, products possibly subnormal), where ``abs_sum`` is an
    upper bound of sum |a_i b_i| (float64, itself computed in float64: a relative slack of 2**-20 and
    an absolute term of n subnormal half-units cover its own rounding and product underflow).

    Higham Thm 3.1/3.5: |fl(dot) - dot| <= gamma_n * sum|a_i b_i| without underflow; each product
    that underflows adds at most TINY32/2 absolute error (gradual underflow; 0 with FMA).
    """
    g = gamma(n, U32)
    s = np.asarray(abs_sum, dtype=np.float64)
    return g * s * (1.0 + 2.0**-20) + (n + 1) * TINY32


def may_overflow32(abs_sum: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Where a float32 dot product (any order) may overflow: ``abs_sum`` bounds sum |a_i b_i| + |b|
    and ``err`` its float32 error (``dot_error_bound``), so every float32 partial sum or product
    stays within abs_sum + err below FLT_MAX. Elsewhere Higham's bounds (which assume no overflow)
    do not hold and onnxruntime may return ±inf or NaN (inf - inf) whatever the exact value."""
    s = np.asarray(abs_sum, dtype=np.float64) + np.asarray(err, dtype=np.float64)
    return step_up64(s * (1.0 + 2.0**-20)) >= F32_MAX


def flushes_denormals() -> bool:
    """True if this process flushes subnormals to zero (FTZ/DAZ), which breaks the proofs here.

    Checked with numpy (this thread: DAZ makes 2^-149 * 1 = 0, FTZ makes 2^-126 * 0.5 = 0) and with
    torch on a vector long enough for its vectorised (possibly multi-threaded) kernels, which the
    ℓ∞-distance bounds use."""
    tiny = np.array([TINY32], dtype=np.float32)
    one = np.array([1.0], dtype=np.float32)
    prod = tiny * one
    half = np.array([2.0**-126], dtype=np.float32) * np.array([0.5], dtype=np.float32)
    if prod[0] == 0.0 or half[0] == 0.0:
        return True
    import torch

    a = torch.full((1 << 16,), 1.5 * 2.0**-126, dtype=torch.float32)
    d = a - torch.full((1 << 16,), 2.0**-126, dtype=torch.float32)  # = 2^-127, subnormal
    t = torch.full((1 << 16,), TINY32, dtype=torch.float32) * 1.0
    return bool((d == 0).any() or (t == 0).any())


def require_ieee_subnormals() -> None:
    """Raise ModelError when FTZ/DAZ is active: outward-rounding proofs assume gradual underflow."""
    if flushes_denormals():
        raise ModelError(
            "this process flushes subnormal floats to zero (FTZ/DAZ, e.g. a library built with "
            "-ffast-math was loaded); sound bounds are impossible, refusing to certify"
        )
