"""Directed rounding helpers, checked against exact rationals on edge cases and random values."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import ModelError
from verify.bounds.rounding import (
    TINY32,
    U32,
    down,
    flushes_denormals,
    gamma,
    require_ieee_subnormals,
    step_down,
    step_up,
    up,
)

F32_MAX = float(np.finfo(np.float32).max)
EDGE = [
    0.0, -0.0, TINY32, -TINY32, TINY32 / 2, -TINY32 / 2, TINY32 * 1.5, 2.0**-126, 2.0**-126 * (1 - 2**-30),
    1.0, -1.0, 1.0 + 2.0**-30, 1.0 - 2.0**-30, 0.1, -0.1, 1e-300, -1e-300, F32_MAX, -F32_MAX,
    F32_MAX * (1 + 2.0**-30), -F32_MAX * (1 + 2.0**-30), 1e300, -1e300, math.inf, -math.inf,
    float(np.float32(3.3)), 2.0**100 + 2.0**60,
]


def _check(x: float, d: np.float32, u: np.float32) -> None:
    fx = Fraction(x) if math.isfinite(x) else None
    for v, side in ((d, "down"), (u, "up")):
        assert v.dtype == np.float32
    if fx is None:
        assert float(d) == x and float(u) == x
        return
    if math.isfinite(float(d)):
        assert Fraction(float(d)) <= fx
    else:
        assert float(d) == -math.inf
    if math.isfinite(float(u)):
        assert Fraction(float(u)) >= fx
    else:
        assert float(u) == math.inf
    # tight: at most one float32 apart, and equal when x is a float32
    assert float(step_up(d)) >= float(u) or float(d) == float(u)
    with np.errstate(over="ignore"):
        representable = float(np.float32(x)) == x
    if representable:
        assert float(d) == x and float(u) == x


@pytest.mark.parametrize("x", EDGE)
def test_down_up_edge_cases(x):
    d = down(np.array([x]))[0]
    u = up(np.array([x]))[0]
    _check(x, d, u)


def test_down_up_scalars_and_arrays_keep_shape():
    a = np.array(EDGE, dtype=np.float64).reshape(3, 9)
    assert down(a).shape == (3, 9) and up(a).shape == (3, 9)
    assert down(0.1).dtype == np.float32 and float(down(0.1)) < 0.1 < float(up(0.1))


def test_nan_refused():
    with pytest.raises(ModelError):
        down(np.array([1.0, np.nan]))
    with pytest.raises(ModelError):
        step_up(np.array([np.nan], np.float32))


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, width=64))
def test_down_up_random_doubles(x):
    _check(x, down(np.array([x]))[0], up(np.array([x]))[0])


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, width=32), st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_step_encloses_one_rounded_float32_op(a, b):
    a32, b32 = np.float32(a), np.float32(b)
    with np.errstate(over="ignore"):
        for exact, got in ((Fraction(a) + Fraction(b), a32 + b32), (Fraction(a) * Fraction(b), a32 * b32)):
            lo, hi = step_down(np.array([got]))[0], step_up(np.array([got]))[0]
            if math.isfinite(float(lo)):
                assert Fraction(float(lo)) <= exact
            if math.isfinite(float(hi)):
                assert Fraction(float(hi)) >= exact


def test_step_edges():
    assert float(step_down(np.float32(0.0))) == -TINY32
    assert float(step_up(np.float32(-0.0))) == TINY32
    assert float(step_up(np.float32(np.inf))) == math.inf
    assert float(step_down(np.float32(-np.inf))) == -math.inf
    assert float(step_up(np.float32(F32_MAX))) == math.inf


def test_gamma_is_an_upper_bound():
    for n in (1, 2, 10, 784, 10**6):
        exact = Fraction(n) * Fraction(U32) / (1 - Fraction(n) * Fraction(U32))
        assert Fraction(gamma(n, U32)) >= exact
        assert gamma(n, U32) <= float(exact) * (1 + 1e-15)
    assert gamma(2**24, U32) == math.inf


def test_process_keeps_subnormals():
    assert not flushes_denormals()
    require_ieee_subnormals()


def test_flush_to_zero_is_detected_and_refused():
    torch = pytest.importorskip("torch")
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot switch FTZ/DAZ on")
    try:
        assert flushes_denormals()
        with pytest.raises(ModelError, match="subnormal"):
            require_ieee_subnormals()
    finally:
        torch.set_flush_denormal(False)
    assert not flushes_denormals()
