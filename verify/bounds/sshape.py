"""Linear relaxations of the S-shaped activations Sigmoid and Tanh (CROWN's tangent/chord bounds).

f is increasing, convex on (−∞, 0] and concave on [0, ∞), with f(−z) = c − f(z) (sigmoid c = 1,
tanh c = 0). On an input box [l, u] each coordinate gets two lines ``kl z + ql ≤ f(z) ≤ ku z + qu``.

Slopes (a heuristic: soundness never depends on them; CROWN, Zhang et al. 2018): the upper line is
the chord of [l, u] when f is convex there (u ≤ 0), the tangent at the midpoint when it is concave
(l ≥ 0), and in the mixed case the tangent at the d ∈ [0, u] whose tangent passes through (l, f(l))
(found by bisection) when such a d exists, else the chord. The lower line is the upper line of the
reflected box [−u, −l] (f(z) = c − f(−z)).

Intercepts (the soundness argument, for ANY float slope k): qu ≥ max_{z∈[l,u]} f(z) − k z.
g(z) = f(z) − k z is convex on [l, min(u, 0)] (max at an end) and concave on [max(l, 0), u], where
g(z) ≤ g(d) + (f'(d) − k)(z − d) for any d of that piece (the tangent of a concave function lies
above it), bounded over the corners f'(d) ∈ [k−, k+], z − d ∈ [a − d, u − d]; d = the point with
f'(d) = k (estimated), clamped. Every term is an enclosure rounded outward (linear.up/down):

* f at a point: float64 torch.sigmoid / torch.tanh (not correctly rounded) widened by FN_REL·|f̃| +
  FN_ABS — ASSUMPTION: their error is below that (libm/Sleef document ≤ 1–2 ulp = 2^-52 relative;
  FN_REL = 2^-40 is 2^12 times more; FN_ABS = 2^-1000 covers underflow and exp overflow in
  1/(1 + e^-x), where the true value is below 2^-1022); tested against 300-bit mpmath values in
  tests/test_relax_nonlinear_ops.py. Enclosures are clipped to f's range ((0, 1) or (−1, 1));
* f'(d) for d ≥ 0 from the enclosure [fl, fu] of f(d): s(1 − s) (sigmoid) and 1 − t² (tanh) are
  decreasing there, so f'(d) ∈ [h(fu), h(max(fl, f(0)))], each product/difference rounded outward.

onnxruntime (``ctx.ort``): its float32 Sigmoid/Tanh is within ``libm_error`` of the exact value
(the error model of verify/ops/_elementwise.py that the ops' intervals use), charged as
Σ|A|·libm_error(mag(out)). Coordinates with a non-finite bound (±inf input, NaN line) fall back to
the constants of the output box (which holds both the exact and onnxruntime's values: no charge).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from verify.bounds.linear import Ctx, Relaxed, TBox, add_down, dot_lo, dot_up, down, rescaled_err, up
from verify.ops._elementwise import libm_error

FN_REL = 2.0**-40  # assumed relative error of float64 torch.sigmoid / torch.tanh (module docstring)
FN_ABS = 2.0**-1000
BISECT = 40  # bisection steps of the mixed-case tangent point (a heuristic: any point is sound)


@dataclass(frozen=True)
class SShape:
    """An S-shaped function: float64 evaluation, range (lo, hi), f(−z) = c − f(z), f'(0) = top,
    and, on z ≥ 0 where they are decreasing in f, h(v) = f' as a function of the value v."""

    f64: Callable[[torch.Tensor], torch.Tensor]
    lo: float
    hi: float
    c: float
    top: float
    h_down: Callable[[torch.Tensor], torch.Tensor]  # lower bound of h(v) (v an exact float)
    h_up: Callable[[torch.Tensor], torch.Tensor]  # upper bound of h(v)
    inv: Callable[[torch.Tensor], torch.Tensor]  # estimate of the d >= 0 with f'(d) = k, k in (0, top)
    f0: float  # f(0)


def _sig_inv(k):
    s = (1.0 + torch.sqrt((1.0 - 4.0 * k).clamp(min=0.0))) / 2.0
    return torch.log(s) - torch.log1p(-s)


SIGMOID = SShape(torch.sigmoid, 0.0, 1.0, 1.0, 0.25,
                 lambda v: down(v * down(1.0 - v)), lambda v: up(v * up(1.0 - v)), _sig_inv, 0.5)
TANH = SShape(torch.tanh, -1.0, 1.0, 0.0, 1.0,
              lambda v: down(1.0 - up(v * v)), lambda v: up(1.0 - down(v * v)),
              lambda k: torch.atanh(torch.sqrt((1.0 - k).clamp(min=0.0))), 0.0)


