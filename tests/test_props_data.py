"""props on real data: searches started near data points (digits offline; MNIST with `-m data`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from props._planted import InputScale
from props.lipschitz import LipschitzViolation, check_lipschitz
from common import datasets

nets_models = pytest.importorskip("nets.models")


def _net(shape, depth=3, width=32, seed=0):
    torch.manual_seed(seed)
    cfg = nets_models.ModelConfig(arch="linf", input_shape=shape, depth=depth, width=width)
    return nets_models.build_model(cfg).eval()


def test_digits_near_data_true_claim_passes_and_scaling_is_found(tmp_path):
    x, _ = datasets.load_arrays("digits", split="test")
    near = x[:32]
    net = _net((1, 8, 8))
    r = check_lipschitz(net, 1.0, budget=1024, near=near)
    assert r.rigorous and 0.9 < r.ratio and r.ratio_lower <= 1.0
    scaled = nn.Sequential(InputScale(1.1), net).eval()
    with pytest.raises(LipschitzViolation) as info:
        check_lipschitz(scaled, 1.0, budget=1024, near=near, input_shape=(1, 8, 8), save_dir=tmp_path)
    assert 1.0 < info.value.result.ratio_lower <= 1.1 + 1e-6


def test_near_must_match_the_input_shape():
    with pytest.raises(ValueError, match="near"):
        check_lipschitz(_net((1, 8, 8)), 1.0, budget=64, near=np.zeros((3, 5), np.float32))


@pytest.mark.data
def test_mnist_sized_net_near_mnist_test_points(tmp_path):
    if datasets.default_data_dir() is None:
        pytest.skip("needs ../shared/data (real MNIST); not present on this machine")
    x, _ = datasets.load_arrays("mnist", split="test", data_dir=datasets.default_data_dir())
    net = _net((1, 28, 28), depth=3, width=128)
    r = check_lipschitz(net, 1.0, budget=1024, near=x[:64])
    assert r.rigorous and r.ratio_lower <= 1.0 and r.ratio > 0.9
    with pytest.raises(LipschitzViolation):
        check_lipschitz(nn.Sequential(InputScale(1.05), net).eval(), 1.0, budget=1024, near=x[:64],
                        input_shape=(1, 28, 28), save_dir=tmp_path)
