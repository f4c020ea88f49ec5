"""Convex ensembles: weight validation, fusion/voting semantics, fusion keeps 1-Lipschitz."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nets.ensemble import ConvexEnsemble
from nets.models import build_model
from common.errors import ModelError


def members(tiny_config, k: int, arch: str = "linf", seed: int = 0):
    torch.manual_seed(seed)
    ms = [build_model(tiny_config(arch)) for _ in range(k)]
    x = torch.rand(16, 1, 8, 8)
    for m in ms:
        m(x)  # non-trivial running means
        m.eval()
    return ms


def test_fusion_and_voting_semantics(tiny_config):
    ms = members(tiny_config, 3)
    a = [0.2, 0.5, 0.3]
    x = torch.rand(4, 1, 8, 8)
    outs = [m(x) for m in ms]
    fus = ConvexEnsemble(ms, a, mode="fusion").eval()
    torch.testing.assert_close(fus(x), sum(w * o for w, o in zip(a, outs)))
    vot = ConvexEnsemble(ms, a, mode="voting").eval()
    torch.testing.assert_close(vot(x), sum(w * o.softmax(-1) for w, o in zip(a, outs)))
    torch.testing.assert_close(vot(x).sum(-1), torch.ones(4))
    uni = ConvexEnsemble(ms)
    torch.testing.assert_close(uni.weights, torch.full((3,), 1 / 3))


@pytest.mark.parametrize("weights, mode", [
    ([0.5, 0.6], "fusion"), ([-0.1, 1.1], "fusion"), ([float("nan"), 1.0], "fusion"),
    ([1.0], "fusion"), ([0.5, 0.5], "average"),
])
def test_bad_weights_or_mode(weights, mode, tiny_config):
    with pytest.raises(ModelError):
        ConvexEnsemble(members(tiny_config, 2), weights, mode=mode)


@settings(max_examples=15, deadline=None)
@given(k=st.integers(1, 4), seed=st.integers(0, 2**31 - 1),
       raw=st.lists(st.floats(0.01, 1.0), min_size=4, max_size=4))
def test_fusion_of_1_lipschitz_members_is_1_lipschitz(tiny_config, k, seed, raw):
    ms = members(tiny_config, k, "linf", seed)  # pure nets are 1-Lipschitz at p = ∞ in eval mode
    a = [v / sum(raw[:k]) for v in raw[:k]]
    ens = ConvexEnsemble(ms, a).double().eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(32, 1, 8, 8, generator=gen, dtype=torch.float64)
    x2 = (x + (torch.rand(x.shape, generator=gen, dtype=torch.float64) - 0.5) * 0.3).clamp(0, 1)
    dx = (x - x2).flatten(1).abs().amax(1)
    df = (ens(x) - ens(x2)).abs().amax(1)
    assert torch.all(df <= dx * (1 + 1e-9) + 1e-12)


def test_joint_training_updates_all_members(tiny_config):
    ms = members(tiny_config, 2)
    for m in ms:
        m.train()
    ens = ConvexEnsemble(ms)
    opt = torch.optim.SGD(ens.parameters(), lr=0.1)
    before = [m.trunk[1].weight.detach().clone() for m in ms]
    ens(torch.rand(8, 1, 8, 8)).sum().backward()
    opt.step()
    assert all(not torch.equal(b, m.trunk[1].weight) for b, m in zip(before, ms))
    assert "weights" in dict(ens.named_buffers()) and "weights" not in dict(ens.named_parameters())


def test_float32_weights_never_sum_above_one(tiny_config):
    """Regression: weights 2/3, 1/3 rounded to float32 summed to 1 + 3e-8 (fusion then not 1-Lipschitz)."""
    from fractions import Fraction

    for raw in ([2.0, 1.0], [1.0] * 3, [1.0] * 7, [0.1, 0.7, 0.2]):
        ens = ConvexEnsemble(members(tiny_config, len(raw)), [v / sum(raw) for v in raw])
        assert sum(Fraction(float(v)) for v in ens.weights) <= 1
        assert float(ens.weights.double().sum()) == pytest.approx(1.0, abs=1e-6)
