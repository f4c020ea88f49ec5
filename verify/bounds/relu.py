"""The relaxation shared by Relu and LeakyRelu: f(z) = z (z >= 0), neg * z (z < 0), 0 <= neg <= 1."""

from __future__ import annotations

import torch

from verify.bounds.linear import Ctx, Relaxed, TBox, add_down, dot_lo, down, ort_rounding, rescaled_err, up


def relu_like_relax(op, a: torch.Tensor, z: TBox, out: TBox, ctx: Ctx, neg: float) -> Relaxed:
    """Lower bound of A·f(z) over z in [l, u] (f convex and piecewise linear, kink at 0):

    * stable (l >= 0 or u <= 0): f is linear there (slope 1 or ``neg``);
    * unstable, A >= 0: f(z) >= lam z for any lam in [neg, 1] (``ctx.slopes[op.name]`` in [0, 1]
      mapped onto [neg, 1], else the adaptive choice 1 if u > -l else neg);
    * unstable, A < 0: f(z) <= neg l + s (z - l) with s = up(up(u - neg l) / down(u - l)) >= the
      chord slope (the line passes through (l, f(l)) and lies above (u, f(u))).

    The coefficients A_in = fl(A * slope) differ from the exact products by <= u |A_in|; the claim
    is made with A_in, the difference times |z - l| <= 2 mag(z) is charged. onnxruntime: Relu is
    exact in float32; LeakyRelu rounds neg * z once (charged when ``ctx.ort``)."""
    l, u = z.lo, z.hi
    act, ina = l >= 0, u <= 0
    uns = ~(act | ina)
    one = torch.ones_like(l)
    sl = ctx.slopes.get(op.name)
    if sl is None:
        lam = torch.where(u > -l, one, one * neg)
    else:
        lam = torch.clamp(neg + (1.0 - neg) * sl.clamp(0.0, 1.0), min=neg, max=1.0)
    lam = torch.where(act, one, torch.where(ina, one * neg, lam))
    den = torch.where(uns, down(u - l), one)
    s = torch.where(uns, up(up(u - neg * l) / den), torch.where(act, one, one * neg))
    pos, ng = a.clamp(min=0), a.clamp(max=0)
    a_up = ng * s.unsqueeze(1)
    a_in = pos * lam.unsqueeze(1) + a_up  # disjoint supports: the sum is exact
    zero = torch.zeros_like(l)  # masks on the [N, *s] vectors, not on A: a·0 adds exact zeros
    bias = add_down(-rescaled_err(a_in, z.mag, 2.0), dot_lo(a_up, torch.where(uns, -l, zero)))
    if neg != 0.0:
        bias = add_down(bias, dot_lo(ng, torch.where(uns, neg * l, zero)), ort_rounding(a, out.mag, ctx))
    return Relaxed({0: a_in}, bias)
