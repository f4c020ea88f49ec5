"""ℓ∞-distance in torch for the attack: exact forward, exact or smoothed gradient.

``linf_dist(x, w, p_grad)`` returns y[b, m] = max_d |x[b, d] − w[m, d]| computed in float32 exactly
as onnxruntime does (one correctly rounded subtraction per term, abs and max exact), chunked so no
B×M×D tensor larger than ~16 M elements exists. Only the GRADIENT depends on ``p_grad``:
- ``p_grad = inf``: the subgradient at the first maximal coordinate (one-hot, ±1);
- finite ``p_grad``: the gradient of the ℓp norm, max-normalised (r = |d| / max|d|,
  ∂‖d‖_p/∂d_i = sign(d_i)·r_i^{p−1}·(Σ r^p)^{1/p − 1}), a smoothed surrogate that spreads the
  gradient over near-maximal coordinates (plain PGD starves on the one-hot gradient).
The gradient w.r.t. ``w`` is not computed (the attack never needs it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["linf_dist", "linf_dist_conv", "exact_linf_dist"]

_CHUNK_ELEMS = 1 << 18  # ~1 MB per [b, M, D] chunk: cache-resident passes (3x faster than 64 MB)


def _row_chunk(m: int, d: int) -> int:
    return max(1, _CHUNK_ELEMS // max(1, m * d))


def _broadcast_linf_dist(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    step = _row_chunk(w.shape[0], w.shape[1])
    return torch.cat([(xc[:, None, :] - w[None]).abs().amax(-1) for xc in torch.split(x, step)])


def exact_linf_dist(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """y[b, m] = max_d |x[b, d] − w[m, d]| in x's dtype, bit-exact (no autograd).

    ``torch.cdist(p=inf)`` computes exactly this (one rounded subtraction per term, abs and max
    exact; equal bit for bit to the broadcast form, tested with ties and both dtypes) without the
    [b, M, D] temporaries (measured, 1 thread, [64, D] × [256, D]: 1.4× (D = 256) to 3.5× (D = 64)
    faster than that form, 5.7–6.3× faster than max with indices). Non-finite inputs take the
    broadcast form (NaN propagates). The attack's verdicts never rest on this: every witness is
    replayed in onnxruntime."""
    if x.shape[0] == 0 or w.shape[0] == 0:
        return x.new_zeros((x.shape[0], w.shape[0]))
    if x.shape[1] == 0 or not (torch.isfinite(x).all() and torch.isfinite(w).all()):
        return _broadcast_linf_dist(x, w)
    return torch.cdist(x, w, p=math.inf)


def _dist_and_argmax(x: torch.Tensor, w: torch.Tensor):
    """(y, idx): y exact as in :func:`exact_linf_dist`, idx[b, m] = first maximal coordinate."""
    step = _row_chunk(w.shape[0], w.shape[1])
    ys, idxs = [], []
    for xc in torch.split(x, step):
        v, i = (xc[:, None, :] - w[None]).abs().max(-1)
        ys.append(v)
        idxs.append(i)
    return torch.cat(ys), torch.cat(idxs)


def _int_pow(q: torch.Tensor, k: int) -> torch.Tensor:
    """q**k for an integer k ≥ 1 by repeated squaring (exact sign for odd k; no exp/log).

    Two new tensors at most (``base`` and ``result``), the rest in place: these chunks are ~1 MB,
    and every fresh one costs page faults."""
    result, base = None, q
    while True:
        if k & 1:
            result = base.clone() if result is None else result.mul_(base)
        k >>= 1
        if not k:
            return result
        base = base * base if base is q else base.mul_(base)


def _lp_weights(d: torch.Tensor, m: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(t, s): t = sign(d)·(|d|/m)^{p−1}, s = Σ_D (|d|/m)^p, with m = max|d| ([b, m, 1]).

    ``d`` is a scratch tensor: it is overwritten."""
    q = d.div_(m)
    if float(p).is_integer() and 2 <= p <= 64:
        k = int(p) - 1
        t = _int_pow(q, k)
        if k % 2 == 0:
            t.copysign_(q)  # |q|^k ≥ 0 takes q's sign (a zero term stays zero)
        return t, torch.linalg.vecdot(t, q).unsqueeze(-1)
    a = q.abs()
    t = a.clamp_min_(1e-30).log_().mul_(p - 1.0).exp_().mul_(torch.sign(q))
    return t, torch.linalg.vecdot(t, q).unsqueeze(-1)


