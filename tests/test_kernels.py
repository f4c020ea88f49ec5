"""Fast ℓp / ℓ∞ distance kernels (nets/kernels) against a float64 brute-force oracle.

The C++ tests skip with the build's reason when the extension cannot be built here; the CUDA tests
skip unless a CUDA device and triton exist; the Triton tile math is tested on the CPU through its
torch twin (nets/kernels/tile_math.py).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given

from nets import kernels
from nets.kernels import _build
from nets.kernels.cpu import cpu_lp_dist
from kernel_oracle import (DTYPES, P_VALUES, SETTINGS, assert_close, oracle, oracle_grads,
                           problems, tol)


# ------------------------------------------------------------------ C++ kernels


@SETTINGS
@given(problems())
def test_cpu_forward_and_grads_match_oracle(ext, prob):
    x, w, g, p = prob
    xr, wr = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    y = cpu_lp_dist(xr, wr, p)
    assert y is not None and y.dtype == x.dtype and y.shape == (x.shape[0], w.shape[0])
    if math.isinf(p):  # exact: correctly rounded, bit-identical to the same-dtype brute force
        assert torch.equal(y, (x[:, None] - w[None]).abs().amax(-1))
    else:
        assert_close(y, oracle(x.double(), w.double(), p), tol(x.dtype, p) * 5, "forward")
    gx, gw = torch.autograd.grad(y, (xr, wr), g)
    ox, ow = oracle_grads(x, w, g, p)
    assert_close(gx, ox, tol(x.dtype, p) * 50, f"grad x (p={p})")
    assert_close(gw, ow, tol(x.dtype, p) * 50, f"grad w (p={p})")


@pytest.mark.parametrize("dtype", DTYPES)
def test_linf_ties_take_first_index(ext, dtype):
    gen = torch.Generator().manual_seed(1)
    # values on a coarse grid: many coordinates tie for the max
    x = torch.randint(0, 3, (13, 19), generator=gen).to(dtype) / 2
    w = torch.randint(0, 3, (7, 19), generator=gen).to(dtype) / 2
    g = torch.randn(13, 7, generator=gen, dtype=dtype)
    xr, wr = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    y = cpu_lp_dist(xr, wr, math.inf)
    gx, gw = torch.autograd.grad(y, (xr, wr), g)
    ox, ow = oracle_grads(x, w, g, math.inf)
    assert_close(gx, ox, 1e-6, "grad x")  # wrong tie index would be off by ~|g|
    assert_close(gw, ow, 1e-6, "grad w")
    am = ext.linf_argmax(x, w, y.detach())
    a = (x[:, None] - w[None]).abs()
    for b in range(13):
        for n in range(7):
            hits = (a[b, n] == y[b, n]).nonzero()
            assert am[b, n].item() == hits[0].item()


@pytest.mark.parametrize("p", [1.0, 8.0, 13.7, math.inf])
def test_gradcheck_float64(ext, p):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 11, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 11, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: cpu_lp_dist(a, b, p), (x, w), eps=1e-7, atol=1e-5)


def test_matches_nets_ops_reference(ext):
    ops = pytest.importorskip("nets.ops")
    gen = torch.Generator().manual_seed(3)
    for p in P_VALUES:
        x = torch.randn(17, 45, generator=gen, requires_grad=True)
        w = torch.randn(23, 45, generator=gen, requires_grad=True)
        g = torch.randn(17, 23, generator=gen)
        y1 = cpu_lp_dist(x, w, p)
        y2 = ops.reference_lp_dist(x, w, p)
        a = torch.autograd.grad(y1, (x, w), g)
        b = torch.autograd.grad(y2, (x, w), g)
        assert_close(y1, y2.double(), 1e-5, f"y p={p}")
        for u, v in zip(a, b):
            assert_close(u, v.double(), 1e-3 if p > 100 else 1e-4, f"grad p={p}")


@pytest.mark.parametrize("p", [8.0, 13.7, math.inf])
def test_many_tiles_and_d_blocks(ext, p):
    """Shapes spanning several output tiles (remainders in B and N) and several D blocks of both
    forward blockings (256 with the argmax record, 1024 without): p = inf is bit-identical to the
    reference op with and without grad, finite p within tolerance, gradients against the oracle."""
    ops = pytest.importorskip("nets.ops")
    gen = torch.Generator().manual_seed(11)
    x = torch.rand(37, 2300, generator=gen)
    w = torch.rand(205, 2300, generator=gen)
    g = torch.randn(37, 205, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y_nograd = cpu_lp_dist(x, w, p)
    xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    y = cpu_lp_dist(xg, wg, p)
    gx, gw = torch.autograd.grad(y, (xg, wg), g.float())
    ox, ow = oracle_grads(x, w, g, p)
    if math.isinf(p):
        ref = ops.reference_lp_dist(x, w, p)
        assert torch.equal(y_nograd, ref) and torch.equal(y.detach(), ref)
    else:
        assert_close(y_nograd, oracle(x.double(), w.double(), p), tol(x.dtype, p) * 5, "forward")
        assert torch.equal(y_nograd, y.detach())
    assert_close(gx, ox, tol(x.dtype, p) * 50, f"grad x (p={p})")
    assert_close(gw, ow, tol(x.dtype, p) * 50, f"grad w (p={p})")


def test_backward_scratch_reuse(ext):
    """The finite-p backward's partial-gradient buffer (several w-row chunks, N >= 64) is kept
    between calls: calls of other shapes and dtypes in between must not leak into the gradients."""
    gen = torch.Generator().manual_seed(5)
    shapes = [(13, 70, 96), (40, 150, 200), (7, 33, 64), (40, 150, 200)]  # (B, D, N): grow, shrink
    for i, (B, D, N) in enumerate(shapes):
        dtype = torch.float64 if i == 2 else torch.float32
        x = torch.rand(B, D, generator=gen, dtype=torch.float64).to(dtype)
        w = torch.rand(N, D, generator=gen, dtype=torch.float64).to(dtype)
        g = torch.randn(B, N, generator=gen, dtype=torch.float64).to(dtype)
        for p in (8.0, 13.7):
            y = ext.lp_forward(x, w, p)
            gx, gw = ext.lp_backward(g, x, w, y, p, True, True)
            ox, ow = oracle_grads(x, w, g, p)
            assert_close(gx, ox, tol(dtype, p) * 50, f"grad x {B}x{D}x{N} p={p}")
            assert_close(gw, ow, tol(dtype, p) * 50, f"grad w {B}x{D}x{N} p={p}")


def test_one_sided_grads_and_noncontiguous(ext):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(9, 33, generator=gen)
    wt = torch.randn(33, 5, generator=gen).requires_grad_(True)
    w = wt.t()  # non-contiguous view
    for p in (8.0, math.inf):
        y = cpu_lp_dist(x, w, p)
        (gw,) = torch.autograd.grad(y.sum(), wt)
        _, ow = oracle_grads(x, w.detach(), torch.ones(9, 5), p)
        assert_close(gw.t(), ow, 1e-4, f"p={p}")


@pytest.mark.parametrize("p", [8.0, 13.7, math.inf])
def test_backward_is_bitwise_deterministic(ext, p):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(70, 100, generator=gen, requires_grad=True)
    w = torch.randn(300, 100, generator=gen, requires_grad=True)  # several w chunks
    g = torch.randn(70, 300, generator=gen)
    old = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 1):  # same bits whatever the thread count
            torch.set_num_threads(threads)
            runs.append(torch.autograd.grad(cpu_lp_dist(x, w, p), (x, w), g))
    finally:
        torch.set_num_threads(old)
    for other in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], other))


def test_zero_distance_pairs_give_zero_gradient(ext):
    x = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    w = torch.tensor([[1.0, 2.0, 3.0], [0.0, 2.0, 5.0]], requires_grad=True)
    for p in (1.0, 8.0, 13.7, math.inf):
        y = cpu_lp_dist(x, w, p)
        assert y[0, 0].item() == 0.0
        gx, gw = torch.autograd.grad(y.sum(), (x, w))
        assert torch.isfinite(gx).all() and gw[0].abs().sum().item() == 0.0


def test_mxcsr_restored_after_finite_p(ext):
    """The finite-p kernels flush denormals locally; the process's FP environment must be intact."""
    x = torch.rand(64, 300)
    w = torch.rand(64, 300)
    cpu_lp_dist(x, w, 13.7)
    cpu_lp_dist(x, w, 8.0).sum()
    tiny = 2.0 ** -1074
    assert tiny * 1.0 > 0.0 and tiny + tiny == 2.0 ** -1073
    t = torch.tensor([1e-40], dtype=torch.float32)
    assert (t * 1.0).item() > 0.0


