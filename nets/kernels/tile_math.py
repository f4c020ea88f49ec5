"""The Triton kernels' tile math, written in torch: runs the same blocked loops on any device.

`nets/kernels/triton_kernels.py` implements exactly these loops and formulas in Triton (one program
per output tile; the loops below over the other dimension are the in-kernel loops). Tests run these
twins on the CPU against a float64 oracle, which checks the formulas, the block/grid arithmetic, the
masking of ragged edges and the deterministic (atomic-free) reduction order without a GPU.

Formulas (a = |x_d − w_d|, q = p − 1):
- forward: m = max_d a; y = m·exp2(log2(Σ_d exp2(p·log2(a/m))) / p) (a/m a division: 1/m overflows), y = 0 where m = 0 (p = ∞: y = m).
- argmax (p = ∞): the smallest d with a == y.
- backward, finite p: e = sign(x_d − w_d)·g·exp2(q·log2(a/y)) where a > 0 and y > 0, else 0.
- backward, p = ∞: e = sign(x_d − w_d)·g where d == argmax, else 0.
  ∂x[b, d] = Σ_n e[b, n, d] (loop over n blocks); ∂w[n, d] = −Σ_b e[b, n, d] (loop over b blocks).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# (rows of x, rows of w, columns of D) per program, for each kernel.
BLOCKS = {
    "fwd": (32, 32, 8),
    "grad_x": (32, 16, 32),  # (b, n, d): program owns (b, d), loops over n
    "grad_w": (16, 32, 32),  # (b, n, d): program owns (n, d), loops over b
}


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def grid(rows: int, cols: int, block_rows: int, block_cols: int) -> tuple[int, int]:
    """Programs along each axis so that every (row, col) is covered exactly once."""
    if rows < 0 or cols < 0 or block_rows <= 0 or block_cols <= 0:
        raise ValueError("grid needs rows, cols >= 0 and positive blocks")
    return cdiv(rows, block_rows), cdiv(cols, block_cols)


def tile_pow(u: Tensor, q: float) -> Tensor:
    """u^q as exp2(q·log2 u) for u ≥ 0, q ≥ 0, with 0 where u == 0 (also for q = 0: the sign(0) = 0 rule)."""
    pos = u > 0
    safe = torch.where(pos, u, torch.ones_like(u))
    return torch.where(pos, torch.exp2(q * torch.log2(safe)), torch.zeros_like(u))


def _blocks(total: int, block: int):
    for s in range(0, total, block):
        yield s, min(total, s + block)


def tile_forward(x: Tensor, w: Tensor, p: float, blocks=BLOCKS["fwd"]) -> Tensor:
    """y [B, N] computed tile by tile, D in blocks, two passes for finite p (the forward kernel)."""
    bb, bn, bd = blocks
    B, D = x.shape
    N = w.shape[0]
    y = x.new_zeros(B, N)
    for b0, b1 in _blocks(B, bb):
        for n0, n1 in _blocks(N, bn):
            m = x.new_zeros(b1 - b0, n1 - n0)
            for d0, d1 in _blocks(D, bd):
                a = (x[b0:b1, None, d0:d1] - w[None, n0:n1, d0:d1]).abs()
                m = torch.maximum(m, a.amax(-1))
            if math.isinf(p):
                y[b0:b1, n0:n1] = m
                continue
            ms = torch.where(m > 0, m, torch.ones_like(m))  # divide: 1/m overflows below 2^-128
            s = x.new_zeros(b1 - b0, n1 - n0)
            for d0, d1 in _blocks(D, bd):
                a = (x[b0:b1, None, d0:d1] - w[None, n0:n1, d0:d1]).abs()
                s = s + tile_pow(a / ms[..., None], p).sum(-1)
            sp = torch.exp2(torch.log2(torch.where(s > 0, s, torch.ones_like(s))) / p)
            y[b0:b1, n0:n1] = torch.where(m > 0, m * sp, torch.zeros_like(m))
    return y


def tile_argmax(x: Tensor, w: Tensor, y: Tensor, blocks=BLOCKS["fwd"]) -> Tensor:
    """am [B, N] int64: the smallest d with |x_d − w_d| == y (D if none: matches nothing)."""
    bb, bn, bd = blocks
    B, D = x.shape
    N = w.shape[0]
    am = torch.full((B, N), D, dtype=torch.int64, device=x.device)
    for b0, b1 in _blocks(B, bb):
        for n0, n1 in _blocks(N, bn):
            best = torch.full((b1 - b0, n1 - n0), D, dtype=torch.int64, device=x.device)
            yt = y[b0:b1, n0:n1, None]
            for d0, d1 in _blocks(D, bd):
                a = (x[b0:b1, None, d0:d1] - w[None, n0:n1, d0:d1]).abs()
                idx = torch.arange(d0, d1, device=x.device).expand_as(a)
                cand = torch.where(a == yt, idx, torch.full_like(idx, D)).amin(-1)
                best = torch.minimum(best, cand)
            am[b0:b1, n0:n1] = best
    return am


def tile_contrib(g: Tensor, x: Tensor, w: Tensor, y: Tensor, p: float, am: Tensor | None,
                 d0: int) -> Tensor:
    """e[b, n, d] for x [b, d] and w [n, d] tiles (columns d0 + arange) — the kernels' inner formula."""
    diff = x[:, None, :] - w[None, :, :]
    sgn = torch.sign(diff)
    if math.isinf(p):
        idx = torch.arange(d0, d0 + x.shape[1], device=x.device)
        hit = am[:, :, None] == idx[None, None, :]
        return torch.where(hit, sgn * g[:, :, None], torch.zeros_like(diff))
    ok = y > 0
    ys = torch.where(ok, y, torch.ones_like(y))
    c = torch.where(ok, g, torch.zeros_like(g))
    u = torch.where(ok[:, :, None], diff.abs() / ys[:, :, None], torch.zeros_like(diff))
    return sgn * tile_pow(u, p - 1.0) * c[:, :, None]