class _LinfDistFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, p_grad):
        ctx.p_grad = p_grad
        with torch.no_grad():
            if math.isinf(p_grad):
                y, idx = _dist_and_argmax(x, w)
            else:  # the surrogate needs no argmax: the faster exact forward
                y, idx = exact_linf_dist(x, w), None
            ctx.save_for_backward(x, w, idx, y)
            return y

    @staticmethod
    def backward(ctx, g):
        p = ctx.p_grad
        x, w, idx, y = ctx.saved_tensors
        if math.isinf(p):
            # subgradient at the argmax: d y[b,m] / d x[b, idx] = sign(x[b, idx] − w[m, idx])
            xs = torch.gather(x, 1, idx)                       # [B, M]
            ws = w[torch.arange(w.shape[0])[None, :], idx]      # ws[b, m] = w[m, idx[b, m]]
            coef = g * torch.sign(xs - ws)
            return torch.zeros_like(x).scatter_add_(1, idx, coef), None, None
        # ℓp surrogate: ∂‖d‖_p/∂d_i = sign(d_i)·r_i^{p−1}·(Σ r^p)^{1/p − 1}, r = |d| / max|d|
        step = _row_chunk(w.shape[0], w.shape[1])
        grads = []
        for xc, gc, yc in zip(torch.split(x, step), torch.split(g, step), torch.split(y, step)):
            d = xc[:, None, :] - w[None]  # [b, m, D]
            m = yc[:, :, None].clamp_min(torch.finfo(d.dtype).tiny)
            t, s = _lp_weights(d, m, p)
            coef = gc * s[..., 0].pow(1.0 / p - 1.0)
            grads.append(torch.einsum("bm,bmd->bd", coef, t))
        return torch.cat(grads), None, None


def linf_dist(x: torch.Tensor, w: torch.Tensor, p_grad: float = math.inf) -> torch.Tensor:
    """Exact ℓ∞ distances [B, M] of rows of x [B, D] to rows of w [M, D]; gradient per ``p_grad``."""
    if not x.requires_grad:
        return exact_linf_dist(x, w)
    return _LinfDistFn.apply(x, w, float(p_grad))


def linf_dist_conv(
    x: torch.Tensor,
    w: torch.Tensor,
    *,
    strides=(1, 1),
    pads=(0, 0, 0, 0),
    dilations=(1, 1),
    p_grad: float = math.inf,
) -> torch.Tensor:
    """ONNX ``linf::LinfDistConv`` without bias: x [N,C,H,W], w [M,C,kH,kW] -> [N,M,H',W'].

    Padding uses the value 0 (ONNX pads = [top, left, bottom, right]); exact forward as above.
    """
    n = x.shape[0]
    mo, _, kh, kw = w.shape
    t, l, b, r = pads
    if any(pads):
        x = F.pad(x, (l, r, t, b), value=0.0)
    cols = F.unfold(x, (kh, kw), dilation=tuple(dilations), stride=tuple(strides))  # [N, CKK, L]
    hp, wp = x.shape[2], x.shape[3]
    ho = (hp - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    wo = (wp - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    flat = cols.transpose(1, 2).reshape(-1, cols.shape[1])
    y = linf_dist(flat, w.reshape(mo, -1), p_grad)  # [N*L, M]
    return y.reshape(n, ho * wo, mo).transpose(1, 2).reshape(n, mo, ho, wo)
