"""The ℓp distance op y[b, n] = ‖x_b − w_n‖_p — the pure-torch reference (the oracle).

Read top to bottom:

1. `reference_lp_dist(x, w, p, chunk=None)`: two `torch.autograd.Function`s, one for p = ∞ and one
   for finite p ≥ 1. Both walk over bounded blocks of (rows of x) × (rows of w), so no B×N×D tensor
   larger than `chunk` elements (default 2**24, 64 MB in float32) ever exists, in the forward or the
   backward. Autograd keeps only x, w, y (and, for p = ∞, the argmax index [B, N]).
2. `lp_dist(x, w, p, backend=...)`: dispatch to `nets.kernels.fast_lp_dist` when it exists and takes
   the call, else to the reference.
3. `lp_dist_conv(x, w, p, ...)`: the conv form, im2col (`F.unfold`, padded value 0) + `lp_dist`.

Guarantees of the reference:
- p = ∞: the forward is exact up to one rounding per output (|x_d − w_d| is one rounded subtraction,
  abs and max are exact). Gradient: the subgradient at ONE coordinate, d* = the FIRST index where
  |x_d − w_d| is maximal (torch.max/argmax semantics): ∂y/∂x_d* = sign(x_d* − w_d*),
  ∂y/∂w_d* = −sign(x_d* − w_d*), 0 at every other coordinate. (torch.cdist gives every tied coordinate
  the full gradient, which is not a subgradient; we do not.) When y = 0 the gradient is 0. The
  backward sums in a fixed order on every device (no CUDA atomics: `index_sum`), so it is bitwise
  reproducible.
- finite p ≥ 1: y = m·(Σ_d (|d_d|/m)^p)^{1/p} with m = max_d |d_d| (no gradient through m), so nothing
  overflows or underflows harmfully for any p (tested up to p = 1e4). Gradient:
  ∂y/∂x_d = (|d_d|/y)^{p−1}·sign(d_d) (exact formula, every term in [−1, 1]); 0 when y = 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from nets.config import conv_output_size  # noqa: F401  (re-exported: nets.ops.conv_output_size)

DEFAULT_CHUNK = 1 << 24  # max elements of one B_c×N_c×D block (64 MB in float32)
BACKENDS = ("auto", "reference", "cpu", "cuda")
RELAXATIONS = ("lp", "lse")  # how a finite p relaxes the ℓ∞ distance during training


# ---------------------------------------------------------------- argument checks and blocking


def check_p(p: float) -> float:
    """Return p as a float; raise ValueError unless p ≥ 1 (math.inf allowed)."""
    p = float(p)
    if math.isnan(p) or p < 1.0:
        raise ValueError(f"p must be >= 1 or math.inf, got {p}")
    return p


def _check_pair(x: Tensor, w: Tensor) -> None:
    if x.dim() != 2 or w.dim() != 2:
        raise ValueError(f"lp_dist wants x [B, D] and w [N, D], got {tuple(x.shape)} and {tuple(w.shape)}")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"lp_dist: feature sizes differ: x has D={x.shape[1]}, w has D={w.shape[1]}")
    if not x.is_floating_point():
        raise ValueError(f"lp_dist wants floating-point tensors, got {x.dtype}")
    if x.dtype != w.dtype or x.device != w.device:
        raise ValueError(f"lp_dist: x and w differ in dtype/device ({x.dtype}/{x.device} vs {w.dtype}/{w.device})")


def _blocks(B: int, N: int, D: int, chunk: int | None) -> tuple[int, int]:
    """Block sizes (rows of x, rows of w) with rows_x·rows_w·D ≤ max(chunk, D)."""
    budget = DEFAULT_CHUNK if chunk is None else int(chunk)
    if budget < 1:
        raise ValueError(f"chunk must be a positive number of elements, got {chunk}")
    D = max(D, 1)
    nb = max(1, min(N, budget // D))
    bb = max(1, min(B, budget // (nb * D)))
    return bb, nb


def _ranges(total: int, step: int):
    for start in range(0, total, step):
        yield start, min(start + step, total)


# ---------------------------------------------------------------- p = ∞


class _LinfDist(torch.autograd.Function):
    """y = max_d |x_d − w_d| blockwise; saves x, w and the argmax index (first maximal coordinate)."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, chunk: int | None) -> Tensor:
        B, D = x.shape
        N = w.shape[0]
        y = x.new_empty(B, N)
        idx = torch.empty(B, N, dtype=torch.long, device=x.device)
        bb, nb = _blocks(B, N, D, chunk)
        if D == 0:
            y.zero_()
            idx.zero_()
        else:
            for b0, b1 in _ranges(B, bb):
                for n0, n1 in _ranges(N, nb):
                    diff = (x[b0:b1, None, :] - w[None, n0:n1, :]).abs_()
                    vals, arg = diff.max(dim=-1)  # first maximal index on ties
                    y[b0:b1, n0:n1] = vals
                    idx[b0:b1, n0:n1] = arg
        ctx.save_for_backward(x, w, idx)
        ctx.chunk = chunk
        ctx.mark_non_differentiable(idx)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):
        x, w, idx = ctx.saved_tensors
        if x.shape[1] == 0:
            return torch.zeros_like(x), torch.zeros_like(w), None
        # s[b, n] = sign(x[b, d*] − w[n, d*]) with d* = idx[b, n]; all tensors here are B×N.
        x_at = x.gather(1, idx)
        w_at = w.t().gather(0, idx)  # w_at[b, n] = w[n, idx[b, n]]
        v = g * torch.sign(x_at - w_at)
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = index_sum(idx, v, x.shape[1], ctx.chunk)
        if ctx.needs_input_grad[1]:
            gw = index_sum(idx.t(), -v.t(), w.shape[1], ctx.chunk)
        return gx, gw, None


