"""Sound margin bounds: input boxes, logit-box margins, the merged last affine layer, radii.

Every function here returns a value that is provably on the safe side, in float64:

- :func:`input_box`: float32 ``[lo, hi]`` containing every real x' with ‖x' − x‖∞ ≤ ε inside the
  domain (outward rounded, then intersected with the outward-rounded domain).
- :func:`box_margin`: a lower bound of ``z_y − max_{j≠y} z_j`` for every z in the logit box.
- :func:`merged_margin`: paper Eqn 21 — for a last affine layer z = W h + b and a box of h, a lower
  bound of ``min_{j≠y} (w_y − w_j)·h + (b_y − b_j)`` over the box, valid for the exact real z AND
  for the float32 z that onnxruntime computes from any float32 h in the box (its Gemm rounding
  error, γ_{D+1}·(Σ|W||h| + |b|) per logit, is subtracted too; ``ort=False``: the real z only).
- :func:`lipschitz_radius`, :func:`extended_radius`, :func:`lipschitz_margin`: directed-rounded
  forms of m/(2L), ε + m_ε/(2L) and m − 2Lε (the margin is 2L-Lipschitz when the logits are
  L-Lipschitz in ℓ∞ → ℓ∞).

NaN in a bound means "no information" and is kept as NaN (the caller reports ``unknown``).
"""

from __future__ import annotations

import math

import numpy as np

from verify.bounds import rounding

__all__ = [
    "input_box",
    "box_margin",
    "merged_margin",
    "lipschitz_radius",
    "extended_radius",
    "lipschitz_margin",
    "chain_margins",
    "reported_radius",
    "pair_lipschitz",
]


def down64(v: np.ndarray) -> np.ndarray:
    """One float64 step down: a lower bound of t when v = RN64(t)."""
    return np.nextafter(np.asarray(v, dtype=np.float64), -np.inf)


def up64(v: np.ndarray) -> np.ndarray:
    """One float64 step up: an upper bound of t when v = RN64(t)."""
    return np.nextafter(np.asarray(v, dtype=np.float64), np.inf)


_down64, _up64 = down64, up64


