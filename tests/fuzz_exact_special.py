"""Exact (or 600-bit) values of the special functions the exact-rational reference of
tests/fuzz_exact.py needs: Sigmoid and Tanh in mpmath at 600 bits, and square roots that are
rational (BatchNormalization with var + eps a rational square)."""

from __future__ import annotations

import math
from fractions import Fraction


def near_value(name: str, v: Fraction) -> Fraction:
    """Sigmoid or Tanh (``name``) at the rational ``v`` in 600-bit mpmath, as an exact Fraction of
    that binary value (relative error < 2^-590)."""
    import mpmath

    with mpmath.workprec(600):
        t = mpmath.mpf(v.numerator) / v.denominator
        r = mpmath.tanh(t) if name == "Tanh" else 1 / (1 + mpmath.exp(-t))
        m, e = r.man_exp  # |r| = m 2^e
        return (-1 if r < 0 else 1) * Fraction(int(m)) * Fraction(2) ** int(e)


def exact_sqrt(q: Fraction) -> Fraction | None:
    """sqrt(q) when it is rational (numerator and denominator perfect squares), else None."""
    if q < 0:
        return None
    rn, rd = math.isqrt(q.numerator), math.isqrt(q.denominator)
    return Fraction(rn, rd) if rn * rn == q.numerator and rd * rd == q.denominator else None