def index_sum(idx: Tensor, v: Tensor, D: int, chunk: int | None = None) -> Tensor:
    """out[r, d] = Σ_c v[r, c]·[idx[r, c] == d] (idx, v [R, C] → out [R, D]), in a fixed order.

    On the CPU `scatter_add_` (sequential, deterministic). On other devices (CUDA) scatter_add_ uses
    atomics, whose order varies from run to run; there, a one-hot sum over bounded blocks (the same
    R·C·D work as the forward, ≤ `chunk` elements at a time) whose reduction order is fixed.
    """
    if idx.device.type == "cpu":
        return v.new_zeros(idx.shape[0], D).scatter_add_(1, idx, v)
    return onehot_index_sum(idx, v, D, chunk)


def onehot_index_sum(idx: Tensor, v: Tensor, D: int, chunk: int | None = None) -> Tensor:
    """`index_sum` without scatter: blocks of rows × columns of D, each a masked sum over C."""
    R, C = idx.shape
    out = v.new_zeros(R, D)
    rb, db = _blocks(R, D, C, chunk)
    for r0, r1 in _ranges(R, rb):
        for d0, d1 in _ranges(D, db):
            cols = torch.arange(d0, d1, device=idx.device)
            hit = idx[r0:r1, :, None] == cols  # [r, C, d]
            out[r0:r1, d0:d1] = torch.where(hit, v[r0:r1, :, None], v.new_zeros(())).sum(1)
    return out


# ---------------------------------------------------------------- finite p


def _lp_block(diff_abs: Tensor, p: float) -> Tensor:
    """m·(Σ(|d|/m)^p)^{1/p} over the last dim, m = row max (0 rows give 0)."""
    m = diff_abs.amax(dim=-1, keepdim=True)
    safe = torch.where(m > 0, m, torch.ones_like(m))
    s = (diff_abs / safe).pow_(p).sum(dim=-1, keepdim=True)
    return (m * s.pow(1.0 / p)).squeeze(-1)