def test_large_shape_has_no_bxnxd_intermediate(ext):
    # B·N·D float32 would be 8.6 GB; the kernel needs O(B·N) memory.
    gen = torch.Generator().manual_seed(6)
    x = torch.rand(2048, 512, generator=gen)
    w = torch.rand(2048, 512, generator=gen)
    y = cpu_lp_dist(x, w, math.inf)
    for b, n in [(0, 0), (2047, 2047), (1000, 17)]:
        assert y[b, n].item() == (x[b] - w[n]).abs().max().item()


# ------------------------------------------------------------------ integration with nets.ops


def test_non_finite_inputs_are_declined(ext):
    x = torch.rand(3, 5)
    x[1, 2] = float("nan")
    w = torch.rand(4, 5)
    assert cpu_lp_dist(x, w, math.inf) is None
    w[0, 0] = float("inf")
    assert cpu_lp_dist(torch.rand(3, 5), w, 8.0) is None
    y = kernels.linf_forward_nograd(x, torch.rand(4, 5))  # falls back to torch: NaN propagates
    assert torch.isnan(y[1]).all() and not torch.isnan(y[0]).any()


def test_nets_ops_lp_dist_and_conv_use_the_kernel(ext):
    ops = pytest.importorskip("nets.ops")
    gen = torch.Generator().manual_seed(9)
    x = torch.rand(2, 3, 9, 7, generator=gen)
    wc = torch.rand(5, 3, 3, 3, generator=gen)
    for p in (8.0, math.inf):
        a = ops.lp_dist_conv(x, wc, p, stride=2, padding=1, backend="auto")
        b = ops.lp_dist_conv(x, wc, p, stride=2, padding=1, backend="reference")
        assert_close(a, b.double(), 1e-5, f"conv p={p}")
    xl = torch.rand(6, 10, generator=gen)
    wl = torch.rand(4, 10, generator=gen)
    assert torch.equal(ops.lp_dist(xl, wl, math.inf, backend="cpu"), cpu_lp_dist(xl, wl, math.inf))