def tile_grad_x(g, x, w, y, p, am=None, blocks=BLOCKS["grad_x"]) -> Tensor:
    """∂x: one 'program' per (b block, d block), summing over n blocks in increasing order."""
    bb, bn, bd = blocks
    B, D = x.shape
    N = w.shape[0]
    gx = torch.zeros_like(x)
    for b0, b1 in _blocks(B, bb):
        for d0, d1 in _blocks(D, bd):
            acc = x.new_zeros(b1 - b0, d1 - d0)
            for n0, n1 in _blocks(N, bn):
                e = tile_contrib(g[b0:b1, n0:n1], x[b0:b1, d0:d1], w[n0:n1, d0:d1], y[b0:b1, n0:n1], p,
                                 None if am is None else am[b0:b1, n0:n1], d0)
                acc = acc + e.sum(1)
            gx[b0:b1, d0:d1] = acc
    return gx


def tile_grad_w(g, x, w, y, p, am=None, blocks=BLOCKS["grad_w"]) -> Tensor:
    """∂w: one 'program' per (n block, d block), summing over b blocks in increasing order."""
    bb, bn, bd = blocks
    B, D = x.shape
    N = w.shape[0]
    gw = torch.zeros_like(w)
    for n0, n1 in _blocks(N, bn):
        for d0, d1 in _blocks(D, bd):
            acc = w.new_zeros(n1 - n0, d1 - d0)
            for b0, b1 in _blocks(B, bb):
                e = tile_contrib(g[b0:b1, n0:n1], x[b0:b1, d0:d1], w[n0:n1, d0:d1], y[b0:b1, n0:n1], p,
                                 None if am is None else am[b0:b1, n0:n1], d0)
                acc = acc - e.sum(0)
            gw[n0:n1, d0:d1] = acc
    return gw
