"""Model zoo: structure, config round trip, set_p, 1-Lipschitz trunks/pure nets at p = ∞."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nets.layers import LinfDistConv2d, LinfDistLinear, MeanShift
from nets.models import (ARCHS, ModelConfig, build_model, count_params, dist_layers, get_p, set_p,
                         validate_config)
from common.errors import ModelError

@st.composite
def configs(draw):
    """Every registered architecture, with tiny geometry (pooling, padding, residual neurons)."""
    arch = draw(st.sampled_from(list(ARCHS)))
    n = draw(st.integers(1, 2))
    k = draw(st.sampled_from([1, 3]))
    widths = draw(st.sampled_from([None, (), (4,), (5, 5)]))
    cfg = ModelConfig(
        arch=arch, input_shape=draw(st.sampled_from([(1, 8, 8), (3, 5, 4), (1, 1, 3)])),
        num_classes=draw(st.integers(2, 5)), depth=draw(st.integers(1, 3)), width=draw(st.integers(1, 9)),
        widths=widths, hidden=draw(st.integers(1, 6)),
        conv_channels=draw(st.sampled_from([(2,), (3,)] if n == 1 else [(3, 4), (2, 2)])),
        conv_strides=(1, 2)[:n], conv_kernel=k,
        conv_padding=draw(st.sampled_from([(), (k // 2,) * n])),
        conv_pool=draw(st.sampled_from([(), (0,) * n, (2,) + (0,) * (n - 1)])),
        pool=draw(st.sampled_from(["max", "avg"])), residual=draw(st.sampled_from([0.0, 0.25, 0.5])),
        mean_shift=draw(st.booleans()), identity_init=draw(st.booleans()))
    try:
        validate_config(cfg)
    except ModelError:
        assume(False)  # pooling shrank a tiny input to nothing
    return cfg


configs = configs()


@settings(max_examples=30, deadline=None)
@given(cfg=configs)
def test_config_round_trip_and_build(cfg):
    d = json.loads(json.dumps(cfg.to_dict()))
    assert ModelConfig.from_dict(d) == cfg
    m = build_model(cfg)
    assert m.config == cfg
    x = torch.rand(3, *cfg.input_shape)
    assert m(x).shape == (3, cfg.num_classes)
    m.eval()
    assert m(x).shape == (3, cfg.num_classes)


@settings(max_examples=25, deadline=None)
@given(cfg=configs, seed=st.integers(0, 2**31 - 1))
def test_pure_and_trunk_are_1_lipschitz_at_p_inf(cfg, seed):
    torch.manual_seed(seed)
    m = build_model(cfg).double()
    m.train()
    m(torch.rand(8, *cfg.input_shape, dtype=torch.float64))  # non-trivial running means
    m.eval()
    x = torch.rand(16, *cfg.input_shape, dtype=torch.float64)
    x2 = (x + (torch.rand_like(x) - 0.5) * 0.2).clamp(0, 1)
    dx = (x - x2).flatten(1).abs().amax(1)
    f = m if m.head is None else m.trunk
    df = (f(x) - f(x2)).flatten(1).abs().amax(1)
    assert torch.all(df <= dx * (1 + 1e-9) + 1e-12)


def test_pure_net_structure():
    cfg = ModelConfig(arch="linf", input_shape=(1, 4, 4), depth=3, width=20, num_classes=3)
    m = build_model(cfg)
    assert m.head is None
    kinds = [type(mod).__name__ for mod in m.trunk]
    assert kinds == ["Flatten", "LinfDistLinear", "MeanShift", "LinfDistLinear", "MeanShift", "LinfDistLinear"]
    last = m.trunk[-1]
    assert last.bias is not None and last.out_features == 3
    assert all(layer.bias is None for layer in dist_layers(m)[:-1])
    x = torch.rand(2, 1, 4, 4)
    torch.testing.assert_close(m(x), -m.trunk(x))
    # identity init on the 20→20 layer only (16→20 too: in ≤ out)
    assert torch.all(m.trunk[3].weight[torch.arange(20), torch.arange(20)] == -10)
    assert torch.all(m.trunk[1].weight[torch.arange(20), torch.arange(20) % 16] == -10)


def test_mlp_and_conv_structure():
    m = build_model(ModelConfig(arch="linf-mlp", input_shape=(1, 4, 4), depth=2, width=8, hidden=5))
    assert [type(x).__name__ for x in m.head] == ["Linear", "Tanh", "Linear"]
    assert sum(isinstance(x, MeanShift) for x in m.trunk) == 2
    c = build_model(ModelConfig(arch="conv-linf-mlp", input_shape=(3, 8, 8), depth=1, width=16, hidden=4,
                                conv_channels=(4, 6), conv_strides=(1, 2)))
    convs = [x for x in c.trunk if isinstance(x, LinfDistConv2d)]
    assert [(x.in_channels, x.out_channels, x.stride) for x in convs] == [(3, 4, (1, 1)), (4, 6, (2, 2))]
    lin = [x for x in c.trunk if isinstance(x, LinfDistLinear)]
    assert lin[0].in_features == 6 * 4 * 4
    assert count_params(c) == sum(p.numel() for p in c.parameters()) > 0


def test_set_p_reaches_every_layer():
    m = build_model(ModelConfig(arch="conv-linf-mlp", input_shape=(1, 6, 6), depth=2, width=4,
                                conv_channels=(2, 3), conv_strides=(1, 1)))
    assert get_p(m) == math.inf
    set_p(m, 8.0)
    assert all(layer.p == 8.0 for layer in dist_layers(m)) and len(dist_layers(m)) == 4
    y8 = m(torch.rand(2, 1, 6, 6))
    assert torch.isfinite(y8).all()
    with pytest.raises(ValueError):
        set_p(m, 0.0)


@pytest.mark.parametrize("bad", [
    {"arch": "resnet", "input_shape": [1, 2, 2]},
    {"arch": "linf"},
    {"arch": "linf", "input_shape": [1, 2, 2], "depth": 0},
    {"arch": "linf", "input_shape": [1, 2, 2], "width": "wide"},
    {"arch": "linf", "input_shape": [1, 2, 2], "colour": 1},
    {"arch": "linf", "input_shape": [1, 2]},
    {"arch": "conv-linf-mlp", "input_shape": [1, 2, 2], "conv_channels": [2], "conv_strides": [1, 1]},
    {"arch": "linf", "input_shape": [1, 2, 2], "mean_shift": "yes"},
    [1, 2],
])
def test_bad_config_is_model_error(bad):
    with pytest.raises(ModelError):
        ModelConfig.from_dict(bad)


def test_wrong_input_shape_is_clear():
    m = build_model(ModelConfig(arch="linf", input_shape=(1, 4, 4), depth=2, width=4))
    with pytest.raises(ValueError, match="expected input"):
        m(torch.rand(2, 1, 5, 5))