def test_cli_kernels_json(ext):
    import json

    from typer.testing import CliRunner

    from verify_cli import app

    res = CliRunner().invoke(app, ["kernels", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["cpu"] in ("cpu-avx2", "cpu-generic") and "-ffast-math" not in info["cflags"]


def test_wide_and_narrow_builds_agree_with_oracle(ext):
    """Finite p runs on the AVX-512 build where the CPU has it; both builds must match the oracle."""
    wide = _build.load_wide_extension()
    if wide is None:
        pytest.skip(f"AVX-512 build not used here: {_build.wide_status()}")
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(19, 53, generator=gen)
    w = torch.randn(37, 53, generator=gen)
    g = torch.randn(19, 37, generator=gen)
    for p in (1.0, 8.0, 13.7, 1000.0):
        ox, ow = oracle_grads(x, w, g, p)
        for mod in (ext, wide):
            y = mod.lp_forward(x, w, p)
            assert_close(y, oracle(x.double(), w.double(), p), 1e-5, f"fwd p={p}")
            gx, gw = mod.lp_backward(g, x, w, y, p, True, True)
            assert_close(gx, ox, 1e-3 if p > 100 else 1e-4, f"gx p={p}")
            assert_close(gw, ow, 1e-3 if p > 100 else 1e-4, f"gw p={p}")


def test_wide_build_can_be_disabled(monkeypatch):
    monkeypatch.setenv(_build.WIDE_ENV, "0")
    saved = dict(_build._wide)
    try:
        _build._wide.update(done=False, module=None, reason="")
        assert _build.load_wide_extension() is None
        assert "disabled" in _build.wide_status()
    finally:
        _build._wide.clear()
        _build._wide.update(saved)
    assert "-mavx512f" in _build.cflags("avx512") and "-ffast-math" not in _build.cflags("avx512")


@pytest.mark.parametrize("dtype", DTYPES)
def test_block_hint_argmax_matches_full_scan(ext, dtype):
    """The forward's per-pair 'first block holding the max' hint never changes the argmax (D spans blocks)."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randint(0, 4, (9, 700), generator=gen).to(dtype) / 3
    w = torch.randint(0, 4, (11, 700), generator=gen).to(dtype) / 3
    x[0] = 0.5  # rows whose max sits late or ties everywhere
    w[0, :650] = 0.5
    y, blk = ext.linf_forward_blk(x, w)
    assert torch.equal(y, ext.linf_forward(x, w))
    assert torch.equal(ext.linf_argmax(x, w, y, blk), ext.linf_argmax(x, w, y))
    a = (x[:, None] - w[None]).abs()
    first = torch.stack([torch.nonzero(a[b, n] == y[b, n])[0, 0] for b in range(9) for n in range(11)])
    assert torch.equal(ext.linf_argmax(x, w, y, blk).flatten(), first)


@pytest.mark.slow
def test_generic_build_is_correct(tmp_path):
    """The portable build (no -mavx2, what a non-AVX2 CPU gets) compiles and matches the oracle."""
    code = ("import math, torch; from nets.kernels import _build, cpu; "
            "assert _build.variant() == 'generic'; m = _build.load_cpu_extension(); "
            "assert m is not None, _build.build_status(); "
            "assert _build.load_wide_extension() is None; "
            "g = torch.Generator().manual_seed(0); x = torch.randn(7, 45, generator=g); "
            "w = torch.randn(5, 45, generator=g); "
            "err = [((cpu.cpu_lp_dist(x, w, p).double() - torch.cdist(x.double(), w.double(), p=p)).abs().max().item()) "
            "for p in (1.0, 2.0, 8.0, 13.7, math.inf)]; print(max(err))")
    env = dict(os.environ, LINFVERIFY_CACHE_DIR=str(tmp_path), LINFVERIFY_CPU_VARIANT="generic",
               PYTHONPATH=str(Path(__file__).parents[1]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip()) < 1e-5

