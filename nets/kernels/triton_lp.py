"""CUDA path: Triton kernels for y[b, n] = ‖x_b − w_n‖_p, forward and backward, deterministic.

No atomics anywhere: the x-gradient is one program per (x-row block, D block) looping over w rows,
the w-gradient one program per (w-row block, D block) looping over x rows, so every sum runs in a
fixed order (bitwise reproducible). float32 only (float64, mixed dtypes or devices, NaN/inf inputs fall back to
the reference).

The per-tile math lives in `tile_*` functions written twice, in Triton and in torch
(`nets.kernels.tile_math`); the torch twin runs the same blocked loops on the CPU, which is how
the formulas and the block/grid logic are tested where no GPU exists. Triton is imported lazily:
this module imports on any machine and `triton_status()` says whether the CUDA path can run.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import torch
from torch import Tensor

from .tile_math import BLOCKS, grid

_TRITON: dict = {"checked": False, "ok": False, "reason": "", "kernels": None}


def triton_decline(x: Tensor, w: Tensor, device_type: str = "cuda") -> str | None:
    """None when the Triton kernels accept (x, w) on `device_type`, else why not.

    Non-finite inputs are declined: the reference propagates NaN/inf like torch (a NaN coordinate gives
    a NaN distance, so `TrainingDiverged` fires), the kernels' max-normalisation would not.
    """
    if x.device.type != device_type or w.device != x.device:
        return f"tensors are not both on one {device_type} device ({x.device}, {w.device})"
    if x.dtype != torch.float32 or w.dtype != torch.float32:
        return f"dtype {x.dtype}/{w.dtype} (the Triton path is float32 only)"
    if x.dim() != 2 or w.dim() != 2 or x.shape[1] != w.shape[1]:
        return "shapes are not x [B, D], w [N, D]"
    if x.shape[0] == 0 or w.shape[0] == 0 or x.shape[1] == 0:
        return "empty dimension"
    if not bool(torch.isfinite(x).all() & torch.isfinite(w).all()):  # one device sync per call
        return "non-finite inputs (the reference propagates them)"
    return None


def _first_line(e: BaseException) -> str:
    return ((str(e).strip().splitlines() or [type(e).__name__])[0])[:160]


def _import_kernels():
    from . import triton_kernels

    return triton_kernels


def probe(kern, device) -> str | None:
    """Compile and launch every kernel once (forward, argmax, both gradients; finite p and p = ∞) on a
    small problem on `device` and compare with the reference; None when all run and agree, else why not."""
    from nets.ops import reference_lp_dist

    gen = torch.Generator().manual_seed(0)
    x, w, g = (torch.randn(s, generator=gen).to(device) for s in ((5, 7), (3, 7), (5, 3)))
    try:
        for p in (2.0, math.inf):
            got = _grads(lambda a, b: _TritonLpDist.apply(a, b, p, kern), x, w, g)
            want = _grads(lambda a, b: reference_lp_dist(a, b, p), x, w, g)
            if not all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(got, want)):
                return f"Triton kernels disagree with the reference (p = {p})"
    except Exception as e:  # noqa: BLE001 - compile errors, launch errors, out of resources
        return f"Triton kernels failed to compile or run: {_first_line(e)}"
    return None


def _grads(fn, x, w, g):
    xr, wr = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    y = fn(xr, wr)
    return (y.detach(), *torch.autograd.grad(y, (xr, wr), g))


def triton_status() -> tuple[bool, str]:
    """(usable, reason): CUDA present, triton importable, and the kernels compile, launch and agree
    with the reference on a small problem (`probe`, once per process, on the current device)."""
    if not _TRITON["checked"]:
        _TRITON["checked"] = True
        if not torch.cuda.is_available():
            _TRITON["reason"] = "no CUDA device"
            return False, _TRITON["reason"]
        try:
            kern = _import_kernels()
        except Exception as e:  # noqa: BLE001 - ImportError or a broken triton install
            _TRITON["reason"] = f"triton unavailable: {_first_line(e)}"
            return False, _TRITON["reason"]
        why = probe(kern, "cuda")  # the current CUDA device
        _TRITON.update(kernels=kern, ok=why is None, reason=why or "ok")
    return _TRITON["ok"], _TRITON["reason"]


class _TritonLpDist(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, p: float, kern) -> Tensor:
        x = x.contiguous()
        w = w.contiguous()
        y = kern.forward(x, w, p)
        ctx.save_for_backward(x, w, y)
        ctx.p, ctx.kern = p, kern
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):
        x, w, y = ctx.saved_tensors
        need_gx, need_gw = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gx, gw = ctx.kern.backward(g.contiguous().to(x.dtype), x, w, y, ctx.p, need_gx, need_gw)
        return (gx if need_gx else None), (gw if need_gw else None), None, None


def triton_lp_dist(x: Tensor, w: Tensor, p: float, *, kernels=None) -> Tensor | None:
    """‖x_b − w_n‖_p on the Triton kernels (autograd-capable), or None when they cannot run.

    `kernels`: a kernels module to use instead of the probed CUDA one (the tests pass the kernels as
    Triton's interpreter runs them, on CPU tensors). A forward that raises (compile or launch error)
    gives None with a warning, so the caller runs the reference (and the CUDA kernels are not tried
    again in this process); the probe in `triton_status` has
    compiled and launched every kernel once before the first real call.
    """
    kern = kernels
    if kern is None:
        if triton_decline(x, w) is not None or not triton_status()[0]:
            return None
        kern = _TRITON["kernels"]
    elif triton_decline(x, w, kern.DEVICE_TYPE) is not None:
        return None
    ctx = torch.cuda.device(x.device) if x.device.type == "cuda" else contextlib.nullcontext()
    try:
        with ctx:  # the tensors' device, never a hard-coded device 0
            return _TritonLpDist.apply(x, w, float(p), kern)
    except Exception as e:  # noqa: BLE001 - any failure of the fast path: the reference runs
        why = f"Triton kernels failed: {_first_line(e)}"
        if kernels is None:  # the process's CUDA kernels: not tried again (triton_status says why)
            _TRITON.update(ok=False, reason=why)
        warnings.warn(f"{why}; using the reference op", RuntimeWarning, stacklevel=2)
        return None


__all__ = ["triton_lp_dist", "triton_status", "triton_decline", "probe", "BLOCKS", "grid"]
