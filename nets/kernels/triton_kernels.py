"""Triton kernels (imported only when CUDA and triton are present; see triton_lp.py).

Each kernel is the Triton form of a torch twin in `tile_math.py` (same blocks, loops and formulas).
CI runs these kernels themselves under Triton's interpreter (TRITON_INTERPRET=1, CPU tensors:
tests/test_kernels_triton.py); compiled on a GPU they are checked by `pytest -m gpu`
(benchmarks/gpu_check.sh). Interpreter results say nothing about GPU speed.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .tile_math import BLOCKS, grid

# Decided when the kernels below are decorated: under TRITON_INTERPRET=1 they run on CPU tensors.
DEVICE_TYPE = "cpu" if triton.knobs.runtime.interpret else "cuda"


@triton.jit
def _pow(u, q):
    # u^q = exp2(q·log2 u), 0 where u == 0 (also for q = 0, the sign(0) = 0 convention)
    pos = u > 0
    r = tl.exp2(q * tl.log2(tl.where(pos, u, 1.0)))
    return tl.where(pos, r, 0.0)


@triton.jit
def _fwd_kernel(X, W, Y, B, N, D, p, IS_INF: tl.constexpr,
                BB: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr):
    pb = tl.program_id(0)
    pn = tl.program_id(1)
    rb = pb * BB + tl.arange(0, BB)
    rn = pn * BN + tl.arange(0, BN)
    mb = rb < B
    mn = rn < N
    m = tl.zeros((BB, BN), dtype=tl.float32)
    for d0 in range(0, D, BD):
        rd = d0 + tl.arange(0, BD)
        md = rd < D
        xt = tl.load(X + rb[:, None] * D + rd[None, :], mask=mb[:, None] & md[None, :], other=0.0)
        wt = tl.load(W + rn[:, None] * D + rd[None, :], mask=mn[:, None] & md[None, :], other=0.0)
        a = tl.abs(xt[:, None, :] - wt[None, :, :])
        m = tl.maximum(m, tl.max(a, axis=2))
    if IS_INF:
        y = m
    else:
        ms = tl.where(m > 0, m, 1.0)  # divide by m: 1/m overflows for m < 2^-128 (subnormal rows)
        s = tl.zeros((BB, BN), dtype=tl.float32)
        for d0 in range(0, D, BD):
            rd = d0 + tl.arange(0, BD)
            md = rd < D
            xt = tl.load(X + rb[:, None] * D + rd[None, :], mask=mb[:, None] & md[None, :], other=0.0)
            wt = tl.load(W + rn[:, None] * D + rd[None, :], mask=mn[:, None] & md[None, :], other=0.0)
            a = tl.abs(xt[:, None, :] - wt[None, :, :])
            s += tl.sum(_pow(a / ms[:, :, None], p), axis=2)
        sp = tl.exp2(tl.log2(tl.where(s > 0, s, 1.0)) / p)
        y = tl.where(m > 0, m * sp, 0.0)
    tl.store(Y + rb[:, None] * N + rn[None, :], y, mask=mb[:, None] & mn[None, :])


@triton.jit
def _argmax_kernel(X, W, Y, AM, B, N, D, BB: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr):
    pb = tl.program_id(0)
    pn = tl.program_id(1)
    rb = pb * BB + tl.arange(0, BB)
    rn = pn * BN + tl.arange(0, BN)
    mb = rb < B
    mn = rn < N
    yt = tl.load(Y + rb[:, None] * N + rn[None, :], mask=mb[:, None] & mn[None, :], other=-1.0)
    best = tl.zeros((BB, BN), dtype=tl.int64) + D  # D = 'no hit yet'
    for d0 in range(0, D, BD):
        rd = d0 + tl.arange(0, BD)
        md = rd < D
        xt = tl.load(X + rb[:, None] * D + rd[None, :], mask=mb[:, None] & md[None, :], other=0.0)
        wt = tl.load(W + rn[:, None] * D + rd[None, :], mask=mn[:, None] & md[None, :], other=0.0)
        a = tl.abs(xt[:, None, :] - wt[None, :, :])
        hit = (a == yt[:, :, None]) & md[None, None, :]
        cand = tl.min(tl.where(hit, rd[None, None, :].to(tl.int64), D), axis=2)
        best = tl.minimum(best, cand)
    tl.store(AM + rb[:, None] * N + rn[None, :], best, mask=mb[:, None] & mn[None, :])


@triton.jit
def _contrib(g, xt, wt, y, am, rd, q, IS_INF: tl.constexpr):
    diff = xt[:, None, :] - wt[None, :, :]
    sgn = tl.where(diff > 0, 1.0, tl.where(diff < 0, -1.0, 0.0))
    if IS_INF:
        hit = am[:, :, None] == rd[None, None, :].to(tl.int64)
        e = tl.where(hit, sgn * g[:, :, None], 0.0)
    else:
        ok = y > 0
        ys = tl.where(ok, y, 1.0)
        c = tl.where(ok, g, 0.0)
        u = tl.where(ok[:, :, None], tl.abs(diff) / ys[:, :, None], 0.0)  # masked lanes: 0, not |w|^q
        e = sgn * _pow(u, q) * c[:, :, None]
    return e


@triton.jit
def _grad_x_kernel(G, X, W, Y, AM, GX, B, N, D, q, IS_INF: tl.constexpr,
                   BB: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr):
    pb = tl.program_id(0)
    pd = tl.program_id(1)
    rb = pb * BB + tl.arange(0, BB)
    rd = pd * BD + tl.arange(0, BD)
    mb = rb < B
    md = rd < D
    xt = tl.load(X + rb[:, None] * D + rd[None, :], mask=mb[:, None] & md[None, :], other=0.0)
    acc = tl.zeros((BB, BD), dtype=tl.float32)
    for n0 in range(0, N, BN):
        rn = n0 + tl.arange(0, BN)
        mn = rn < N
        mbn = mb[:, None] & mn[None, :]
        wt = tl.load(W + rn[:, None] * D + rd[None, :], mask=mn[:, None] & md[None, :], other=0.0)
        g = tl.load(G + rb[:, None] * N + rn[None, :], mask=mbn, other=0.0)
        y = tl.load(Y + rb[:, None] * N + rn[None, :], mask=mbn, other=0.0)
        if IS_INF:
            am = tl.load(AM + rb[:, None] * N + rn[None, :], mask=mbn, other=-1)
        else:
            am = tl.zeros((BB, BN), dtype=tl.int64)  # unused: finite p never reads AM
        acc += tl.sum(_contrib(g, xt, wt, y, am, rd, q, IS_INF), axis=1)
    tl.store(GX + rb[:, None] * D + rd[None, :], acc, mask=mb[:, None] & md[None, :])


@triton.jit
def _grad_w_kernel(G, X, W, Y, AM, GW, B, N, D, q, IS_INF: tl.constexpr,
                   BB: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr):
    pn = tl.program_id(0)
    pd = tl.program_id(1)
    rn = pn * BN + tl.arange(0, BN)
    rd = pd * BD + tl.arange(0, BD)
    mn = rn < N
    md = rd < D
    wt = tl.load(W + rn[:, None] * D + rd[None, :], mask=mn[:, None] & md[None, :], other=0.0)
    acc = tl.zeros((BN, BD), dtype=tl.float32)
    for b0 in range(0, B, BB):
        rb = b0 + tl.arange(0, BB)
        mb = rb < B
        mbn = mb[:, None] & mn[None, :]
        xt = tl.load(X + rb[:, None] * D + rd[None, :], mask=mb[:, None] & md[None, :], other=0.0)
        g = tl.load(G + rb[:, None] * N + rn[None, :], mask=mbn, other=0.0)
        y = tl.load(Y + rb[:, None] * N + rn[None, :], mask=mbn, other=0.0)
        if IS_INF:
            am = tl.load(AM + rb[:, None] * N + rn[None, :], mask=mbn, other=-1)
        else:
            am = tl.zeros((BB, BN), dtype=tl.int64)  # unused: finite p never reads AM
        acc -= tl.sum(_contrib(g, xt, wt, y, am, rd, q, IS_INF), axis=0)
    tl.store(GW + rn[:, None] * D + rd[None, :], acc, mask=mn[:, None] & md[None, :])


def forward(x: torch.Tensor, w: torch.Tensor, p: float) -> torch.Tensor:
    B, D = x.shape
    N = w.shape[0]
    y = torch.empty(B, N, device=x.device, dtype=torch.float32)
    bb, bn, bd = BLOCKS["fwd"]
    inf = math.isinf(p)
    _fwd_kernel[grid(B, N, bb, bn)](x, w, y, B, N, D, 0.0 if inf else float(p), IS_INF=inf,
                                     BB=bb, BN=bn, BD=bd)
    return y


def backward(g, x, w, y, p, need_gx: bool, need_gw: bool):
    B, D = x.shape
    N = w.shape[0]
    inf = math.isinf(p)
    q = 0.0 if inf else float(p) - 1.0
    if inf:
        am = torch.empty(B, N, device=x.device, dtype=torch.int64)
        bb, bn, bd = BLOCKS["fwd"]
        _argmax_kernel[grid(B, N, bb, bn)](x, w, y, am, B, N, D, BB=bb, BN=bn, BD=bd)
    else:
        am = torch.empty(1, device=x.device, dtype=torch.int64)  # never read when IS_INF=False
    gx = gw = None
    if need_gx:
        gx = torch.empty_like(x)
        bb, bn, bd = BLOCKS["grad_x"]
        _grad_x_kernel[grid(B, D, bb, bd)](g, x, w, y, am, gx, B, N, D, q, IS_INF=inf, BB=bb, BN=bn, BD=bd)
    if need_gw:
        gw = torch.empty_like(w)
        bb, bn, bd = BLOCKS["grad_w"]
        _grad_w_kernel[grid(N, D, bn, bd)](g, x, w, y, am, gw, B, N, D, q, IS_INF=inf, BB=bb, BN=bn, BD=bd)
    return gx, gw
