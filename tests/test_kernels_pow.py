"""The float32 u^q evaluators inside the C++ kernels, against float64 `pow`.

The kernels pick PowInt (integer q), PowSplitF (u^n · polynomial, non-integer q in [8.65, 49)
and most of (8, 8.65)) or PowRealF (exp2/log2, elsewhere); `pow_eval` runs the one the kernels
would use on a vector (`generic=True`: the runtime-loop form of the kernels' edge tiles).
The bounds asserted here are those stated in nets/kernels/pow_split.h and simd.h.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

K_CLAMP = 20  # pow_split.h kK: results >= 2^-20 are relative-accurate


def exact(u: torch.Tensor, q: float) -> torch.Tensor:
    return u.double() ** q


def inputs(seed: int, q: float, n: int = 4096) -> torch.Tensor:
    """Half uniform in [0, 1), half spread so that u^q covers [2^-24, 1], plus edge values."""
    gen = torch.Generator().manual_seed(seed)
    uni = torch.rand(n // 2, generator=gen, dtype=torch.float64)
    spread = torch.exp2(-torch.rand(n // 2, generator=gen, dtype=torch.float64) * 24 / q)
    edges = torch.tensor([0.0, 1.0, 1.0 - 2**-24, 1.0 + 2**-23, 2.0**-130, 2.0**(-K_CLAMP / q)],
                         dtype=torch.float64)
    return torch.cat([uni, spread, edges]).float()


def test_path_choice(ext):
    assert ext.pow_path(8.0) == "int" and ext.pow_path(13.0) == "int"
    assert ext.pow_path(13.7) == "split" and ext.pow_path(12.7) == "split"  # the fwd/bwd of p = 13.7
    assert ext.pow_path(48.5) == "split"
    assert ext.pow_path(49.5) == "explog"  # u^49 by powering would lose more than exp2/log2
    assert ext.pow_path(5.5) == "explog"  # below every exponent of the compiled set
    assert ext.pow_path(200.5) == "explog"


@settings(max_examples=40, deadline=None)
@given(q=st.floats(8.7, 48.9).filter(lambda v: v != math.floor(v)), seed=st.integers(0, 2**31 - 1))
def test_split_error_bound(ext, q, seed):
    assert ext.pow_path(q) == "split"  # every q in [8.65, 49): test_split_covers_the_annealing_range
    u = inputs(seed, q)
    got = ext.pow_eval(u, q).double()
    want = exact(u, q)
    big = want >= 2.0**-K_CLAMP
    n = math.floor(q)
    rel = ((got - want).abs() / want)[big].max().item()
    assert rel <= 2e-6 + n * 2.0**-24, f"q={q}: relative error {rel:.3g}"
    # below the clamp: absolute error <= 2^-K · f / q with f = q - n < 4 (pow_split.h)
    small_err = (got - want).abs()[~big].max().item()
    assert small_err <= 2.0**-K_CLAMP * 4 / q, f"q={q}: absolute error {small_err:.3g}"


@settings(max_examples=25, deadline=None)
@given(q=st.floats(1.1, 1000.0).filter(lambda v: v != math.floor(v)), seed=st.integers(0, 2**31 - 1))
def test_explog_error_bound(ext, q, seed):
    u = inputs(seed, q)
    got = ext.pow_eval(u, q, force_explog=True).double()
    want = exact(u, q)
    big = want >= 2.0**-K_CLAMP
    rel = ((got - want).abs() / want)[big].max().item()
    assert rel <= 1e-5, f"q={q}: relative error {rel:.3g}"  # measured <= 7.7e-6 (simd.h)
    assert (got - want).abs().max().item() <= 1e-6


@settings(max_examples=30, deadline=None)
@given(q=st.floats(8.7, 48.95).filter(lambda v: v != math.floor(v)), seed=st.integers(0, 2**31 - 1))
def test_split_compiled_exponent_matches_runtime_loops(ext, q, seed):
    """PowSplitAt<n> (the kernels' main tile, n fixed at compile time) and PowSplitF's runtime
    loops (edge tiles) do the same operations in the same order: the same bits, for every n."""
    u = inputs(seed, q)
    assert torch.equal(ext.pow_eval(u, q), ext.pow_eval(u, q, generic=True))


def test_split_covers_the_annealing_range(ext):
    """Every non-integer q in [8.65, 49) on a 0.01 grid takes the split path (some exponent of the
    compiled set fits), none at or above 49. Below 8.65 the n = 7 fit is at float32's limit and
    misses the tolerance for some q (54 of 3999 on a 0.001 grid of (8, 12), all in [8.19, 8.65)):
    those keep exp2/log2."""
    qs = [k / 100 for k in range(865, 4900) if k % 100]
    assert [q for q in qs if ext.pow_path(q) != "split"] == []
    assert ext.pow_path(49.05) == "explog" and ext.pow_path(7.5) == "explog"
    below = [k / 1000 for k in range(8001, 8650) if k % 1000]
    assert sum(ext.pow_path(q) == "split" for q in below) > len(below) * 0.8


@pytest.mark.parametrize("q", [13.7, 12.7, 30.5])
def test_split_special_values(ext, q):
    u = torch.tensor([0.0, 1.0, float("nan"), 2.0**-140, 0.75])
    got = ext.pow_eval(u, q)
    assert got[0].item() == 0.0 and got[3].item() == 0.0  # 0^q and subnormal^q (FTZ)
    assert abs(got[1].item() - 1.0) <= 2e-6
    assert math.isnan(got[2].item())  # NaN is not absorbed by the clamp
    assert got[4].item() == pytest.approx(0.75**q, rel=5e-6)


def test_split_and_explog_kernels_agree(ext):
    """The whole forward and backward at a split-path p against the exp2/log2 path."""
    gen = torch.Generator().manual_seed(3)
    x, w, g = torch.rand(37, 301, generator=gen), torch.rand(29, 301, generator=gen), torch.randn(37, 29, generator=gen)
    for p in (13.7, 30.5):
        y = ext.lp_forward(x, w, p)
        y2 = ext.lp_forward(x, w, p, force_explog=True)
        assert torch.allclose(y, y2, rtol=2e-6, atol=0)
        gx, gw = ext.lp_backward(g, x, w, y, p, True, True)
        gx2, gw2 = ext.lp_backward(g, x, w, y, p, True, True, force_explog=True)
        scale = gx2.abs().max().item()
        assert (gx - gx2).abs().max().item() <= 2e-5 * scale
        assert (gw - gw2).abs().max().item() <= 2e-5 * gw2.abs().max().item()


def test_env_forces_explog(ext, monkeypatch):
    from nets.kernels.cpu import POW_ENV, cpu_lp_dist, load_wide_extension

    # finite p runs on the AVX-512 build where the CPU has one: compare with the module that ran,
    # so the test means the same on AVX2-only and AVX-512 machines (the two builds round alike
    # only up to the documented error bound, not bit for bit)
    used = load_wide_extension() or ext
    gen = torch.Generator().manual_seed(8)
    x, w = torch.rand(6, 50, generator=gen), torch.rand(70, 50, generator=gen)
    split = cpu_lp_dist(x, w, 13.7)
    monkeypatch.setenv(POW_ENV, "explog")
    forced = cpu_lp_dist(x, w, 13.7)
    assert torch.equal(forced, used.lp_forward(x, w, 13.7, force_explog=True))
    assert not torch.equal(forced, split)  # the two evaluators round differently somewhere