def input_box(x: np.ndarray, eps, domain: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Float32 box enclosing {x' real : ‖x' − x‖∞ ≤ eps_b, domain[0] ≤ x' ≤ domain[1]} per sample.

    ``x``: float32 [B, ...]; ``eps``: scalar or [B] float64 ≥ 0. The float64 sums are rounded to
    nearest, so one float64 step outwards and a downward/upward cast to float32 make them sound.
    """
    x64 = np.asarray(x, dtype=np.float32).astype(np.float64)
    e = np.asarray(eps, dtype=np.float64).reshape((-1,) + (1,) * (x64.ndim - 1))
    lo = rounding.down(_down64(x64 - e))
    hi = rounding.up(_up64(x64 + e))
    lo = np.maximum(lo, rounding.down(np.float64(domain[0])))
    hi = np.minimum(hi, rounding.up(np.float64(domain[1])))
    # e == 0 gives exactly [x, x] (x is float32): keep degenerate boxes degenerate
    zero = np.broadcast_to(e == 0, x64.shape)
    x32 = np.asarray(x, dtype=np.float32)
    return np.where(zero, x32, lo), np.where(zero, x32, hi)


def _others_max(v: np.ndarray, y: np.ndarray) -> np.ndarray:
    w = v.copy()
    w[np.arange(len(y)), y] = -np.inf
    return w.max(axis=1)


def box_margin(lo: np.ndarray, hi: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Lower bound of min over the logit box of z_y − max_{j≠y} z_j (float64 [B]; NaN if unknown)."""
    lo64 = np.asarray(lo, dtype=np.float64).reshape(len(y), -1)
    hi64 = np.asarray(hi, dtype=np.float64).reshape(len(y), -1)
    with np.errstate(invalid="ignore"):
        m = lo64[np.arange(len(y)), y] - _others_max(hi64, y)
    bad = np.isnan(lo64).any(axis=1) | np.isnan(hi64).any(axis=1)
    return np.where(bad, np.nan, _down64(m))


def merged_margin(
    w: np.ndarray, b: np.ndarray | None, hlo: np.ndarray, hhi: np.ndarray, y: np.ndarray, ort: bool = True
) -> np.ndarray:
    """Sound lower bound of the margin through the last affine layer z = W h + b (W [K, D]).

    For each sample and j ≠ y: Σ_k min(c_k l_k, c_k u_k) + d with c = w_y − w_j, d = b_y − b_j,
    evaluated in float64 with Higham's bound γ_{2D+4} on every rounding (the difference of two
    float32 in float64 has relative error ≤ u64 and keeps its sign), minus the float32 error of
    onnxruntime's two logits when ``ort`` (guarantee float32; without it the bound is about the
    exact real z only, guarantee real). Returns float64 [B] (NaN if the box holds NaN).
    """
    w32 = np.asarray(w, dtype=np.float32)
    k, d = w32.shape
    w64 = w32.astype(np.float64)
    b64 = np.zeros(k) if b is None else np.asarray(b, dtype=np.float32).astype(np.float64).ravel()
    l64 = np.asarray(hlo, dtype=np.float64).reshape(len(y), d)
    u64 = np.asarray(hhi, dtype=np.float64).reshape(len(y), d)
    mag = np.maximum(np.abs(l64), np.abs(u64))
    with np.errstate(invalid="ignore", over="ignore"):
        # onnxruntime's float32 Gemm error per logit (any summation order, FMA or not)
        ort_abs = mag @ np.abs(w64).T + np.abs(b64)
        ort_err = rounding.dot_error_bound(d + 1, ort_abs)  # [B, K]
        # no bound (NaN) where onnxruntime's float32 logit may overflow to ±inf or NaN
        ort_err = np.where(rounding.may_overflow32(ort_abs, ort_err), np.nan, ort_err)
        if not ort:
            ort_err = np.zeros_like(ort_err)
        out = np.full(len(y), np.nan)
        g = rounding.gamma(2 * d + 4, rounding.U64) * (1.0 + 2.0**-20)
        for cls in np.unique(y):
            idx = np.nonzero(y == cls)[0]
            c = w64[cls][None, :] - w64  # [K, D]
            dd = b64[cls] - b64  # [K]
            pos, neg = np.maximum(c, 0.0), np.minimum(c, 0.0)
            val = l64[idx] @ pos.T + u64[idx] @ neg.T + dd  # [n, K]
            err = g * (mag[idx] @ np.abs(c).T + np.abs(dd)) + (2 * d + 4) * rounding.TINY64
            both = _up64(ort_err[idx] + ort_err[idx][:, [cls]])
            low = _down64(_down64(val - err) - both)
            low[:, cls] = np.inf
            out[idx] = low.min(axis=1)
    bad = np.isnan(l64).any(axis=1) | np.isnan(u64).any(axis=1)
    return np.where(bad, np.nan, out)


def _lip(lip, shape) -> tuple[np.ndarray, np.ndarray]:
    lv = np.broadcast_to(np.asarray(lip, dtype=np.float64), shape)
    return lv, (lv >= 0) & np.isfinite(lv)


def lipschitz_radius(m0: np.ndarray, lip, cap: float) -> np.ndarray:
    """Lower bound of m0/(2L), clipped to [0, cap] (0 where m0 ≤ 0 or unknown; cap where L = 0).

    ``lip``: L such that the margin is 2L-Lipschitz (scalar or per sample; inf = unknown)."""
    m0 = np.asarray(m0, dtype=np.float64)
    lv, ok = _lip(lip, m0.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = _down64(m0 / (2.0 * lv))
    r = np.where(lv == 0, np.where(m0 > 0, np.inf, 0.0), r)
    r = np.where(ok & (m0 > 0), r, 0.0)
    return np.minimum(np.maximum(np.nan_to_num(r, nan=0.0, posinf=cap), 0.0), cap)


def extended_radius(eps, m_eps: np.ndarray, lip, cap: float) -> np.ndarray:
    """Lower bound of ε + m_ε/(2L) where the box at ε is proven (m_ε > 0), else 0; clipped to cap.

    Why: any x' in the domain with ‖x' − x‖ = ε + t projects (coordinate clip towards x) to a point
    x'' of the ε-box inside the domain with ‖x' − x''‖ ≤ t, so margin(x') ≥ m_ε − 2L·t > 0 for t <
    m_ε/(2L).
    """
    e = np.broadcast_to(np.asarray(eps, dtype=np.float64), np.shape(m_eps))
    extra = lipschitz_radius(m_eps, lip, cap)
    r = np.where(np.asarray(m_eps) > 0, _down64(e + extra), 0.0)
    return np.minimum(r, cap)


RADIUS_SLACK = 2.0**-20


def reported_radius(r: np.ndarray, cap: float) -> np.ndarray:
    """The radius a record states: the proven lower bound r times (1 − 2^-20), rounded down (a
    radius ≥ ``cap``, the whole domain, is kept: ``check`` re-proves it by one IBP of the domain).

    Smaller is still proven. The slack lets ``check`` re-prove it with its own evaluation, whose
    float64 dot products may differ from the certifier's in the last bits (BLAS blocking depends
    on the batch composition and the CPU), where a radius exactly at the bound would not be."""
    r = np.asarray(r, dtype=np.float64)
    return np.where(r >= cap, r, np.maximum(_down64(r * (1.0 - RADIUS_SLACK)), 0.0))


def lipschitz_margin(m0: np.ndarray, lip, eps) -> np.ndarray:
    """Lower bound of m0 − 2Lε: the margin over the whole ε-ball by the Lipschitz argument
    (NaN where L is unknown)."""
    m0 = np.asarray(m0, dtype=np.float64)
    lv, ok = _lip(lip, m0.shape)
    with np.errstate(invalid="ignore"):
        drop = _up64(2.0 * lv * np.asarray(eps, dtype=np.float64))
        return np.where(ok, _down64(m0 - drop), np.nan)


def chain_margins(m_hat: np.ndarray, e: np.ndarray, e_ball: np.ndarray, lip, eps,
                  ort: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(m0, ball margin) of a 1-Lipschitz chain from its float32 forward (verify/bounds/fastpath.py), the
    one formula the certifier and ``check`` share (docs/SOUNDNESS.md):

    - m0 = m̂ − 2e ≤ the exact margin at x (‖ŷ(x) − f(x)‖∞ ≤ e);
    - ball = m̂ − 2e − 2e′ − 2Lε ≤ onnxruntime's float32 margin at every float32 x′ of the ε-ball
      (≥ exact margin at x′ − 2e′ ≥ exact margin at x − 2Lε − 2e′) and ≤ the exact margin there.

    Both errors are subtracted: e is the error of ŷ at x, e′ that of onnxruntime at x′ (a bound
    with max(e, e′) instead of e + e′ is unsound). All steps rounded down. ``ort=False`` (guarantee
    real): the ball margin is m0 − 2Lε, about the exact margin only (no e′)."""
    m0 = _down64(np.asarray(m_hat, dtype=np.float64) - _up64(2.0 * np.asarray(e, dtype=np.float64)))
    at_ort = _down64(m0 - _up64(2.0 * np.asarray(e_ball, dtype=np.float64))) if ort else m0
    return m0, lipschitz_margin(at_ort, lip, eps)


def pair_lipschitz(w: np.ndarray, l_h: float) -> np.ndarray:
    """[K] upward-rounded half-Lipschitz constants of the margins through a last affine layer:
    margin_y(x) = min_j (w_y − w_j)·h(x) + c is (max_j ‖w_y − w_j‖₁ · L_h)-Lipschitz when h is
    L_h-Lipschitz; returned halved (the convention of the functions above: margin is 2L-Lipschitz).

    ‖w_y − w_j‖₁ is summed in float64 (each difference of float32 has relative error ≤ u64, the sum
    ≤ γ_D) and inflated by (1 + (D + 4)·2^-52) before one step up."""
    w64 = np.asarray(w, dtype=np.float32).astype(np.float64)
    k, d = w64.shape
    if k < 2 or not math.isfinite(l_h):
        return np.full(k, np.inf if not math.isfinite(l_h) else 0.0)
    n1 = np.stack([np.abs(w64[y] - w64).sum(-1) for y in range(k)])  # [K, K]
    n1 = _up64(n1 * (1.0 + (d + 4) * 2.0**-52))
    np.fill_diagonal(n1, 0.0)
    return _up64(_up64(n1.max(axis=1) * l_h) / 2.0)