def enclose(sh: SShape, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[fl, fu] ∋ f(x) (module docstring: the float64 value widened by FN_REL·|f̃| + FN_ABS)."""
    v = sh.f64(x)
    e = up(up(FN_REL * v.abs()) + FN_ABS)
    return down(v - e).clamp(min=sh.lo), up(v + e).clamp(max=sh.hi)


def _deriv_est(sh: SShape, x: torch.Tensor) -> torch.Tensor:
    v = sh.f64(x.abs())
    return sh.h_down(v)  # a float estimate of f'(x) (f' is even)


def _g_up(sh: SShape, k: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """≥ f(x) − k x."""
    return up(enclose(sh, x)[1] - down(k * x))


def upper_intercept(sh: SShape, k: torch.Tensor, l: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """qu ≥ max over z in [l, u] of f(z) − k z, for any slope k (module docstring)."""
    zero = torch.zeros_like(l)
    b = torch.minimum(u, zero)
    q1 = torch.maximum(_g_up(sh, k, l), _g_up(sh, k, b))  # convex piece [l, min(u, 0)]
    a = torch.maximum(l, zero)
    d = torch.where(k >= sh.top, a, torch.where(k <= 0, u, sh.inv(k.clamp(1e-300, sh.top))))
    d = torch.minimum(torch.maximum(torch.nan_to_num(d, nan=0.0), a), u)
    fl, fu = enclose(sh, d)
    dk_lo, dk_hi = down(sh.h_down(fu) - k), up(sh.h_up(torch.maximum(fl, torch.full_like(fl, sh.f0))) - k)
    za, zu = down(a - d), up(u - d)  # z − d over the concave piece: za <= 0 <= zu
    corner = torch.maximum(torch.maximum(up(dk_lo * za), up(dk_hi * za)), torch.maximum(up(dk_lo * zu), up(dk_hi * zu)))
    q2 = up(_g_up(sh, k, d) + corner)  # concave piece [max(l, 0), u]
    return torch.where(l < 0, torch.where(u > 0, torch.maximum(q1, q2), q1), q2)


def upper_slope(sh: SShape, l: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """CROWN's upper slope (module docstring); only a heuristic."""
    fl_, fu_ = sh.f64(l), sh.f64(u)
    w = u - l
    chord = torch.where(w > 0, (fu_ - fl_) / torch.where(w > 0, w, 1.0), _deriv_est(sh, l))
    tangent_mid = _deriv_est(sh, (l + u) / 2)

    def phi(d, l_, f_l):  # >= 0 iff the tangent at d passes above (l, f(l))
        return sh.f64(d) + _deriv_est(sh, d) * (l_ - d) - f_l

    mixed = (l < 0) & (u > 0)
    mixed[mixed.clone()] = phi(u[mixed], l[mixed], fl_[mixed]) >= 0
    lm, lo_b, hi_b = l[mixed], torch.zeros_like(u[mixed]), u[mixed]  # bisect the mixed ones only
    for _ in range(BISECT if lm.numel() else 0):
        mid = (lo_b + hi_b) / 2
        above = phi(mid, lm, fl_[mixed]) >= 0
        hi_b, lo_b = torch.where(above, mid, hi_b), torch.where(above, lo_b, mid)
    k = torch.where(u <= 0, chord, torch.where(l >= 0, tangent_mid, chord))
    k[mixed] = _deriv_est(sh, hi_b)
    return k


def lines(sh: SShape, l: torch.Tensor, u: torch.Tensor):
    """(kl, ql, ku, qu): kl z + ql <= f(z) <= ku z + qu on [l, u] (finite l, u)."""
    ku = upper_slope(sh, l, u)
    qu = upper_intercept(sh, ku, l, u)
    kl = upper_slope(sh, -u, -l)  # f(z) = c − f(−z) >= c − (kl (−z) + q') = kl z + (c − q')
    ql = down(sh.c - upper_intercept(sh, kl, -u, -l))
    return kl, ql, ku, qu


def sshape_relax(sh: SShape, a: torch.Tensor, z: TBox, out: TBox, ctx: Ctx) -> Relaxed:
    """Lower bound of A·f(z) over the box: A >= 0 takes the lower line, A < 0 the upper one; the
    float64 products A·k are charged (linear.rescaled_err), and under ``ctx.ort`` onnxruntime's
    float32 error; coordinates without finite lines use the output box (module docstring)."""
    ok = torch.isfinite(z.lo) & torch.isfinite(z.hi)
    l, u = torch.where(ok, z.lo, 0.0), torch.where(ok, z.hi, 0.0)
    kl, ql, ku, qu = lines(sh, l, u)
    ok &= torch.isfinite(kl) & torch.isfinite(ql) & torch.isfinite(ku) & torch.isfinite(qu)
    kl, ku = torch.where(ok, kl, 0.0), torch.where(ok, ku, 0.0)
    ql, qu = torch.where(ok, ql, out.lo), torch.where(ok, qu, out.hi)
    pos, neg = a.clamp(min=0), a.clamp(max=0)
    a_in = pos * kl.unsqueeze(1) + neg * ku.unsqueeze(1)  # disjoint supports: the sum is exact
    bias = add_down(dot_lo(pos, ql), dot_lo(neg, qu), -rescaled_err(a_in, torch.where(ok, z.mag, 0.0)))
    if ctx.ort:
        err = torch.where(ok, up(up(libm_error(out.mag)) * (1.0 + 2.0**-50)), 0.0)
        bias = add_down(bias, -dot_up(a.abs(), err))
    return Relaxed({0: a_in}, bias)
