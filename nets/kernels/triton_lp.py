"""CUDA path: Triton kernels for y[b, n] = ‖x_b − w_n‖_p, forward and backward, deterministic.

No atomics anywhere: the x-gradient is one program per (x-row block, D block) looping over w rows,
the w-gradient one program per (w-row block, D block) looping over x rows, so every sum runs in a
fixed order (bitwise reproducible). float32 only (float64 falls back to the reference).

The per-tile math lives in `tile_*` functions written twice, in Triton and in torch
(`nets.kernels.tile_math`); the torch twin runs the same blocked loops on the CPU, which is how
the formulas and the block/grid logic are tested where no GPU exists. Triton is imported lazily:
this module imports on any machine and `triton_status()` says whether the CUDA path can run.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .tile_math import BLOCKS, grid

_TRITON: dict = {"checked": False, "ok": False, "reason": "", "kernels": None}


def triton_supported(device_type: str, dtype: torch.dtype, x_shape, w_shape) -> str | None:
    """None when the Triton kernels accept these tensors, else why not."""
    if device_type != "cuda":
        return "tensors are not on a CUDA device"
    if dtype != torch.float32:
        return f"dtype {dtype} (the Triton path is float32 only)"
    if len(x_shape) != 2 or len(w_shape) != 2 or x_shape[1] != w_shape[1]:
        return "shapes are not x [B, D], w [N, D]"
    if x_shape[0] == 0 or w_shape[0] == 0 or x_shape[1] == 0:
        return "empty dimension"
    return None


def triton_status() -> tuple[bool, str]:
    """(usable, reason): CUDA present and triton importable."""
    if not _TRITON["checked"]:
        _TRITON["checked"] = True
        if not torch.cuda.is_available():
            _TRITON["reason"] = "no CUDA device"
        else:
            try:
                from . import triton_kernels

                _TRITON["kernels"] = triton_kernels
                _TRITON["ok"] = True
                _TRITON["reason"] = "ok"
            except Exception as e:  # noqa: BLE001 - ImportError or a broken triton install
                _TRITON["reason"] = f"triton unavailable: {str(e).splitlines()[0][:160] if str(e) else type(e).__name__}"
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
    """‖x_b − w_n‖_p on the Triton kernels (autograd-capable), or None when they cannot run."""
    if kernels is not None:  # test seam: interpreted kernels on CPU tensors
        return _TritonLpDist.apply(x, w, float(p), kernels)
    if triton_supported(x.device.type, x.dtype if w.dtype == x.dtype else w.dtype,
                        tuple(x.shape), tuple(w.shape)) is not None:
        return None
    ok, _ = triton_status()
    if not ok:
        return None
    with torch.cuda.device(x.device):  # the tensors' device, never a hard-coded device 0
        return _TritonLpDist.apply(x, w, float(p), _TRITON["kernels"])


__all__ = ["triton_lp_dist", "triton_status", "triton_supported", "BLOCKS", "grid"]
