"""The relaxation of MaxPool and GlobalMaxPool: y_j = max_{i ∈ W_j} x_i over windows W_j of input
positions (ONNX MaxPool pads with −inf, which never wins while a window holds one real position).

On a box [l, u] of x, for each output j:

* lower (A_j ≥ 0): y_j ≥ x_{i*} with i* = argmax_{i∈W_j} l_i (true for every x: no box needed);
* upper (A_j < 0): with i* = argmax_{i∈W_j} u_i and L = max_{i∈W_j, i≠i*} u_i (−inf for a
  one-element window), y_j ≤ h(x_{i*}) := max(x_{i*}, L) on the box, and h is convex, so the chord
  of h over [l_{i*}, u_{i*}] bounds it: slope k = (u_{i*} − max(l_{i*}, L)) / (u_{i*} − l_{i*}) (any
  float), intercept q = the larger of h(l) − k l and h(u) − k u, rounded up (the line then lies
  above h at both ends, so on the interval). When i* dominates (l_{i*} ≥ L) h(x) = x on the box
  and the bound is exact: k = 1, q = 0. This is the "triangle" relaxation; it is never looser
  than the constant max_i u_i (the chord stays below max(u_{i*}, L) = max_i u_i).

Float: the lower coefficients are A itself (exact); the products A·k are rounded (charged,
linear.rescaled_err); coefficients of an input position used by several windows are summed in
float64 (charged, linear.scatter_sum). Max is exact in float32 (onnxruntime): no ``ctx.ort`` charge.
A box with a non-finite bound, an all-padding window or a too large problem: None (concretised).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from verify.bounds.linear import Relaxed, TBox, add_down, dot_lo, down, rescaled_err, scatter_sum, up

MAX_ELEMENTS = 4_000_000  # N·C·K·L above this: concretised (the interval of the output)


def window_index(shape, kernel, strides, pads, dilations) -> torch.Tensor:
    """Input positions [C, K, L] (flat in the per-sample [C, H, W] layout; −1 = padding) of the K
    elements of each of the L windows of a 2-D MaxPool (pads: [top, left, bottom, right])."""
    c, hh, ww = shape
    idx = torch.arange(c * hh * ww, dtype=torch.float64).reshape(1, c, hh, ww)
    idx = F.pad(idx, (pads[1], pads[3], pads[0], pads[2]), value=-1.0)
    cols = F.unfold(idx, tuple(kernel), dilation=tuple(dilations), stride=tuple(strides))
    return cols.reshape(c, kernel[0] * kernel[1], -1).long()


def global_index(shape) -> torch.Tensor:
    """The one window per channel of GlobalMaxPool: [C, prod(spatial), 1]."""
    c, r = shape[0], math.prod(shape[1:])
    return torch.arange(c * r).reshape(c, r, 1)


def window_max_relax(a: torch.Tensor, x: TBox, idx: torch.Tensor) -> Relaxed | None:
    """One back-substitution step through y = max over the windows ``idx`` (module docstring);
    ``a`` [N, S, *out] with the output flat in [C, L] order."""
    n, s = a.shape[:2]
    c, kk, nl = idx.shape
    d = math.prod(x.lo.shape[1:])
    valid = idx >= 0
    if (n * c * kk * nl > MAX_ELEMENTS or math.prod(a.shape[2:]) != c * nl or not bool(valid.any(1).all())
            or not bool((torch.isfinite(x.lo) & torch.isfinite(x.hi)).all())):
        return None
    g = idx.clamp(min=0).reshape(-1)

    def windows(t):
        w = t.reshape(n, -1)[:, g].reshape(n, c, kk, nl)
        return torch.where(valid, w, -math.inf)

    lo, hi = windows(x.lo), windows(x.hi)
    i_lo, i_up = lo.argmax(2, keepdim=True), hi.argmax(2, keepdim=True)  # [N, C, 1, L]
    src = idx.expand(n, c, kk, nl)
    at_lo, at_up = src.gather(2, i_lo).reshape(n, -1), src.gather(2, i_up).reshape(n, -1)
    l_star, u_star = lo.gather(2, i_up).squeeze(2), hi.gather(2, i_up).squeeze(2)
    others = hi.scatter(2, i_up, -math.inf).amax(2)  # L
    dominant = l_star >= others
    h_l = torch.maximum(l_star, others)  # h(l*); h(u*) = u* (u* is the largest upper bound)
    w = u_star - l_star
    k = torch.where(w > 0, (u_star - h_l) / torch.where(w > 0, w, 1.0), 1.0)
    q = torch.maximum(up(h_l - down(k * l_star)), up(u_star - down(k * u_star)))
    k = torch.where(dominant, 1.0, k).reshape(n, 1, -1)
    q = torch.where(dominant, 0.0, q).reshape(n, -1)
    af = a.reshape(n, s, -1)
    pos, neg = af.clamp(min=0), af.clamp(max=0)
    line = neg * k  # rounded products (exact where k = 1): charged on their own magnitude
    mag = x.mag.reshape(n, -1)
    a_in, summed = scatter_sum(n, s, d, torch.cat([at_lo, at_up], -1), [torch.cat([pos, line], -1)], mag)
    bias = add_down(dot_lo(neg, q), summed, -rescaled_err(line, mag.gather(1, at_up)))
    return Relaxed({0: a_in.reshape(n, s, *x.lo.shape[1:])}, bias)
