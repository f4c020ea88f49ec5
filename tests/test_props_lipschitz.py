"""props.lipschitz on torch modules and callables: passes true claims, finds planted violations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from props.floaterr import NoErrorBound, forward_with_error, register_error_rule, U_PRIME, ETA
from props.lipschitz import LipschitzViolation, check_lipschitz, replay, search_lipschitz

nets_models = pytest.importorskip("nets.models")


class Scale(nn.Module):
    """y = a·x: |a|-Lipschitz (a planted input scaling)."""

    def __init__(self, a: float):
        super().__init__()
        self.a = float(a)

    def forward(self, x):
        return self.a * x


def _scale_rule(m, x, err):
    y = m(x)
    return y, abs(m.a) * err + U_PRIME * y.detach().abs().reshape(len(y), -1).amax(1).double() + ETA


register_error_rule(Scale, _scale_rule)


def _net(depth=3, width=12, classes=4, shape=(1, 3, 3), seed=0, **kw):
    torch.manual_seed(seed)
    cfg = nets_models.ModelConfig(arch="linf", input_shape=shape, num_classes=classes, depth=depth,
                                  width=width, **kw)
    return nets_models.build_model(cfg).eval()


def test_pure_net_passes_with_rigorous_tolerance():
    m = _net()
    r = check_lipschitz(m, 1.0, budget=1024)
    assert r.rigorous and r.ratio_lower <= 1.0
    assert 0.5 < r.ratio <= 1.0 + 1e-3  # the search does get close to the true constant 1
    assert r.x.shape == r.x_prime.shape == (1, 3, 3) and r.x.dtype == np.float32
    assert (r.x >= 0).all() and (r.x <= 1).all() and (r.x_prime >= 0).all() and (r.x_prime <= 1).all()


def test_scaled_net_violation_is_reported_and_replayable(tmp_path):
    m = nn.Sequential(Scale(1.25), _net()).eval()
    with pytest.raises(LipschitzViolation) as info:
        check_lipschitz(m, 1.0, input_shape=(1, 3, 3), budget=1024, save_dir=tmp_path)
    res = info.value.result
    msg = str(info.value)
    assert res.rigorous and 1.0 < res.ratio_lower <= 1.25 + 1e-6
    assert "not 1-Lipschitz" in msg and "replay" in msg and "x′ = [" in msg
    assert res.counterexample_path and res.counterexample_path.startswith(str(tmp_path))
    again = replay(m, res.counterexample_path)
    assert again.ratio_lower == pytest.approx(res.ratio_lower)
    assert list(tmp_path.iterdir()) == [tmp_path / (res.counterexample_path.split("/")[-1])]
    # the same model passes the claim L = 1.25 it does satisfy
    assert check_lipschitz(m, 1.25, input_shape=(1, 3, 3), budget=512).ratio_lower <= 1.25


def test_error_bound_contains_float64_reference():
    m = _net(depth=4, width=16)
    x = torch.rand(32, 1, 3, 3)
    y, err = forward_with_error(m, x)
    y64 = m.double()(x.double())
    m.float()
    assert torch.equal(y, m(x))
    assert ((y.double() - y64).abs().amax(1) <= err).all()
    assert (err > 0).all() and (err < 1e-4).all()


def test_unknown_module_falls_back_to_heuristic():
    class Odd(nn.Module):
        def forward(self, x):
            return torch.sin(x).flatten(1)

    with pytest.raises(NoErrorBound):
        forward_with_error(Odd(), torch.rand(2, 3))
    r = search_lipschitz(Odd(), input_shape=(3,), budget=256)
    assert not r.rigorous and r.ratio <= 1.0 + 1e-4


def test_callable_and_training_mode_errors():
    from common.errors import ModelError

    r = search_lipschitz(lambda x: 2.0 * x.reshape(len(x), -1), input_shape=(4,), budget=256)
    assert r.ratio == pytest.approx(2.0, rel=1e-5) and r.exceeds(1.9)
    with pytest.raises(ModelError, match="input_shape"):
        search_lipschitz(lambda x: x, budget=64)
    with pytest.raises(ModelError, match="eval"):
        search_lipschitz(_net().train(), budget=64)


def test_finite_p_layer_in_p_inf_model_is_found():
    """ℓp (p < ∞) is not 1-Lipschitz in ℓ∞: ‖x − w‖_p changes by up to D^{1/p}·δ."""
    torch.manual_seed(3)
    layer = nets_models.LinfDistLinear(16, 1, p=4.0)
    with torch.no_grad():
        layer.weight.uniform_(0.3, 0.7)
    m = nn.Sequential(nn.Flatten(), layer).eval()
    with pytest.raises(LipschitzViolation) as info:
        check_lipschitz(m, 1.0, input_shape=(16,), budget=2048)
    assert info.value.result.ratio_lower > 1.3  # the sup is 16^(1/4) = 2
    assert math.isinf(layer.p) is False  # the search restored the layer's own p


@pytest.mark.parametrize("p", [1.0, 2.0, 7.5, 64.0])
def test_error_bound_of_finite_p_layers_contains_float64(p):
    torch.manual_seed(int(p))
    layer = nets_models.LinfDistLinear(24, 5, bias=True, p=p)
    with torch.no_grad():
        layer.bias.uniform_(-3, 3)
    x = torch.rand(64, 24)
    y, err = forward_with_error(layer, x)
    ref = layer.double()(x.double())
    assert ((y.double() - ref).abs().amax(1) <= err).all()


def test_search_is_deterministic_and_validates_budget():
    m = _net(seed=4)
    a, b = search_lipschitz(m, budget=256, seed=3), search_lipschitz(m, budget=256, seed=3)
    assert a.ratio == b.ratio and np.array_equal(a.x, b.x) and np.array_equal(a.x_prime, b.x_prime)
    with pytest.raises(ValueError, match="budget"):
        search_lipschitz(m, budget=8)
    with pytest.raises(ValueError, match="L must be"):
        check_lipschitz(m, float("nan"), budget=64)


def test_domain_is_respected():
    m = _net(seed=5)
    r = search_lipschitz(m, budget=256, domain=(0.25, 0.5))
    for v in (r.x, r.x_prime):
        assert (v >= 0.25).all() and (v <= 0.5).all()
    assert r.domain == (0.25, 0.5)


@pytest.mark.parametrize("batch", ["N", 1, 3])
def test_onnx_with_fixed_batch_size(tmp_path, batch):
    from props._planted import l1_layer_onnx

    path = tmp_path / "l1.onnx"
    l1_layer_onnx(path, np.full((2, 3), 0.5, np.float32), batch=batch)
    r = search_lipschitz(path, budget=256)
    assert r.rigorous and 2.9 < r.ratio_lower <= 3.0 + 1e-6  # ‖x − w‖₁ on 3 inputs: exactly 3
    assert check_lipschitz(path, 3.0, budget=256).ratio_lower <= 3.0


def test_budget_is_respected_roughly():
    r = search_lipschitz(_net(seed=6), budget=1000)
    assert 500 <= r.evaluations <= 1000 * 1.2
