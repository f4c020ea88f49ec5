"""The real Triton kernels (nets/kernels/triton_kernels.py) run by Triton's interpreter on the CPU.

`TRITON_INTERPRET=1` must be set before the first `import triton` (triton 3.9 decorates its own
library functions then, and each kernel when it is defined): tests/conftest.py sets it on machines
without CUDA, so the kernels are `InterpretedFunction`s that accept CPU tensors. The pure-torch
op (`nets.ops.reference_lp_dist`) is the reference. Skipped, with the reason, where triton does not
import. Shapes are small: the interpreter runs every program in Python.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from kernel_oracle import assert_close, tol
from nets import ops
from nets.kernels import triton_lp

P_TRITON = [1.0, 2.0, 8.0, 13.7, 1000.0, math.inf]
SHAPES = [(1, 1, 1), (5, 3, 7), (33, 17, 9), (3, 35, 41)]  # (B, N, D): ragged edges, > one block


def _triton_missing() -> str | None:
    try:
        import triton  # noqa: F401
    except Exception as e:  # noqa: BLE001 - ImportError or a broken install
        return f"triton does not import here ({type(e).__name__}: {str(e)[:120]})"
    return None


@pytest.fixture(scope="module")
def interp():
    """nets/kernels/triton_kernels.py as imported under TRITON_INTERPRET=1 (set by tests/conftest.py)."""
    if torch.cuda.is_available():
        pytest.skip("CUDA present: `pytest -m gpu` runs the compiled Triton kernels instead")
    why = _triton_missing()
    if why:
        pytest.skip(why)
    from nets.kernels import triton_kernels

    if triton_kernels.DEVICE_TYPE != "cpu":
        pytest.skip("triton was imported before TRITON_INTERPRET=1 was set (tests/conftest.py sets it)")
    return triton_kernels


def _problem(B, N, D, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=gen) * scale
    w = torch.randn(N, D, generator=gen) * scale
    g = torch.randn(B, N, generator=gen)
    return x, w, g


def _run(fn, x, w, g, p):
    xr, wr = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    y = fn(xr, wr, p)
    assert y is not None
    gx, gw = torch.autograd.grad(y, (xr, wr), g)
    return y.detach(), gx, gw


def _ref(x, w, p):
    return ops.reference_lp_dist(x, w, p)


def _assert_matches_reference(interp, x, w, g, p, what=""):
    y, gx, gw = _run(lambda a, b, q: triton_lp.triton_lp_dist(a, b, q, kernels=interp), x, w, g, p)
    ry, rx, rw = _run(_ref, x, w, g, p)
    if math.isinf(p):
        assert torch.equal(y, ry), f"{what} forward p=inf not exact"
    else:
        assert_close(y, ry.double(), tol(torch.float32, p) * 5, f"{what} forward p={p}")
    assert_close(gx, rx.double(), tol(torch.float32, p) * 50, f"{what} grad x p={p}")
    assert_close(gw, rw.double(), tol(torch.float32, p) * 50, f"{what} grad w p={p}")
    return y, gx, gw


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("p", P_TRITON)
def test_forward_and_grads_match_reference(interp, p, shape):
    x, w, g = _problem(*shape, seed=hash((p, shape)) % 1000)
    _assert_matches_reference(interp, x, w, g, p, str(shape))


@pytest.mark.slow
@pytest.mark.parametrize("scale", [1e-3, 50.0])
@pytest.mark.parametrize("p", P_TRITON)
def test_larger_shapes_and_scales(interp, p, scale):
    x, w, g = _problem(70, 41, 77, seed=5, scale=scale)
    _assert_matches_reference(interp, x, w, g, p, f"scale {scale}")


@pytest.mark.parametrize("p", [2.0, math.inf])
def test_ties_and_zero_distances(interp, p):
    """Coarse grid values: many coordinates tie for the max, some pairs are at distance 0."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 3, (13, 19), generator=gen).float() / 2
    w = torch.cat([x[:3], torch.randint(0, 3, (4, 19), generator=gen).float() / 2])
    g = torch.randn(13, 7, generator=gen)
    _, gx, gw = _assert_matches_reference(interp, x, w, g, p, "ties")
    if math.isinf(p):  # a wrong tie index would be off by ~|g| somewhere
        _, rx, rw = _run(_ref, x, w, g, p)
        assert_close(gx, rx.double(), 1e-6, "ties grad x")
        assert_close(gw, rw.double(), 1e-6, "ties grad w")


