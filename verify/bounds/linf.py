"""The ℓ∞-dist layer's relaxation: y_m = max_d |x_d − w_md| + b_m over a box [l, u] of x.

Lower (coefficient A_m ≥ 0): for ONE chosen coordinate d* and sign σ ∈ {−1, +1},
``max_d |x_d − w_md| ≥ |x_d* − w_md*| ≥ σ (x_d* − w_md*)`` for every x (no box needed). d* is the
coordinate whose guaranteed distance over the box is largest (then x_d* − w stays on one side of w
on the box and the bound is exact there); if every coordinate's interval contains its weight, the
coordinate farthest from w at the box centre. σ = sign(centre − w) (+1 on ties).
Upper (A_m < 0): with gl_d ≤ |x_d − w_md| ≤ gu_d on the box (rounded outward) and L = max_d gl_d,
when ONE coordinate d* has gu_d* > L (every other coordinate's distance stays ≤ L on the box), then
on the box ``max_d |x_d − w_md| ≤ h(x_d*) := max(|x_d* − w_md*|, L)``, h convex in x_d*, so the
chord of h over [l_d*, u_d*] bounds it from above (slope k any float, intercept q the larger of
h(l) − k l and h(u) − k u, rounded up: the line then lies above h at both ends, so on the interval).
Otherwise: the interval upper bound of y_m (the output box), a constant.

Float: σ(x − w) + b is exact in coefficients (σ = ±1); the constant −σ w + b is rounded down
(A_m ≥ 0); the chord's products A_m·k are rounded (charged, linear.rescaled_err); coefficients of
one input coordinate chosen by several m are summed in float64 (charged, linear.scatter_sum). onnxruntime: the distance is correctly rounded and the bias added in float32
(two roundings, linear.ort_rounding with mag(y) + |b|).
"""

from __future__ import annotations

import torch

from verify.bounds.linear import Ctx, Relaxed, TBox, add_down, dot_lo, down, ort_rounding, rescaled_err, scatter_sum, t64, up
from verify.bounds.rounding import U64

MAX_ELEMENTS = 4_000_000  # N·M·D above this: concretised (the interval of the output)


def linf_relax(op, a: torch.Tensor, x: TBox, out: TBox, ctx: Ctx) -> Relaxed | None:
    w = t64(op.const(1))  # [M, D]
    n, (m, d) = x.lo.shape[0], w.shape
    if n * m * d > MAX_ELEMENTS or x.lo.dim() != 2:
        return None
    l, u = x.lo[:, None, :], x.hi[:, None, :]
    gap = torch.maximum(l - w, w - u).clamp(min=0)  # guaranteed distance (ranking only)
    c = (l + u) / 2
    score = torch.where(gap.amax(-1, keepdim=True) > 0, gap, (c - w).abs())
    dstar = score.argmax(-1)  # [N, M]
    w_star = w[torch.arange(m)[None, :], dstar]  # [N, M]
    c_star = c.squeeze(1).gather(1, dstar)
    sigma = torch.where(c_star >= w_star, 1.0, -1.0)
    b = torch.zeros(m, dtype=torch.float64) if len(op.inputs) < 3 or not op.inputs[2] else t64(op.const(2)).reshape(-1)
    pos, neg = a.clamp(min=0), a.clamp(max=0)
    s = a.shape[1]
    single, d_up, k, q = _upper_chords(l, u, w)
    neg_line = torch.where(single[:, None, :], neg, 0.0)
    idx = torch.cat([dstar, d_up], -1)
    line = neg_line * k[:, None, :]  # rounded products: charged on their own magnitude
    a_in, summed = scatter_sum(n, s, d, idx, [torch.cat([pos * sigma[:, None, :], line], -1)], x.mag)
    const = down(b - sigma * w_star)  # <= the exact -σ w* + b
    bias = add_down(dot_lo(pos, const), dot_lo(neg_line, up(q + b)), dot_lo(neg - neg_line, out.hi),
                    summed, -rescaled_err(line, _at(x.mag, d_up)), ort_rounding(a, out.mag + b.abs(), ctx, 2.0))
    return Relaxed({0: a_in}, bias)


def _at(mag: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """mag [N, D] gathered at index [N, M]: the magnitude of the input coordinate each unit uses."""
    return mag.gather(1, index)


def _upper_chords(l, u, w):
    """Per (sample, unit): (single [N, M] bool, d* [N, M], slope k, intercept q) of the upper chord
    of the module docstring; ``single`` False where two coordinates may reach the max."""
    shape = (l.shape[0], *w.shape)
    lf, uf, wf = l.expand(shape), u.expand(shape), w.expand(shape)
    gu = up(torch.maximum((lf - wf).abs(), (uf - wf).abs()))  # >= the distance anywhere on the box
    gl = down(torch.maximum(lf - wf, wf - uf)).clamp(min=0)
    big = gl.amax(-1)  # L: coordinates with gu <= L never exceed it on the box
    cand = gu > big[..., None]
    single = cand.sum(-1) == 1
    d_up = cand.to(torch.int8).argmax(-1)

    def pick(t):
        return t.gather(-1, d_up[..., None]).squeeze(-1)

    lo_, hi_, ww = pick(lf), pick(uf), pick(wf)
    h_l = torch.maximum(up((lo_ - ww).abs()), big)  # >= h(l), h(u) (one rounded difference each)
    h_u = torch.maximum(up((hi_ - ww).abs()), big)
    width = hi_ - lo_
    k = torch.where(width > 0, (h_u - h_l) / torch.where(width > 0, width, 1.0), 0.0)
    kl, ku = k * lo_, k * hi_  # |exact − rounded| <= u |rounded| (1 + u): 4u covers it
    q = torch.maximum(up(up(h_l - kl) + 4 * U64 * kl.abs()), up(up(h_u - ku) + 4 * U64 * ku.abs()))
    return single, d_up, k, q
