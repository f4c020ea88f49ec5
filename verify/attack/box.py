"""The float32 box that is EXACTLY inside the ℓ∞ ball of radius ε and the input domain.

``linf_box(x, eps, domain)`` returns float32 arrays lo ≤ hi with, for every element, in exact
(float64-checked) arithmetic: x − ε ≤ lo, hi ≤ x + ε, domain_lo ≤ lo, hi ≤ domain_hi (whenever
x itself lies in the domain). Any float32 point clamped into [lo, hi] therefore satisfies
‖x′ − x‖∞ ≤ ε exactly and lies in the domain — no tolerance. Each bound is the float32 value
nearest to the real bound from the inside (float64 holds x ± ε exactly enough for the check:
x and ε are float32/float64 values; the comparisons below are exact for float32 candidates).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

__all__ = ["linf_box", "linf_distance", "inside_box", "in_domain", "within_eps"]


def _inside_down(target: np.ndarray) -> np.ndarray:
    """Largest float32 ≤ target (target float64)."""
    c = target.astype(np.float32)
    over = c.astype(np.float64) > target
    c[over] = np.nextafter(c[over], np.float32(-np.inf))
    return c


def _inside_up(target: np.ndarray) -> np.ndarray:
    """Smallest float32 ≥ target (target float64)."""
    c = target.astype(np.float32)
    under = c.astype(np.float64) < target
    c[under] = np.nextafter(c[under], np.float32(np.inf))
    return c


def _exact_ok(x32: np.ndarray, c32: np.ndarray, eps: float) -> np.ndarray:
    """|c − x| ≤ ε exactly: float32 − float32 is exact in float64 when exponents are close; fall back
    to Fractions for the (rare) elements where the float64 difference is inexact or on the edge."""
    d = np.abs(c32.astype(np.float64) - x32.astype(np.float64))
    ok = d <= eps
    # float64 subtraction of two float32 values is exact unless their exponents differ by > 29;
    # re-check with rationals wherever the result sits within 1e-12 relative of ε.
    edge = np.abs(d - eps) <= 1e-12 * max(1.0, abs(eps))
    for i in np.flatnonzero(edge):
        ok.flat[i] = abs(Fraction(float(c32.flat[i])) - Fraction(float(x32.flat[i]))) <= Fraction(eps)
    return ok


def linf_box(x: np.ndarray, eps: float, domain: tuple[float, float] = (0.0, 1.0)):
    """(lo, hi) float32, exactly inside [x − ε, x + ε] ∩ [domain]; see the module docstring."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    x64 = x.astype(np.float64)
    eps = float(eps)
    lo = _inside_up(np.maximum(x64 - eps, domain[0]))
    hi = _inside_down(np.minimum(x64 + eps, domain[1]))
    # guard the rare inexact float64 cases: step inwards until the exact check holds
    for bound, direction in ((lo, np.inf), (hi, -np.inf)):
        for _ in range(4):
            bad = ~_exact_ok(x, bound, eps)
            if not bad.any():
                break
            bound[bad] = np.nextafter(bound[bad], np.float32(direction))
    lo = np.minimum(lo, x)  # never exclude x itself (x in the domain keeps lo ≤ x ≤ hi)
    hi = np.maximum(hi, x)
    return lo, hi


def linf_distance(x: np.ndarray, x_adv: np.ndarray) -> float:
    """max |x_adv − x| over all elements, computed in float64 on the float32 values."""
    if x.size == 0:
        return 0.0
    return float(np.max(np.abs(np.asarray(x_adv, np.float32).astype(np.float64)
                               - np.asarray(x, np.float32).astype(np.float64))))


def in_domain(x: np.ndarray, domain: tuple[float, float]) -> np.ndarray:
    """Per row of ``x`` (float32 [N, ...]): every element finite and domain_lo ≤ x ≤ domain_hi,
    compared EXACTLY (the float32 values widened to float64 against the float64 bounds; comparing
    in float32 would round a bound such as 0.9 to 0.89999998 first)."""
    x64 = np.asarray(x, np.float32).astype(np.float64).reshape(len(x), -1)
    lo, hi = float(domain[0]), float(domain[1])
    return np.isfinite(x64).all(axis=1) & (x64 >= lo).all(axis=1) & (x64 <= hi).all(axis=1)


def within_eps(x: np.ndarray, x_adv: np.ndarray, eps: float) -> bool:
    """‖x_adv − x‖∞ ≤ ε exactly (float32 arrays of one shape)."""
    return bool(np.all(_exact_ok(np.asarray(x, np.float32), np.asarray(x_adv, np.float32), float(eps))))


def inside_box(x: np.ndarray, x_adv: np.ndarray, eps: float, domain: tuple[float, float]) -> bool:
    """True iff x_adv is finite, domain_lo ≤ x_adv ≤ domain_hi elementwise and ‖x_adv − x‖∞ ≤ ε,
    all exactly: THE test of "inside the ball ∩ domain" (attack, check, certify's input check)."""
    x = np.asarray(x, np.float32)
    xa = np.asarray(x_adv, np.float32)
    if xa.shape != x.shape or not in_domain(xa[None], domain)[0]:
        return False
    return within_eps(x, xa, eps)