@pytest.mark.parametrize("p", [1.0, 13.7, math.inf])
def test_conv_form_runs_on_the_triton_kernels(interp, p, monkeypatch):
    calls = []

    def fast(x, w, q, backend="auto"):
        calls.append(tuple(x.shape))
        return triton_lp.triton_lp_dist(x, w, q, kernels=interp)

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 6, 5, generator=gen)
    w = torch.randn(4, 3, 3, 2, generator=gen)
    kw = dict(stride=(2, 1), padding=1)
    ref_y, ref_gx, ref_gw = _run(lambda a, b, q: ops.lp_dist_conv(a, b, q, backend="reference", **kw),
                                 x, w, torch.ones(2, 4, 3, 6), p)
    monkeypatch.setattr(ops, "_fast_path", lambda: fast)
    y, gx, gw = _run(lambda a, b, q: ops.lp_dist_conv(a, b, q, **kw), x, w, torch.ones(2, 4, 3, 6), p)
    assert calls, "the conv form did not reach the Triton kernels"
    assert_close(y, ref_y.double(), tol(torch.float32, p) * 5, "conv forward")
    assert_close(gx, ref_gx.double(), tol(torch.float32, p) * 50, "conv grad x")
    assert_close(gw, ref_gw.double(), tol(torch.float32, p) * 50, "conv grad w")


@pytest.mark.parametrize("p", [13.7, math.inf])
def test_bitwise_deterministic(interp, p):
    x, w, g = _problem(33, 17, 9, seed=4)
    runs = [_run(lambda a, b, q: triton_lp.triton_lp_dist(a, b, q, kernels=interp), x, w, g, p)
            for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))


# ------------------------------------------------------------------ the bugs the interpreter found


@pytest.mark.parametrize("p", [2.0, 13.7])
def test_tiny_row_max_does_not_overflow(interp, p):
    """Row max below 2^-128 (1/m > FLT_MAX): was inf distance and zero gradient."""
    x = torch.tensor([[1e-39, -2e-39, 5e-40], [3e-41, 0.0, 1e-40]])
    w = torch.zeros(1, 3)
    g = torch.ones(2, 1)
    y, gx, gw = _assert_matches_reference(interp, x, w, g, p, "subnormal")
    assert torch.isfinite(y).all() and (y > 0).all()
    assert (gx.abs().amax(1) > 0.5).all()  # the gradient of a norm has a coordinate of size >= D^(-1/q)


def _via_dispatch(interp, monkeypatch, x, w, p):
    """nets.ops.lp_dist with the Triton dispatch (triton_lp.triton_lp_dist) as its fast path."""
    monkeypatch.setattr(ops, "_fast_path",
                        lambda: lambda a, b, q, backend="auto": triton_lp.triton_lp_dist(a, b, q, kernels=interp))
    return ops.lp_dist(x, w, p)


@pytest.mark.parametrize("p", [2.0, 8.0, math.inf])
def test_nan_input_gives_nan_distance(interp, p, monkeypatch):
    """A NaN coordinate must not give a finite distance (TrainingDiverged relies on it)."""
    x, w, _ = _problem(3, 4, 5)
    x[1, 2] = float("nan")
    assert triton_lp.triton_lp_dist(x, w, p, kernels=interp) is None  # routed to the reference
    y = _via_dispatch(interp, monkeypatch, x, w, p)
    assert torch.isnan(y[1]).all() and torch.isfinite(y[[0, 2]]).all()


@pytest.mark.parametrize("p", [2.0, math.inf])
def test_inf_input_matches_reference(interp, p, monkeypatch):
    x, w, _ = _problem(3, 4, 5)
    w[0, 1] = float("inf")
    y = _via_dispatch(interp, monkeypatch, x, w, p)
    ref = _ref(x, w, p)
    assert torch.equal(torch.isnan(y), torch.isnan(ref)) and torch.equal(y.nan_to_num(), ref.nan_to_num())


def test_mixed_dtypes_and_devices_are_declined(interp):
    x, w, _ = _problem(3, 4, 5)
    assert triton_lp.triton_lp_dist(x.double(), w, 2.0, kernels=interp) is None
    assert triton_lp.triton_lp_dist(x, w.double(), 2.0, kernels=interp) is None
    assert triton_lp.triton_lp_dist(x, w.to("meta"), 2.0, kernels=interp) is None


def test_failing_kernels_fall_back_to_the_reference(interp):
    """A compile or launch error makes the dispatch decline (the reference runs), with the reason."""
    def boom(*a, **k):
        raise RuntimeError("PassManager::run failed\nmore detail")

    broken = SimpleNamespace(DEVICE_TYPE="cpu", forward=boom, backward=boom)
    x, w, _ = _problem(3, 4, 5)
    with pytest.warns(RuntimeWarning, match="PassManager::run failed"):
        assert triton_lp.triton_lp_dist(x, w, 2.0, kernels=broken) is None
    assert "PassManager::run failed" in triton_lp.probe(broken, "cpu")
    assert triton_lp.probe(interp, "cpu") is None  # the real kernels pass the same probe


def test_status_reports_a_failed_probe(monkeypatch):
    """triton_status() runs the kernels once (compile + launch), not only the import."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(triton_lp, "_import_kernels", lambda: SimpleNamespace(DEVICE_TYPE="cuda"))
    monkeypatch.setattr(triton_lp, "probe", lambda kern, device: "Triton kernels failed to run: boom")
    monkeypatch.setattr(triton_lp, "_TRITON", {"checked": False, "ok": False, "reason": "", "kernels": None})
    ok, reason = triton_lp.triton_status()
    assert not ok and "boom" in reason