class _LpDist(torch.autograd.Function):
    """y = ‖x − w‖_p (finite p) blockwise; backward recomputes each block from x, w, y."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, p: float, chunk: int | None) -> Tensor:
        B, D = x.shape
        N = w.shape[0]
        y = x.new_zeros(B, N)
        bb, nb = _blocks(B, N, D, chunk)
        if D > 0:
            for b0, b1 in _ranges(B, bb):
                for n0, n1 in _ranges(N, nb):
                    diff = (x[b0:b1, None, :] - w[None, n0:n1, :]).abs_()
                    y[b0:b1, n0:n1] = _lp_block(diff, p)
        ctx.save_for_backward(x, w, y)
        ctx.p, ctx.chunk = p, chunk
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):
        x, w, y = ctx.saved_tensors
        p = ctx.p
        B, D = x.shape
        N = w.shape[0]
        gx = torch.zeros_like(x)
        gw = torch.zeros_like(w)
        bb, nb = _blocks(B, N, D, ctx.chunk)
        y_safe = torch.where(y > 0, y, torch.ones_like(y))
        # zero upstream gradient where y = 0: there every |d_d| = 0 and the gradient is 0
        g = torch.where(y > 0, g, torch.zeros_like(g))
        if D > 0:
            for b0, b1 in _ranges(B, bb):
                for n0, n1 in _ranges(N, nb):
                    diff = x[b0:b1, None, :] - w[None, n0:n1, :]
                    ratio = diff.abs() / y_safe[b0:b1, n0:n1, None]  # in [0, 1]
                    r = ratio.pow_(p - 1.0).mul_(torch.sign(diff))  # ∂y/∂x_d
                    gb = g[b0:b1, n0:n1]
                    gx[b0:b1] += torch.einsum("bn,bnd->bd", gb, r)
                    gw[n0:n1] -= torch.einsum("bn,bnd->nd", gb, r)
        return (gx if ctx.needs_input_grad[0] else None,
                gw if ctx.needs_input_grad[1] else None, None, None)


# ---------------------------------------------------------------- public functions


def reference_lp_dist(x: Tensor, w: Tensor, p: float, *, chunk: int | None = None) -> Tensor:
    """Pure-torch y[b, n] = ‖x[b] − w[n]‖_p for x [B, D], w [N, D] → [B, N].

    `p` ≥ 1 or math.inf. `chunk` caps the elements of any B_c×N_c×D temporary (default 2**24;
    at least one row pair, D elements, is always used). See the module docstring for gradients.
    """
    _check_pair(x, w)
    p = check_p(p)
    if math.isinf(p):
        return _LinfDist.apply(x, w, chunk)
    return _LpDist.apply(x, w, p, chunk)


def _fast_path():
    """`nets.kernels.fast_lp_dist` if that module provides it, else None."""
    try:
        from nets.kernels import fast_lp_dist
    except ImportError:
        return None
    return fast_lp_dist


def lse_dist(x: Tensor, w: Tensor, p: float) -> Tensor:
    """Log-sum-exp relaxation y[b, n] = (1/p)·log Σ_d exp(p·|x_bd − w_nd|), x [B, D], w [N, D].

    max_d |x_d − w_d| ≤ y ≤ max_d |x_d − w_d| + log(D)/p, and y → the ℓ∞ distance as p → ∞ (p = ∞
    returns it exactly, via `reference_lp_dist`). 1-Lipschitz in ℓ∞ for every p > 0: ∂y/∂x_d =
    softmax_d(p·|x − w|)·sign(x_d − w_d), whose ℓ1 norm is ≤ 1. Pure torch (autograd through
    torch.logsumexp, which subtracts the max, so nothing overflows); memory B·N·D.
    """
    _check_pair(x, w)
    p = float(p)
    if math.isinf(p):
        return reference_lp_dist(x, w, p)
    if not p > 0:
        raise ValueError(f"the log-sum-exp relaxation needs p > 0, got {p}")
    a = (x.unsqueeze(1) - w.unsqueeze(0)).abs()
    return torch.logsumexp(a * p, dim=-1) / p


def lp_dist(x: Tensor, w: Tensor, p: float, *, chunk: int | None = None, backend: str = "auto",
            relaxation: str = "lp") -> Tensor:
    """y[b, n] = ‖x[b] − w[n]‖_p, x [B, D], w [N, D] → [B, N].

    backend "reference" always runs `reference_lp_dist`; "auto", "cpu" and "cuda" first offer the call
    to `nets.kernels.fast_lp_dist(x, w, p, backend=...)`, which returns a Tensor or None (None: no fast
    path for this call), and fall back to the reference. `chunk` only affects the reference.
    `relaxation` "lse" replaces the ℓp norm at finite p by `lse_dist` (at p = ∞ both are the ℓ∞
    distance).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if relaxation not in RELAXATIONS:
        raise ValueError(f"unknown relaxation {relaxation!r}; choose one of {', '.join(RELAXATIONS)}")
    _check_pair(x, w)
    p = check_p(p)
    if relaxation == "lse" and not math.isinf(p):
        return lse_dist(x, w, p)
    if backend != "reference":
        fast = _fast_path()
        if fast is not None:
            y = fast(x, w, p, backend=backend)
            if y is not None:
                return y
    return reference_lp_dist(x, w, p, chunk=chunk)


