"""nets.losses: hinge, IBP margin bounds, mixture loss, ℓp weight decay."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nets import losses as L


def test_margins():
    z = torch.tensor([[1.0, 3.0, 0.0]])
    assert L.margins(z, torch.tensor([1])).tolist() == [[2.0, 0.0, 3.0]]


def test_hinge_zero_when_margins_exceed_theta():
    z = torch.tensor([[5.0, 1.0, 0.0], [0.0, 0.0, 2.1]])
    y = torch.tensor([0, 2])
    assert L.hinge_loss(z, y, theta=2.0, mix=0.75).item() == 0.0
    assert L.hinge_loss(z, y, theta=2.2, mix=0.75).item() > 0.0


def test_hinge_value_max_and_mean_terms():
    z = torch.tensor([[1.0, 0.5, 0.0]])  # margins to class 1, 2: 0.5, 1.0
    y = torch.tensor([0])
    # theta 2: h = [1.5, 1.0]; max 1.5, mean 1.25
    assert L.hinge_loss(z, y, 2.0, mix=1.0).item() == pytest.approx(1.5)
    assert L.hinge_loss(z, y, 2.0, mix=0.0).item() == pytest.approx(1.25)
    assert L.hinge_loss(z, y, 2.0, mix=0.5).item() == pytest.approx(1.375)
    with pytest.raises(ValueError):
        L.hinge_loss(z, y, 2.0, mix=1.5)


def _head(d, h, k, act=nn.Tanh):
    return nn.Sequential(nn.Linear(d, h), act(), nn.Linear(h, k))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    d=st.integers(1, 12),
    h=st.integers(1, 16),
    k=st.integers(2, 6),
    eps=st.floats(0.0, 0.5),
    act=st.sampled_from([nn.Tanh, nn.ReLU, nn.Sigmoid]),
)
def test_ibp_margin_lower_bounds_sampled_points(seed, d, h, k, eps, act):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = _head(d, h, k, act).double()
    b = 3
    feats = torch.randn(b, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (b,), generator=g)
    lower = L.ibp_margin_lower(head, feats, eps, y)
    assert lower.shape == (b, k)
    assert torch.all(lower.gather(1, y.view(-1, 1)) == 0)
    # random points in the box, plus the corners' signs
    u = torch.rand(64, b, d, generator=g, dtype=torch.float64) * 2 - 1
    u[:2] = torch.sign(u[:2])
    pts = feats + eps * u
    m = L.margins(head(pts.reshape(-1, d)), y.repeat(64)).reshape(64, b, k)
    assert torch.all(m >= lower - 1e-9)
    # at eps = 0 the bound is the margin itself
    exact = L.ibp_margin_lower(head, feats, 0.0, y)
    torch.testing.assert_close(exact, L.margins(head(feats), y))


def test_ibp_merging_last_layer_is_tighter_than_separate_bounds():
    torch.manual_seed(0)
    head = _head(8, 16, 4).double()
    feats = torch.randn(5, 8, dtype=torch.float64)
    y = torch.randint(0, 4, (5,))
    merged = L.ibp_margin_lower(head, feats, 0.2, y)
    lo, hi = feats - 0.2, feats + 0.2
    lo, hi = L._linear_box(head[0], lo, hi)
    lo, hi = L._linear_box(head[2], torch.tanh(lo), torch.tanh(hi))
    separate = lo.gather(1, y.view(-1, 1)) - hi
    mask = L._others_mask(y, 4)
    assert torch.all(merged[mask] >= separate[mask] - 1e-12)
    assert torch.any(merged[mask] > separate[mask] + 1e-6)


def test_ibp_head_validation():
    with pytest.raises(ValueError, match="ending in nn.Linear"):
        L.ibp_margin_lower(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), torch.zeros(1, 2), 0.1,
                           torch.tensor([0]))
    with pytest.raises(ValueError, match="Softmax"):
        L.ibp_margin_lower(nn.Sequential(nn.Linear(2, 2), nn.Softmax(1), nn.Linear(2, 2)),
                           torch.zeros(1, 2), 0.1, torch.tensor([0]))


def test_ibp_loss_interpolates_and_worst_ce_dominates():
    torch.manual_seed(1)
    head = _head(6, 10, 3)
    feats, y = torch.randn(4, 6), torch.tensor([0, 1, 2, 0])
    clean = head(feats)
    lower = L.ibp_margin_lower(head, feats, 0.3, y)
    ce = nn.functional.cross_entropy
    assert L.ibp_loss(clean, lower, y, 1.0).item() == pytest.approx(ce(clean, y).item())
    worst = L.ibp_loss(clean, lower, y, 0.0).item()
    assert worst == pytest.approx(ce(L.worst_logits(lower), y).item())
    assert worst >= ce(clean, y).item() - 1e-6  # lower margins can only raise the CE


def test_mixture_loss():
    z = torch.tensor([[3.0, 0.0], [0.0, 0.5]])
    y = torch.tensor([0, 1])
    # margins 3.0 and 0.5, eps 1: hinge clamp(1 - m/2, 0, 1) = 0 and 0.75
    ce = nn.functional.cross_entropy(z, y).item()
    assert L.mixture_loss(z, y, 1.0, lam=0.0).item() == pytest.approx(0.375)
    assert L.mixture_loss(z, y, 1.0, lam=0.5).item() == pytest.approx(0.375 + 0.5 * ce)
    zbad = torch.tensor([[0.0, 10.0]])
    assert L.mixture_loss(zbad, torch.tensor([0]), 1.0, lam=0.0, clip=1.0).item() == 1.0
    with pytest.raises(ValueError):
        L.mixture_loss(z, y, 0.0, lam=0.1)


@pytest.mark.parametrize("p", [1.0, 2.0, 8.0, 1000.0, math.inf])
def test_rowwise_pnorm_matches_reference_and_is_stable(p):
    torch.manual_seed(0)
    w = torch.randn(5, 7, dtype=torch.float64) * 10
    got = L._rowwise_half_sq_pnorm(w, p)
    if math.isinf(p):
        norms = w.abs().amax(dim=1)
    else:  # log-sum-exp form: torch.linalg.vector_norm itself overflows at p = 1000
        norms = torch.exp(torch.logsumexp(p * w.abs().log(), dim=1) / p)
    ref = 0.5 * (norms**2).sum()
    torch.testing.assert_close(got, ref)
    w32 = (torch.randn(3, 50) * 20).requires_grad_()
    v = L._rowwise_half_sq_pnorm(w32, p)
    v.backward()
    assert torch.isfinite(v) and torch.all(torch.isfinite(w32.grad))


def test_lp_weight_decay_on_model():
    from nets.models import ModelConfig, build_model

    model = build_model(ModelConfig(arch="linf-mlp", input_shape=(1, 4, 4), depth=2, width=8, hidden=6))
    wd = L.lp_weight_decay(model, 8.0, dist_coef=1e-2, head_coef=0.0)
    wd.backward()
    trunk_w = [m.weight for m in model.trunk if hasattr(m, "weight")]
    assert all(w.grad is not None and torch.any(w.grad != 0) for w in trunk_w)
    assert all(m.weight.grad is None for m in model.head if isinstance(m, nn.Linear))
    model.zero_grad()
    h = L.lp_weight_decay(model, 8.0, dist_coef=0.0, head_coef=1.0)
    lin = [m for m in model.head if isinstance(m, nn.Linear)]
    assert h.item() == pytest.approx(sum(0.5 * (m.weight**2).sum().item() for m in lin), rel=1e-5)


def test_decoupled_weight_decay_matches_gradient_of_regulariser():
    from nets.models import ModelConfig, build_model

    torch.manual_seed(2)
    model = build_model(ModelConfig(arch="linf-mlp", input_shape=(1, 3, 3), depth=2, width=6, hidden=5))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    reg = L.lp_weight_decay(model, 13.7, dist_coef=1.0, head_coef=1.0)
    grads = dict(zip([k for k, _ in model.named_parameters()],
                     torch.autograd.grad(reg, list(model.parameters()), allow_unused=True)))
    L.apply_decoupled_weight_decay_(model, 13.7, step_dist=0.01, step_head=0.01)
    for k, v in model.named_parameters():
        g = grads[k]
        expect = before[k] if g is None else before[k] - 0.01 * g
        torch.testing.assert_close(v.detach(), expect, msg=k)
