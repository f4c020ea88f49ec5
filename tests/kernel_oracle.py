"""Shared by the kernel tests: a float64 brute-force oracle, tolerances, the extension fixture and
a strategy of random problems (shapes, dtypes, p)."""

from __future__ import annotations

import math

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


P_VALUES = [1.0, 2.0, 5.5, 8.0, 13.7, 30.5, 60.5, 1000.0, math.inf]  # 13.7, 30.5: split pow; 5.5, 60.5: exp2/log2
DTYPES = [torch.float32, torch.float64]
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ oracle (float64, brute force)


def oracle(x: torch.Tensor, w: torch.Tensor, p: float) -> torch.Tensor:
    """‖x_b − w_n‖_p in float64 (max-normalised for finite p), differentiable in x and w."""
    d = (x[:, None, :] - w[None, :, :]).abs()
    m = d.amax(-1)
    if math.isinf(p):
        return m
    m = m.detach().clamp_min(1e-300)[..., None]
    return m[..., 0] * (d / m).pow(p).sum(-1).pow(1.0 / p)


def oracle_grads(x, w, g, p):
    """(∂x, ∂w) in float64. p = ∞: ±g at the FIRST maximal coordinate per pair, from x, w as given."""
    if math.isinf(p):
        diff = x[:, None, :] - w[None, :, :]  # in the inputs' dtype, like the kernels
        a = diff.abs()
        top = a == a.amax(-1, keepdim=True)
        D = x.shape[1]
        first = (top.to(torch.int64) * (D - torch.arange(D))).argmax(-1)  # lowest index among ties
        s = torch.sign(diff.gather(-1, first[..., None]))[..., 0].double() * g.double()
        gx = torch.zeros(x.shape, dtype=torch.float64).scatter_add_(1, first, s)
        gw = torch.zeros(w.shape, dtype=torch.float64).scatter_add_(1, first.t(), -s.t())
        return gx, gw
    xd = x.double().requires_grad_(True)
    wd = w.double().requires_grad_(True)
    gx, gw = torch.autograd.grad(oracle(xd, wd, p), (xd, wd), g.double())
    return gx, gw


def tol(dtype, p):
    if dtype == torch.float64:
        return 1e-10
    return 2e-4 if (math.isfinite(p) and p > 100) else 2e-5


def assert_close(got, want, rel, what):
    got = got.double()
    scale = max(1.0, want.abs().max().item())
    err = (got - want).abs().max().item()
    assert err <= rel * scale, f"{what}: max error {err:.3g} > {rel:.1g}·{scale:.3g}"


@st.composite
def problems(draw, max_b=9, max_n=9, max_d=41):
    B = draw(st.integers(1, max_b))
    N = draw(st.integers(1, max_n))
    D = draw(st.integers(1, max_d))
    dtype = draw(st.sampled_from(DTYPES))
    p = draw(st.sampled_from(P_VALUES))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([1e-3, 1.0, 50.0]))
    x = (torch.randn(B, D, generator=gen, dtype=torch.float64) * scale).to(dtype)
    w = (torch.randn(N, D, generator=gen, dtype=torch.float64) * scale).to(dtype)
    g = torch.randn(B, N, generator=gen, dtype=torch.float64).to(dtype)
    return x, w, g, p