def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, int):
        v = (v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v}")
    return v




def lp_dist_conv(x: Tensor, w: Tensor, p: float, *, stride=1, padding=0, dilation=1,
                 backend: str = "auto", chunk: int | None = None, relaxation: str = "lp") -> Tensor:
    """Conv form: x [B, C, H, W], w [M, C, kH, kW] → y [B, M, H', W'], padded value 0.

    y[b, m, i, j] = ‖patch_{b,i,j} − w_m‖_p over (c, u, v), the patch read from x padded with zeros
    at rows i·s + u·d and columns j·s + v·d (PyTorch/ONNX Conv semantics). Computed as im2col
    (`F.unfold`) + `lp_dist`, over blocks of B so that one block's unfolded tensor stays ≲ `chunk`
    elements; with several blocks and gradients on, each block is recomputed in the backward
    (activation checkpointing), so autograd never holds the whole unfolded tensor.
    """
    if x.dim() != 4 or w.dim() != 4 or x.shape[1] != w.shape[1]:
        raise ValueError(f"lp_dist_conv wants x [B, C, H, W] and w [M, C, kH, kW] with equal C, "
                         f"got {tuple(x.shape)} and {tuple(w.shape)}")
    stride, padding, dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    B, C, H, W = x.shape
    M, _, kh, kw = w.shape
    ho = conv_output_size(H, kh, stride[0], padding[0], dilation[0])
    wo = conv_output_size(W, kw, stride[1], padding[1], dilation[1])
    if ho < 1 or wo < 1:
        raise ValueError(f"lp_dist_conv: kernel {kh}x{kw} does not fit input {H}x{W} with padding {padding}")
    wf = w.reshape(M, C * kh * kw)

    def block(xb: Tensor, wf_: Tensor) -> Tensor:
        cols = F.unfold(xb, (kh, kw), dilation=dilation, padding=padding, stride=stride)  # [b, K, L]
        cols = cols.transpose(1, 2).reshape(-1, C * kh * kw)
        y = lp_dist(cols, wf_, p, chunk=chunk, backend=backend, relaxation=relaxation)  # [b·L, M]
        return y.reshape(xb.shape[0], ho * wo, M).transpose(1, 2).reshape(xb.shape[0], M, ho, wo)

    per_sample = C * kh * kw * ho * wo
    budget = DEFAULT_CHUNK if chunk is None else int(chunk)
    bb = max(1, min(B, budget // max(per_sample, 1)))
    if bb >= B:
        return block(x, wf)
    recompute = torch.is_grad_enabled() and (x.requires_grad or wf.requires_grad)
    outs = []
    for b0, b1 in _ranges(B, bb):
        if recompute:
            from torch.utils.checkpoint import checkpoint
            outs.append(checkpoint(block, x[b0:b1], wf, use_reentrant=False))
        else:
            outs.append(block(x[b0:b1], wf))
    return torch.cat(outs, dim=0)
