"""The reference ℓp distance op against a float64 brute force: forward, gradients, ties, chunking, conv."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from nets.ops import lp_dist, lp_dist_conv, reference_lp_dist

PS = [1.0, 2.0, 8.0, 13.7, 1000.0, math.inf]


def brute(x: torch.Tensor, w: torch.Tensor, p: float) -> torch.Tensor:
    """float64 ‖x_b − w_n‖_p by definition (naive broadcast; max-normalised for large p)."""
    d = (x.double()[:, None, :] - w.double()[None, :, :]).abs()
    if math.isinf(p):
        return d.amax(-1) if d.shape[-1] else d.sum(-1)
    m = d.amax(-1, keepdim=True).clamp_min(1e-300)
    return (m.squeeze(-1) * ((d / m) ** p).sum(-1) ** (1.0 / p))


shapes = st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 17))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, p=st.sampled_from(PS), seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_forward_matches_brute_force(shape, p, seed, scale):
    B, N, D = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=g) * scale
    w = torch.randn(N, D, generator=g) * scale
    y = reference_lp_dist(x, w, p)
    assert y.shape == (B, N) and y.dtype == torch.float32
    torch.testing.assert_close(y.double(), brute(x, w, p), rtol=1e-5, atol=0.0)
    if math.isinf(p):  # exact up to the final rounding: equal to float32 of the float64 value
        assert torch.equal(y, brute(x, w, p).float())


@settings(max_examples=25, deadline=None)
@given(shape=shapes, p=st.sampled_from([1.0, 2.0, 8.0, 13.7, 1000.0]), seed=st.integers(0, 2**31 - 1))
def test_gradcheck_finite_p(shape, p, seed):
    B, N, D = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(N, D, generator=g, dtype=torch.float64, requires_grad=True)
    # p = 1 is not differentiable where some |x_d − w_d| = 0; random normals avoid that a.s.
    assert torch.autograd.gradcheck(lambda a, b: reference_lp_dist(a, b, p, chunk=5), (x, w), eps=1e-7, atol=1e-5)


def onehot_subgradient(x, w, g):
    """Analytic p = ∞ subgradient at the first argmax coordinate, by loops (float64)."""
    gx, gw = torch.zeros_like(x), torch.zeros_like(w)
    for b in range(x.shape[0]):
        for n in range(w.shape[0]):
            d = (x[b] - w[n]).abs()
            k = int(torch.nonzero(d == d.max())[0])
            s = torch.sign(x[b, k] - w[n, k])
            gx[b, k] += g[b, n] * s
            gw[n, k] -= g[b, n] * s
    return gx, gw


@settings(max_examples=30, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1), chunk=st.sampled_from([None, 1, 7, 50]))
def test_linf_gradient_is_onehot_subgradient(shape, seed, chunk):
    B, N, D = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(N, D, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(B, N, generator=gen, dtype=torch.float64)
    reference_lp_dist(x, w, math.inf, chunk=chunk).backward(g)
    ex, ew = onehot_subgradient(x.detach(), w.detach(), g)
    torch.testing.assert_close(x.grad, ex)
    torch.testing.assert_close(w.grad, ew)


def test_linf_tie_rule_first_maximal_index():
    x = torch.tensor([[1.0, -1.0, 1.0, 0.5]], requires_grad=True)
    w = torch.zeros(1, 4, requires_grad=True)
    y = reference_lp_dist(x, w, math.inf)
    assert y.item() == 1.0
    y.backward()
    # coordinates 0, 1, 2 tie at |d| = 1: only the first (index 0) gets the gradient
    assert x.grad.tolist() == [[1.0, 0.0, 0.0, 0.0]]
    assert w.grad.tolist() == [[-1.0, 0.0, 0.0, 0.0]]
    # first maximal index where the tie is of mixed sign
    x2 = torch.tensor([[0.0, -2.0, 2.0]], requires_grad=True)
    reference_lp_dist(x2, torch.zeros(1, 3), math.inf).backward()
    assert x2.grad.tolist() == [[0.0, -1.0, 0.0]]


def test_zero_distance_gives_zero_gradient_without_nan():
    for p in PS:
        x = torch.ones(2, 5, requires_grad=True)
        w = torch.ones(3, 5, requires_grad=True)
        y = reference_lp_dist(x, w, p)
        y.sum().backward()
        assert torch.all(y == 0)
        assert torch.all(x.grad == 0) and torch.all(w.grad == 0), p


@pytest.mark.parametrize("p", [1000.0, 1e4])
def test_large_p_no_overflow(p):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(6, 40, generator=g) * 1e4).requires_grad_()
    w = torch.randn(5, 40, generator=g) * 1e-4
    w.requires_grad_()
    y = reference_lp_dist(x, w, p)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all() and torch.isfinite(w.grad).all()
    torch.testing.assert_close(y.double(), brute(x.detach(), w.detach(), p), rtol=1e-5, atol=0.0)
    # ℓp ≥ ℓ∞ and ℓp ≤ D^{1/p}·ℓ∞; every gradient entry in [−1, 1]
    linf = brute(x.detach(), w.detach(), math.inf)
    assert torch.all(y.double() >= linf * (1 - 1e-6)) and torch.all(y.double() <= linf * 40 ** (1 / p) * (1 + 1e-6))
    assert x.grad.abs().max() <= 5 + 1e-4  # ≤ N since each per-pair gradient is in [−1, 1]


@settings(max_examples=20, deadline=None)
@given(shape=shapes, p=st.sampled_from(PS), seed=st.integers(0, 2**31 - 1), chunk=st.integers(1, 40))
def test_chunked_equals_unchunked(shape, p, seed, chunk):
    B, N, D = shape
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(B, D, generator=gen, dtype=torch.float64)
    w0 = torch.randn(N, D, generator=gen, dtype=torch.float64)
    g = torch.randn(B, N, generator=gen, dtype=torch.float64)
    outs = []
    for c in (None, chunk):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        y = reference_lp_dist(x, w, p, chunk=c)
        y.backward(g)
        outs.append((y.detach(), x.grad, w.grad))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_autograd_saves_no_block_tensor():
    """Only x, w and B×N tensors are kept for the backward, never a B×N×D block."""
    x = torch.randn(16, 64, requires_grad=True)
    w = torch.randn(32, 64, requires_grad=True)
    for p in (math.inf, 8.0):
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
            y = reference_lp_dist(x, w, p, chunk=64)
        assert max(sizes) <= 32 * 64, (p, sizes)
        y.sum().backward()


def test_lp_dist_dispatch_and_errors():
    x, w = torch.randn(3, 4), torch.randn(2, 4)
    for backend in ("auto", "reference", "cpu"):
        torch.testing.assert_close(lp_dist(x, w, math.inf, backend=backend), brute(x, w, math.inf).float())
    with pytest.raises(ValueError):
        lp_dist(x, w, 0.5)
    with pytest.raises(ValueError):
        lp_dist(x, w, math.inf, backend="gpu")
    with pytest.raises(ValueError):
        lp_dist(x, torch.randn(2, 5), math.inf)


def brute_conv(x, w, p, stride, padding, dilation):
    """Direct float64 conv-form loop over output positions, zero padding."""
    B, C, H, W = x.shape
    M, _, kh, kw = w.shape
    xp = F.pad(x.double(), (padding, padding, padding, padding))
    ho = (H + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (W + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    out = torch.empty(B, M, ho, wo, dtype=torch.float64)
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride: i * stride + dilation * (kh - 1) + 1: dilation,
                       j * stride: j * stride + dilation * (kw - 1) + 1: dilation]
            out[:, :, i, j] = brute(patch.reshape(B, -1), w.reshape(M, -1), p)
    return out


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 3), C=st.integers(1, 3), M=st.integers(1, 4), H=st.integers(3, 7), W=st.integers(3, 7),
       k=st.integers(1, 3), stride=st.integers(1, 2), padding=st.integers(0, 2), dilation=st.integers(1, 2),
       p=st.sampled_from(PS), seed=st.integers(0, 2**31 - 1), chunk=st.sampled_from([None, 30]))
def test_conv_form_matches_unfold_and_brute(B, C, M, H, W, k, stride, padding, dilation, p, seed, chunk):
    if H + 2 * padding < dilation * (k - 1) + 1 or W + 2 * padding < dilation * (k - 1) + 1:
        return
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(B, C, H, W, generator=gen, dtype=torch.float64)
    w = torch.randn(M, C, k, k, generator=gen, dtype=torch.float64)
    y = lp_dist_conv(x, w, p, stride=stride, padding=padding, dilation=dilation, chunk=chunk)
    torch.testing.assert_close(y, brute_conv(x, w, p, stride, padding, dilation), rtol=1e-9, atol=1e-12)
    cols = F.unfold(x, k, dilation=dilation, padding=padding, stride=stride).transpose(1, 2).reshape(-1, C * k * k)
    lin = reference_lp_dist(cols, w.reshape(M, -1), p).reshape(B, -1, M).transpose(1, 2).reshape(y.shape)
    torch.testing.assert_close(y, lin, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p", [8.0, math.inf])
def test_conv_chunked_gradients_match(p):
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(5, 2, 6, 6, generator=gen, dtype=torch.float64)
    w0 = torch.randn(3, 2, 3, 3, generator=gen, dtype=torch.float64)
    grads = []
    for chunk in (None, 40):  # 40 elements: one sample per block, recomputed in the backward
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        y = lp_dist_conv(x, w, p, padding=1, chunk=chunk)
        (y * torch.arange(y.numel(), dtype=y.dtype).reshape(y.shape).sin()).sum().backward()
        grads.append((y.detach(), x.grad, w.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_fast_path_is_offered_first_and_none_falls_back(monkeypatch):
    import nets.kernels

    calls = []

    def fake(x, w, p, *, backend):
        calls.append(backend)
        return None if backend == "auto" else torch.full((x.shape[0], w.shape[0]), 7.0)

    monkeypatch.setattr(nets.kernels, "fast_lp_dist", fake, raising=False)
    x, w = torch.randn(3, 4), torch.randn(2, 4)
    torch.testing.assert_close(lp_dist(x, w, math.inf), brute(x, w, math.inf).float())  # None → reference
    assert torch.all(lp_dist(x, w, 8.0, backend="cpu") == 7.0)
    torch.testing.assert_close(lp_dist(x, w, 2.0, backend="reference"), brute(x, w, 2.0).float())
    assert calls == ["auto", "cpu"]


def test_double_backward_is_refused_not_wrong():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 4, dtype=torch.float64)
    for p in (2.0, math.inf):
        (gx,) = torch.autograd.grad(reference_lp_dist(x, w, p).sum(), x, create_graph=True)
        with pytest.raises(RuntimeError):
            gx.sum().backward()
