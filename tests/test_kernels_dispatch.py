"""Kernel dispatch, fallbacks, builds, and the CUDA/Triton path (its tile math tested on the CPU)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nets import kernels
from nets.kernels import _build, tile_math
from nets.kernels.cpu import cpu_lp_dist
from kernel_oracle import (P_VALUES, assert_close, oracle, oracle_grads,
                           problems, tol)


# ------------------------------------------------------------------ dispatch and fallbacks


def test_active_backend_and_env_override(ext, monkeypatch):
    assert kernels.active_backend("cpu") in ("cpu-avx2", "cpu-generic")
    x = torch.rand(3, 4)
    assert kernels.fast_lp_dist(x, x, 2.0) is not None
    assert kernels.fast_lp_dist(x, x, 2.0, backend="reference") is None
    assert kernels.fast_lp_dist(x, x, 2.0, backend="cuda") is None  # CPU tensors
    assert kernels.fast_lp_dist(x, x, 0.5) is None  # invalid p: the reference raises
    assert kernels.fast_lp_dist(x.half(), x.half(), 2.0) is None
    monkeypatch.setenv(kernels.ENV_VAR, "reference")
    assert kernels.active_backend("cpu").startswith("reference")
    assert kernels.fast_lp_dist(x, x, 2.0) is None
    assert kernels.active_backend("cuda").startswith("reference")


def test_linf_forward_nograd_fast_and_fallback_agree(monkeypatch):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(37, 29, generator=gen, requires_grad=True)
    w = torch.randn(41, 29, generator=gen)
    y = kernels.linf_forward_nograd(x, w)
    assert not y.requires_grad
    monkeypatch.setenv(kernels.ENV_VAR, "reference")
    y_ref = kernels.linf_forward_nograd(x, w)
    assert torch.equal(y, y_ref)
    assert torch.equal(y_ref, (x.detach()[:, None] - w[None]).abs().amax(-1))
    with pytest.raises(ValueError):
        kernels.linf_forward_nograd(x, w[:, :3])


def test_missing_compiler_reports_reference(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "no-such-compiler-linfverify")
    monkeypatch.setenv("LINFVERIFY_CACHE_DIR", str(tmp_path))  # an empty cache: nothing to reuse
    assert "no C++ compiler" in (_build._why_no_compiler() or "")
    saved = dict(_build._state)
    try:
        _build._state.update(done=False, module=None, variant=None, reason="")
        assert _build.load_cpu_extension() is None
        assert kernels.active_backend("cpu").startswith("reference (no C++ compiler")
        assert cpu_lp_dist(torch.rand(2, 3), torch.rand(2, 3), 2.0) is None
    finally:
        _build._state.clear()
        _build._state.update(saved)


def test_cache_dir_and_hash(monkeypatch, tmp_path):
    monkeypatch.setenv("LINFVERIFY_CACHE_DIR", str(tmp_path))
    assert _build.cache_root() == tmp_path
    h = _build.source_hash("avx2")
    assert h == _build.source_hash("avx2") and h != _build.source_hash("generic")
    assert "-ffast-math" not in _build.cflags("avx2") and "-fopenmp" in _build.cflags("generic")
    assert "-mavx2" in _build.cflags("avx2") and "-mavx2" not in _build.cflags("generic")


# ------------------------------------------------------------------ Triton tile math on the CPU


@settings(max_examples=15, deadline=None)
@given(problems(max_b=11, max_n=11, max_d=23), st.sampled_from([(4, 3, 5), (2, 5, 8), (32, 32, 8)]))
def test_triton_tile_math_matches_oracle(prob, blocks):
    x, w, g, p = prob
    y = tile_math.tile_forward(x, w, p, blocks)
    if math.isinf(p):
        assert torch.equal(y, (x[:, None] - w[None]).abs().amax(-1))
        am = tile_math.tile_argmax(x, w, y, blocks)
    else:
        assert_close(y, oracle(x.double(), w.double(), p), tol(x.dtype, p) * 5, "tile forward")
        am = None
    bx = (blocks[0], blocks[1], blocks[2])
    gx = tile_math.tile_grad_x(g, x, w, y, p, am, bx)
    gw = tile_math.tile_grad_w(g, x, w, y, p, am, bx)
    ox, ow = oracle_grads(x, w, g, p)
    assert_close(gx, ox, tol(x.dtype, p) * 50, "tile grad x")
    assert_close(gw, ow, tol(x.dtype, p) * 50, "tile grad w")


@pytest.mark.parametrize("p", [2.0, 13.7])
def test_tile_math_subnormal_row_max(p):
    """Row max below 2^-128: 1/m would overflow (inf distance, zero gradient); a/m does not."""
    x = torch.tensor([[1e-39, -2e-39, 5e-40]])
    w = torch.zeros(1, 3)
    y = tile_math.tile_forward(x, w, p)
    assert_close(y, oracle(x.double(), w.double(), p), 1e-5, "subnormal forward")
    gx = tile_math.tile_grad_x(torch.ones(1, 1), x, w, y, p)
    assert_close(gx, oracle_grads(x, w, torch.ones(1, 1), p)[0], 1e-4, "subnormal grad")


def test_tile_grid_covers_every_cell():
    for rows, cols, br, bc in [(1, 1, 32, 32), (33, 64, 32, 32), (100, 7, 16, 8), (0, 5, 4, 4)]:
        gr, gc = tile_math.grid(rows, cols, br, bc)
        assert (gr - 1) * br < max(rows, 1) <= gr * br or rows == 0
        assert gc * bc >= cols and (gc - 1) * bc < cols
    with pytest.raises(ValueError):
        tile_math.grid(3, 3, 0, 1)


def test_triton_dispatch_logic_on_cpu():
    from nets.kernels import triton_lp

    x, w = torch.rand(2, 3), torch.rand(4, 3)
    assert "cuda" in triton_lp.triton_decline(x, w)  # CPU tensors
    assert triton_lp.triton_decline(x, w, "cpu") is None
    assert "float32 only" in triton_lp.triton_decline(x.double(), w.double(), "cpu")
    assert "float32 only" in triton_lp.triton_decline(x.double(), w, "cpu")  # mixed dtypes
    assert triton_lp.triton_decline(x, torch.rand(4, 5), "cpu") is not None
    assert triton_lp.triton_decline(x[:0], w, "cpu") == "empty dimension"
    assert "non-finite" in triton_lp.triton_decline(x, w.index_fill(1, torch.tensor([1]), math.inf), "cpu")
    if not torch.cuda.is_available():
        ok, reason = triton_lp.triton_status()
        assert not ok and "CUDA" in reason
        assert triton_lp.triton_lp_dist(torch.rand(2, 3), torch.rand(4, 3), 2.0) is None


# ------------------------------------------------------------------ CUDA (skipped without a GPU)


def _triton_ready() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device in this environment"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed"
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_triton_ready() is not None, reason=f"CUDA path: {_triton_ready()}")
@pytest.mark.parametrize("p", P_VALUES)
def test_triton_matches_oracle(p):
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(67, 91, generator=gen)
    w = torch.randn(45, 91, generator=gen)
    g = torch.randn(67, 45, generator=gen)
    xc, wc = x.cuda().requires_grad_(True), w.cuda().requires_grad_(True)
    y = kernels.fast_lp_dist(xc, wc, p, backend="cuda")
    assert y is not None
    assert_close(y.cpu(), oracle(x.double(), w.double(), p), tol(torch.float32, p) * 5, "cuda fwd")
    gx, gw = torch.autograd.grad(y, (xc, wc), g.cuda())
    ox, ow = oracle_grads(x, w, g, p)
    assert_close(gx.cpu(), ox, tol(torch.float32, p) * 50, "cuda grad x")
    assert_close(gw.cpu(), ow, tol(torch.float32, p) * 50, "cuda grad w")
    again = torch.autograd.grad(kernels.fast_lp_dist(xc, wc, p, backend="cuda"), (xc, wc), g.cuda())
    assert torch.equal(again[0], gx) and torch.equal(again[1], gw)  # deterministic


# ------------------------------------------------------------------ concurrent builds (slow)


@pytest.mark.slow
def test_two_processes_build_concurrently(tmp_path):
    """Two fresh processes build into one empty cache at once; both must load a working kernel."""
    code = ("import torch, math; from nets.kernels import _build, cpu; "
            "m = _build.load_cpu_extension(); assert m is not None, _build.build_status(); "
            "x = torch.rand(5, 9); print(cpu.cpu_lp_dist(x, x, math.inf).diag().abs().max().item())")
    env = dict(os.environ, LINFVERIFY_CACHE_DIR=str(tmp_path), PYTHONPATH=str(Path(__file__).parents[1]))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = []
    for pr in procs:
        out, err = pr.communicate(timeout=600)
        assert pr.returncode == 0, err[-2000:]
        assert float(out.strip()) == 0.0
        errs.append(err)
    assert sum(_build.COMPILING_MESSAGE in e for e in errs) == 1  # one compiles (and says so), one reuses


