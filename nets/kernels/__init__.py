"""Fast ℓp / ℓ∞ distance kernels: C++ (AVX2/OpenMP, JIT-built on first use) and Triton (CUDA).

Public API (the contract with `nets.ops`):
- `fast_lp_dist(x, w, p, *, backend="auto") -> Tensor | None`: x [B, D], w [N, D] → [B, N] =
  ‖x_b − w_n‖_p, autograd-capable, same gradient semantics as `nets.ops.reference_lp_dist`; None when
  no fast path applies (no compiler, failed build, unsupported dtype/device, backend "reference", or
  `LINFVERIFY_KERNELS=reference` in the environment) so the caller falls back to the reference.
- `active_backend(device="cpu") -> str`: "cpu-avx2", "cpu-generic", "cuda-triton", or
  "reference (<why>)". Calling it for the CPU triggers the one-time build (~45 s, cached on disk).
- `linf_forward_nograd(x, w) -> Tensor`: max_d |x_b − w_n| without autograd, on the fast kernel when
  available, else a chunked pure-torch loop; both give the correctly rounded exact value.
- `kernel_info() -> dict`: what runs where (also `python verify_cli.py kernels [--json]`).

Environment: `LINFVERIFY_KERNELS=reference` (no fast path anywhere), `LINFVERIFY_CACHE_DIR` (build
cache, default `~/.cache/linfverify/kernels`), `LINFVERIFY_WIDE=0` (no AVX-512 build for finite p),
`LINFVERIFY_CPU_VARIANT=generic` (portable build without -mavx2), `LINFVERIFY_POW=explog` (non-integer
p by exp2/log2 only, not the faster split form: A/B measurements). Inputs with NaN/inf, float16/bf16,
empty dimensions or mixed dtypes get None (the reference handles them).
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

__all__ = ["fast_lp_dist", "active_backend", "linf_forward_nograd", "kernel_info", "ENV_VAR"]

ENV_VAR = "LINFVERIFY_KERNELS"
BACKENDS = ("auto", "cpu", "cuda", "reference")


def _forced_reference() -> bool:
    return os.environ.get(ENV_VAR, "").strip().lower() == "reference"


def _wants(backend: str, device_type: str) -> bool:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "reference" or _forced_reference():
        return False
    return backend == "auto" or backend == device_type


def fast_lp_dist(x: Tensor, w: Tensor, p: float, *, backend: str = "auto") -> Tensor | None:
    """‖x_b − w_n‖_p on the fast kernel for this device, or None when none applies (see module doc)."""
    p = float(p)
    if not (math.isinf(p) and p > 0) and not (math.isfinite(p) and p >= 1.0):
        return None  # invalid p: the reference raises the user-facing error
    dev = x.device.type
    if not _wants(backend, dev):
        return None
    if dev == "cpu":
        from .cpu import cpu_lp_dist

        return cpu_lp_dist(x, w, p)
    if dev == "cuda":
        from .triton_lp import triton_lp_dist

        return triton_lp_dist(x, w, p)
    return None


def active_backend(device: str | torch.device = "cpu") -> str:
    """Which path `fast_lp_dist` takes on `device`, with the reason when it is the reference."""
    dev = torch.device(device).type
    if _forced_reference():
        return f"reference ({ENV_VAR}=reference)"
    if dev == "cpu":
        from ._build import build_status

        variant, reason = build_status()
        return f"cpu-{variant}" if variant else f"reference ({reason})"
    if dev == "cuda":
        from .triton_lp import triton_status

        ok, reason = triton_status()
        return "cuda-triton" if ok else f"reference ({reason})"
    return f"reference (no fast kernel for device type {dev!r})"


def _chunked_linf(x: Tensor, w: Tensor, budget: int = 1 << 24) -> Tensor:
    """Pure-torch max_d |x_b − w_n| in chunks of at most ~budget elements (no autograd)."""
    B, D = x.shape
    N = w.shape[0]
    y = x.new_zeros(B, N)
    if D == 0 or B == 0 or N == 0:
        return y
    nb = max(1, min(N, budget // max(1, D)))
    bb = max(1, budget // max(1, nb * D))
    for b0 in range(0, B, bb):
        for n0 in range(0, N, nb):
            diff = (x[b0:b0 + bb, None, :] - w[None, n0:n0 + nb, :]).abs_()
            y[b0:b0 + bb, n0:n0 + nb] = diff.amax(dim=-1)
    return y


@torch.no_grad()
def linf_forward_nograd(x: Tensor, w: Tensor) -> Tensor:
    """y[b, n] = max_d |x[b, d] − w[n, d]| (x [B, D], w [N, D]), no autograd.

    Guaranteed: every |x_d − w_d| is one correctly rounded subtraction and abs/max are exact, so each
    output is the correctly rounded exact value, on the fast kernel and on the fallback alike.
    """
    if x.dim() != 2 or w.dim() != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"expected x [B, D] and w [N, D], got {tuple(x.shape)} and {tuple(w.shape)}")
    if not _forced_reference():
        if x.device.type == "cpu":
            from .cpu import cpu_linf_forward

            y = cpu_linf_forward(x, w)
            if y is not None:
                return y
        elif x.device.type == "cuda":
            from .triton_lp import triton_lp_dist

            y = triton_lp_dist(x.detach(), w.detach(), math.inf)
            if y is not None:
                return y
    return _chunked_linf(x.detach(), w.detach())


def _pow_info(cpu: str) -> str | None:
    """How the CPU kernels raise terms to a non-integer power (float32)."""
    if not cpu.startswith("cpu-"):
        return None
    from .cpu import POW_ENV, _force_explog

    if _force_explog():
        return f"exp2/log2 for every non-integer p ({POW_ENV}=explog)"
    return ("u^n × polynomial for p in [8.65, 49) and most of (8, 8.65), exp2/log2 elsewhere "
            "(float64: std::pow)")


def kernel_info() -> dict:
    """What runs where: active backend per device, build variant, flags, cache folder, threads.

    Triggers the one-time CPU build (like `active_backend("cpu")`).
    """
    from . import _build

    cpu = active_backend("cpu")
    var = _build.variant()
    return {
        "cpu": cpu,
        "cuda": active_backend("cuda"),
        "env_override": os.environ.get(ENV_VAR) or None,
        "cpu_variant": var,
        "finite_p_build": _build.wide_status() if cpu.startswith("cpu-") else None,
        "non_integer_p_pow": _pow_info(cpu),
        "cflags": _build.cflags(var),
        "cache_dir": str(_build.cache_root()),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
