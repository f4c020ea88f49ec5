"""Exact float32 kernels of the ℓ∞-distance: forward and the interval (lower/upper) bounds.

Guarantee (FACTS.md): every term ``|x_d - w_d|`` is one correctly rounded float32 subtraction,
abs and max are exact and rounding is monotone, so the float32 results below equal
``RN(exact value)`` for the forward, the lower bound ``L* = max_d max(l_d - w_d, w_d - u_d, 0)``
and the upper bound ``U* = max_d max(|u_d - w_d|, |l_d - w_d|)``. Callers step outward once.
Chunked over rows of W so no N×M×D temporary exceeds ~``_CHUNK`` elements.
"""

from __future__ import annotations

import numpy as np
import torch

_CHUNK = 1 << 22


def _rows_per_chunk(n: int, d: int) -> int:
    return max(1, _CHUNK // max(1, n * d))


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.require(a, np.float32, ["C", "W"]))


def linf_forward(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``RN(max_d |x[n,d] - w[m,d]|)`` as float32 [N, M] (0 when D = 0)."""
    n, d = x.shape
    m = w.shape[0]
    out = np.zeros((n, m), np.float32)
    if d == 0 or n == 0 or m == 0:
        return out
    xt, wt = _t(x), _t(w)
    step = _rows_per_chunk(n, d)
    with torch.no_grad():
        for s in range(0, m, step):
            diff = xt[:, None, :] - wt[None, s : s + step, :]
            out[:, s : s + step] = diff.abs_().amax(-1).numpy()
    return out


def linf_lower(lo: np.ndarray, hi: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``RN(max(0, max_d max(lo_d - w_d, w_d - hi_d)))`` as float32 [N, M]."""
    n, d = lo.shape
    m = w.shape[0]
    out = np.zeros((n, m), np.float32)
    if d == 0 or n == 0 or m == 0:
        return out
    lt, ht, wt = _t(lo), _t(hi), _t(w)
    step = _rows_per_chunk(n, d)
    with torch.no_grad():
        for s in range(0, m, step):
            ws = wt[None, s : s + step, :]
            a = (lt[:, None, :] - ws).amax(-1)
            b = (ws - ht[:, None, :]).amax(-1)
            out[:, s : s + step] = torch.clamp_min(torch.maximum(a, b), 0.0).numpy()
    return out


def linf_upper(lo: np.ndarray, hi: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``RN(max_d max(|hi_d - w_d|, |lo_d - w_d|))`` as float32 [N, M]."""
    return np.maximum(linf_forward(lo, w), linf_forward(hi, w))
