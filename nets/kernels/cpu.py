"""Autograd wrapper of the C++ CPU kernels (float32/float64, contiguous CPU tensors).

Gradient semantics (identical to `nets.ops.reference_lp_dist`):
- p = inf: the subgradient at ONE coordinate per pair, the first d (lowest index) where
  |x_d − w_d| equals the output; ±1 there (sign(0) = 0), 0 elsewhere.
- finite p: ∂y/∂x_d = sign(x_d − w_d)·(|x_d − w_d| / y)^(p−1), and 0 for pairs with y = 0;
  ∂y/∂w_d = −∂y/∂x_d.
Backward reductions run in an order fixed by the shapes (bitwise reproducible).
Inputs with NaN/inf are declined (None): the caller's reference propagates them like torch.
Finite p (float32) computes each term |d/m|^p to <= 1e-5 relative (terms >= 2^-20 of the largest;
non-integer p in [8.65, 49) and most of (8, 8.65): u^n·polynomial, <= 2e-6 + n·2^-24; elsewhere exp2/log2), see
nets/kernels/pow_split.h. `LINFVERIFY_POW=explog` forces exp2/log2 for every non-integer p (A/B runs).
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

from ._build import load_cpu_extension, load_wide_extension

SUPPORTED_DTYPES = (torch.float32, torch.float64)
POW_ENV = "LINFVERIFY_POW"


def _force_explog() -> bool:
    """True when LINFVERIFY_POW=explog: non-integer p by exp2/log2 only (benchmarks' "before")."""
    return os.environ.get(POW_ENV, "") == "explog"


def cpu_supported(x: Tensor, w: Tensor) -> str | None:
    """None when the C++ kernels accept (x, w), else why not."""
    if x.device.type != "cpu" or w.device.type != "cpu":
        return "tensors are not on the CPU"
    if x.dtype not in SUPPORTED_DTYPES or w.dtype != x.dtype:
        return f"dtype {x.dtype}/{w.dtype} (float32 or float64, both the same, expected)"
    if x.dim() != 2 or w.dim() != 2 or x.shape[1] != w.shape[1]:
        return "shapes are not x [B, D], w [N, D]"
    return None


class _CpuLpDist(torch.autograd.Function):
    """y = ‖x_b − w_n‖_p on the C++ kernels; saves x, w, y (no B×N×D tensor, ever)."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, p: float, ext, want_grad: bool) -> Tensor:
        x = x.contiguous()
        w = w.contiguous()
        blk = None
        if not math.isinf(p):
            y = ext.lp_forward(x, w, float(p), _force_explog())
        elif want_grad:
            y, blk = ext.linf_forward_blk(x, w)  # + where each max is: a shorter argmax scan later
        else:
            y = ext.linf_forward(x, w)
        ctx.save_for_backward(x, w, y, blk)
        ctx.p = p
        ctx.ext = ext
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):
        x, w, y, blk = ctx.saved_tensors
        need_gx, need_gw = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_gx or need_gw):
            return None, None, None, None, None
        ext = ctx.ext
        g = g.contiguous().to(x.dtype)
        if math.isinf(ctx.p):
            am = ext.linf_argmax(x, w, y, blk)
            gx, gw = ext.linf_backward(g, x, w, am, need_gx, need_gw)
        else:
            gx, gw = ext.lp_backward(g, x, w, y, float(ctx.p), need_gx, need_gw, _force_explog())
        return (gx if need_gx else None), (gw if need_gw else None), None, None, None


def cpu_lp_dist(x: Tensor, w: Tensor, p: float) -> Tensor | None:
    """‖x_b − w_n‖_p on the C++ kernels, autograd-capable; None when they are unavailable."""
    if cpu_supported(x, w) is not None:
        return None
    ext = load_cpu_extension()
    if ext is None:
        return None
    if x.shape[0] == 0 or w.shape[0] == 0 or x.shape[1] == 0:
        return None  # degenerate shapes: let the reference define them
    if not _all_finite(x, w):
        return None  # NaN/inf: the reference propagates them exactly as torch does
    if not math.isinf(p):
        ext = load_wide_extension() or ext  # finite p: the AVX-512 build where the CPU has it
    want_grad = torch.is_grad_enabled() and (x.requires_grad or w.requires_grad)
    return _CpuLpDist.apply(x, w, float(p), ext, want_grad)


def _all_finite(x: Tensor, w: Tensor) -> bool:
    """O((B + N)·D) check; the kernels' max does not propagate NaN, so non-finite inputs go elsewhere."""
    with torch.no_grad():
        return bool(torch.isfinite(x).all()) and bool(torch.isfinite(w).all())


def cpu_linf_argmax(x: Tensor, w: Tensor, y: Tensor) -> Tensor | None:
    """First d with |x[b, d] − w[n, d]| == y[b, n] as int64 [B, N] (−1 if none); None if no kernel."""
    ext = load_cpu_extension()
    if ext is None or cpu_supported(x, w) is not None:
        return None
    return ext.linf_argmax(x.contiguous(), w.contiguous(), y.contiguous())


def cpu_linf_forward(x: Tensor, w: Tensor) -> Tensor | None:
    """max_d |x[b, d] − w[n, d]| without autograd (bit-identical to the reference); None if no kernel."""
    if cpu_supported(x, w) is not None or x.shape[1] == 0 or not _all_finite(x, w):
        return None
    ext = load_cpu_extension()
    if ext is None:
        return None
    return ext.linf_forward(x.detach().contiguous(), w.detach().contiguous())
