"""MAdam: multiplicative steps, zero entries move, the identity init survives, training works."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nets.models import ModelConfig, build_model
from nets.optim import MAdam, make_optimizer


def _step(w: torch.Tensor, grad: torch.Tensor, **kw) -> MAdam:
    opt = MAdam([w], **kw)
    w.grad = grad.clone()
    opt.step()
    return opt


def test_first_step_is_a_relative_step_of_lr_against_the_gradient():
    w = nn.Parameter(torch.tensor([2.0, -3.0, 0.5, -0.5]))
    _step(w, torch.tensor([1.0, 1.0, -2.0, 0.0]), lr=0.1)
    # ĝ = sign(g) on the first step (v̂ = g²); w·exp(−lr·sign(w)·ĝ); g = 0 leaves w alone
    want = torch.tensor([2.0 * math.exp(-0.1), -3.0 * math.exp(0.1), 0.5 * math.exp(0.1), -0.5])
    torch.testing.assert_close(w.detach(), want)


def test_zero_entries_and_zero_biases_move():
    """A purely multiplicative rule never moves a 0; MAdam takes an additive step there."""
    b = nn.Parameter(torch.zeros(3))
    _step(b, torch.tensor([1.0, -1.0, 0.0]), lr=0.01)
    torch.testing.assert_close(b.detach(), torch.tensor([-0.01, 0.01, 0.0]))
    w = nn.Parameter(torch.tensor([1.0, 0.0, -2.0]))
    _step(w, torch.tensor([0.0, 2.0, 0.0]), lr=0.01)
    rms = math.sqrt(5 / 3)
    assert w[1].item() == pytest.approx(-0.01 * rms, rel=1e-5) and w[0] == 1.0 and w[2] == -2.0


def test_identity_init_entries_are_not_clamped_and_signs_are_kept():
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="linf", input_shape=(1, 4, 4), depth=2, width=32))
    layer = model.trunk[1]
    ident = layer.weight.detach() == -10.0
    assert ident.any()
    before = layer.weight.detach().clone()
    opt = make_optimizer("madam", model, lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        model(torch.rand(8, 1, 4, 4)).sum().backward()
        opt.step()
    after = layer.weight.detach()
    assert (after[ident].abs() >= 10.0 * math.exp(-0.03) - 1e-4).all()  # ≤ 3 relative steps of 1 %
    nz = before != 0
    assert (torch.sign(after[nz]) == torch.sign(before[nz])).all()
    ratio = (after[nz] / before[nz]).log().abs()
    assert (ratio <= 0.03 + 1e-5).all()


def test_madam_fits_a_small_problem_and_bad_arguments_are_refused():
    """A target MAdam can reach (same signs as the init, magnitudes within the bound: a purely
    multiplicative rule keeps every sign), bias from zero (the additive step)."""
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    lin = nn.Linear(4, 1)
    with torch.no_grad():
        lin.bias.zero_()
        target = lin.weight.detach().T * torch.tensor([[1.5], [0.5], [1.3], [0.7]])
    y = x @ target + 0.05
    opt = make_optimizer("madam", lin, lr=0.01)
    first = None
    for _ in range(300):
        opt.zero_grad()
        loss = ((lin(x) - y) ** 2).mean()
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < 0.01 * first
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("sgd", lin, lr=0.1)
    with pytest.raises(ValueError, match="MAdam"):
        MAdam(lin.parameters(), lr=-1.0)
