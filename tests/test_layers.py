"""ℓ∞-dist layers, mean shift and the identity-map init."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nets.layers import LinfDistConv2d, LinfDistLinear, MeanShift, identity_init
from nets.ops import lp_dist_conv


def test_linear_layer_is_distance_plus_bias_and_reads_p():
    torch.manual_seed(0)
    layer = LinfDistLinear(5, 3, bias=True)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    x = torch.randn(4, 5)
    d = (x[:, None] - layer.weight[None]).abs()
    torch.testing.assert_close(layer(x), d.amax(-1) + layer.bias)
    layer.p = 2.0
    torch.testing.assert_close(layer(x), d.pow(2).sum(-1).sqrt() + layer.bias)


def test_conv_layer_matches_op():
    torch.manual_seed(0)
    layer = LinfDistConv2d(2, 4, 3, stride=2, padding=1, bias=True)
    x = torch.rand(3, 2, 7, 7)
    want = lp_dist_conv(x, layer.weight, math.inf, stride=2, padding=1) + layer.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), want)
    assert layer(x).shape == (3, 4, 4, 4)


@settings(max_examples=20, deadline=None)
@given(F=st.integers(1, 6), spatial=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_mean_shift_eval_is_constant_shift(F, spatial, seed):
    gen = torch.Generator().manual_seed(seed)
    ms = MeanShift(F)
    shape = (8, F, 3, 2) if spatial else (8, F)
    for _ in range(3):  # a few training steps set a non-trivial running mean
        ms(torch.randn(shape, generator=gen) * 3 + 1)
    ms.eval()
    x1, x2 = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen) * 10
    s1, s2 = ms(x1) - x1, ms(x2) - x2
    torch.testing.assert_close(s1, s2)  # f(x) − x independent of x
    c = -ms.running_mean.view((1, -1) + (1,) * (len(shape) - 2))
    torch.testing.assert_close(s1, c.expand_as(s1))


def test_mean_shift_training_uses_batch_mean_and_momentum():
    ms = MeanShift(2, momentum=0.1)
    x = torch.tensor([[[[1.0, 3.0]], [[0.0, 4.0]]], [[[5.0, 7.0]], [[2.0, 2.0]]]])  # [2, 2, 1, 2]
    y = ms(x)
    batch_mean = torch.tensor([4.0, 2.0])
    torch.testing.assert_close(y, x - batch_mean.view(1, 2, 1, 1))
    torch.testing.assert_close(ms.running_mean, 0.1 * batch_mean)
    ms(x)
    torch.testing.assert_close(ms.running_mean, 0.9 * 0.1 * batch_mean + 0.1 * batch_mean)
    # gradient flows through the batch mean: sum of outputs is 0 per channel → zero gradient
    xg = x.clone().requires_grad_()
    ms(xg).sum().backward()
    torch.testing.assert_close(xg.grad, torch.zeros_like(x))
    with pytest.raises(ValueError):
        ms(torch.randn(3, 5))


@settings(max_examples=20, deadline=None)
@given(n_in=st.integers(1, 12), extra=st.integers(0, 20), seed=st.integers(0, 2**31 - 1))
def test_identity_init_linear_is_identity_up_to_constant(n_in, extra, seed):
    torch.manual_seed(seed)
    n_out = n_in + extra
    layer = LinfDistLinear(n_in, n_out)
    assert identity_init(layer)
    x = torch.rand(6, n_in)
    want = x[:, torch.arange(n_out) % n_in] + 10.0
    torch.testing.assert_close(layer(x), want)


@settings(max_examples=10, deadline=None)
@given(c_in=st.integers(1, 3), extra=st.integers(0, 3), k=st.sampled_from([1, 3, 5]), seed=st.integers(0, 2**31 - 1))
def test_identity_init_conv_is_identity_up_to_constant(c_in, extra, k, seed):
    torch.manual_seed(seed)
    c_out = c_in + extra
    layer = LinfDistConv2d(c_in, c_out, k, padding=k // 2)
    assert identity_init(layer)
    x = torch.rand(2, c_in, 6, 5)
    want = x[:, torch.arange(c_out) % c_in] + 10.0
    torch.testing.assert_close(layer(x), want)


def test_identity_init_skips_shrinking_layers():
    layer = LinfDistLinear(5, 3)
    before = layer.weight.detach().clone()
    assert not identity_init(layer)
    assert torch.equal(layer.weight, before)
    with pytest.raises(TypeError):
        identity_init(torch.nn.Linear(2, 2))


def test_layer_p_validation():
    with pytest.raises(ValueError):
        LinfDistLinear(2, 2, p=0.5)
