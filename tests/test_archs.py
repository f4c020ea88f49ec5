"""Seed report 000's models: ℓ∞-dist LeNet / AlexNet / VGG with pooling, the log-sum-exp relaxation
and the residual ℓ∞ neuron — values, 1-Lipschitzness, export parity, static bound, certify, props."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from export.onnx_export import export_model
from nets.archs import ARCHS
from nets.layers import LinfDistConv2d, LinfDistLinear, ResidualLinfLinear
from nets.models import ModelConfig, build_model, set_p, set_relaxation
from nets.ops import lse_dist, reference_lp_dist
from props.lipschitz import LipschitzViolation, check_lipschitz
from verify.certify.run import run_certify
from common.errors import ModelError
from verify.front.model import load_model

TINY = dict(conv_kernel=3, conv_padding=(1, 1), widths=(12,), hidden=6)  # LeNet shape on 8×8 digits


def _trained_means(model: nn.Module, shape, seed: int = 0) -> nn.Module:
    """Non-trivial running means (one training-mode forward), then eval."""
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        model(torch.rand(16, *shape, generator=g))
    return model.eval()


def _tiny(arch: str, shape=(1, 8, 8), seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    geo = dict(TINY, **kw)
    if ARCHS[arch].conv and arch != "conv-linf-mlp":
        geo.setdefault("conv_channels", (3, 4))
        geo.setdefault("conv_strides", (1, 1))
        n = len(geo["conv_channels"])
        geo["conv_padding"] = (1,) * n
        geo["conv_pool"] = geo.get("conv_pool", (2,) + (0,) * (n - 2) + (2,))[:n]
    return _trained_means(build_model(ModelConfig(arch=arch, input_shape=shape, **geo)), shape, seed)


# ---------------------------------------------------------------- the report's geometry


def test_lenet_has_the_reports_geometry():
    m = build_model(ModelConfig(arch="lenet", input_shape=(1, 28, 28)))
    convs = [l for l in m.trunk if isinstance(l, LinfDistConv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 6, (5, 5)), (6, 16, (5, 5))]
    assert sum(isinstance(l, nn.MaxPool2d) for l in m.trunk) == 2
    fcs = [l for l in m.trunk if isinstance(l, LinfDistLinear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(400, 120), (120, 1024), (1024, 10)]
    assert fcs[-1].bias is not None and m.head is None
    mlp = build_model(ModelConfig(arch="lenet-mlp", input_shape=(3, 28, 28)))
    assert [(l.in_features, l.out_features) for l in mlp.head if isinstance(l, nn.Linear)] == [(1024, 512), (512, 10)]
    assert mlp(torch.rand(2, 3, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("arch,shape", [("alexnet", (3, 32, 32)), ("vgg-mlp", (1, 28, 28)), ("vgg", (3, 32, 32))])
def test_alexnet_vgg_build_at_full_geometry(arch, shape):
    cfg = ModelConfig(arch=arch, input_shape=shape)
    m = build_model(cfg)
    assert sum(p.numel() for p in m.parameters()) > 1e6
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_pooling_that_empties_the_map_is_refused():
    with pytest.raises(ModelError, match="shrinks"):
        ModelConfig.from_dict({"arch": "lenet", "input_shape": [1, 8, 8]})


# ---------------------------------------------------------------- log-sum-exp relaxation


@settings(max_examples=25, deadline=None)
@given(p=st.floats(1.0, 60.0), d=st.integers(1, 9), seed=st.integers(0, 2**31 - 1))
def test_lse_brackets_linf_and_is_1_lipschitz(p, d, seed):
    g = torch.Generator().manual_seed(seed)
    x, w = torch.rand(6, d, generator=g, dtype=torch.float64), torch.randn(4, d, generator=g, dtype=torch.float64)
    x2 = x + (torch.rand(6, d, generator=g, dtype=torch.float64) - 0.5) * 0.3
    y, y2 = lse_dist(x, w, p), lse_dist(x2, w, p)
    linf = reference_lp_dist(x, w, math.inf)
    assert (linf <= y + 1e-12).all() and (y <= linf + math.log(d) / p + 1e-12).all()
    step = (x - x2).abs().amax(1, keepdim=True)
    assert ((y - y2).abs() <= step + 1e-12).all()


def test_lse_is_exact_linf_at_p_inf_and_stable_at_large_p():
    x, w = torch.rand(5, 7), torch.randn(3, 7)
    assert torch.equal(lse_dist(x, w, math.inf), reference_lp_dist(x, w, math.inf))
    xr = x.clone().requires_grad_(True)
    y = lse_dist(xr, w, 1e4)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(xr.grad).all()
    assert (xr.grad.abs().sum(1) <= 3 * (1 + 1e-3)).all()  # each of 3 outputs: ℓ1 ≤ 1 (float32 softmax)
    with pytest.raises(ValueError, match="relaxation"):
        set_relaxation(build_model(ModelConfig(arch="linf", input_shape=(1, 2, 2), depth=1)), "softmax")


def test_lse_layers_linear_and_conv_follow_the_formula():
    torch.manual_seed(1)
    conv = LinfDistConv2d(2, 3, 3, padding=1, p=5.0)
    conv.relaxation = "lse"
    x = torch.rand(2, 2, 5, 5)
    cols = torch.nn.functional.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 18)
    want = lse_dist(cols, conv.weight.reshape(3, 18), 5.0).reshape(2, 25, 3).transpose(1, 2).reshape(2, 3, 5, 5)
    torch.testing.assert_close(conv(x), want)
    lin = LinfDistLinear(4, 2, p=5.0)
    lin.relaxation = "lse"
    xl = torch.rand(3, 4)
    torch.testing.assert_close(lin(xl), lse_dist(xl, lin.weight, 5.0))
    set_p(lin, math.inf)
    assert torch.equal(lin(xl), reference_lp_dist(xl, lin.weight, math.inf))


# ---------------------------------------------------------------- residual ℓ∞ neuron


def test_residual_neuron_value_grid_and_range():
    torch.manual_seed(0)
    layer = ResidualLinfLinear(5, 0.3)
    assert layer.c == round(0.3 * 2**16) / 2**16 and np.float32(1 - layer.c) + np.float32(layer.c) == 1
    x = torch.rand(4, 5, dtype=torch.float64)
    layer = layer.double()
    want = layer.c * x + (1 - layer.c) * reference_lp_dist(x, layer.weight, math.inf)
    torch.testing.assert_close(layer(x), want)
    x2 = x + (torch.rand_like(x) - 0.5) * 0.2
    assert ((layer(x) - layer(x2)).abs() <= (x - x2).abs().amax(1, keepdim=True) + 1e-12).all()
    for bad in (-0.1, 1.0, 2.0):
        with pytest.raises(ValueError, match="residual"):
            ResidualLinfLinear(3, bad)


def test_residual_net_exports_with_standard_nodes_and_static_bound_exactly_one(tmp_path):
    m = _tiny("linf", depth=4, width=8, widths=(), residual=0.3)
    assert sum(isinstance(l, ResidualLinfLinear) for l in m.trunk) == 2  # the square 8→8 layers
    proto = export_model(m, tmp_path / "r.onnx", dataset="digits")  # checks parity in onnxruntime
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Mul") == 4 and ops.count("LinfDist") == 4
    assert load_model(tmp_path / "r.onnx").lipschitz() == 1.0
    check_lipschitz(m, 1.0, budget=256)  # props: rigorous float error rule, no violation found
    layer = next(l for l in m.trunk if isinstance(l, ResidualLinfLinear))
    layer.c = 0.1  # off the float32-exact grid: refused, never rounded
    with pytest.raises(ModelError, match="not exact"):
        export_model(m, tmp_path / "bad.onnx", dataset="digits")


# ---------------------------------------------------------------- export, static bound, certify, props


@pytest.mark.parametrize("arch,pool,shape", [("lenet", "max", (1, 8, 8)), ("lenet", "avg", (3, 8, 8)),
                                              ("lenet-mlp", "max", (1, 8, 8)), ("alexnet", "max", (3, 8, 8)),
                                              ("vgg-mlp", "avg", (1, 8, 8))])
def test_pooled_nets_export_certify_and_pass_props(tmp_path, arch, pool, shape):
    kw = dict(conv_channels=(3, 4, 4), conv_strides=(1, 1, 1), conv_pool=(2, 0, 2)) if arch != "lenet" and "mlp" not in arch else {}
    if arch == "vgg-mlp":
        kw = dict(conv_channels=(3, 4), conv_strides=(1, 1), conv_pool=(2, 2))
    m = _tiny(arch, shape, pool=pool, **kw)
    path = tmp_path / "m.onnx"
    proto = export_model(m, path, dataset="digits")
    assert ("MaxPool" if pool == "max" else "AveragePool") in [n.op_type for n in proto.graph.node]
    vm = load_model(path)
    if not ARCHS[arch].head:
        assert vm.lipschitz() == 1.0  # the verifier proves the pure net (pooling included) 1-Lipschitz
        check_lipschitz(m, 1.0, budget=256)
    rng = np.random.default_rng(0)
    x = rng.random((6, *shape), dtype=np.float32)
    y = m(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    s = run_certify(path, tmp_path / "d.npz", eps=0.01, out=tmp_path / "c.jsonl", batch_size=4)
    assert s["n"] == 6 and s["clean_accuracy"] == 1.0


def test_planted_pooling_violation_is_caught():
    """A 2× input scaling in front of a pooled LeNet: props find the violation."""

    class Double(nn.Module):
        def forward(self, x):
            return 2.0 * x

    m = nn.Sequential(Double(), _tiny("lenet")).eval()
    with pytest.raises(LipschitzViolation):
        check_lipschitz(m, 1.0, input_shape=(1, 8, 8), budget=512)


def test_planted_residual_violation_is_caught():
    """c = 3 (outside [0, 1)): 3·x − 2·‖x − w‖∞ is up to 5-Lipschitz; props and the verifier see it."""
    torch.manual_seed(0)
    layer = ResidualLinfLinear(6, 0.5)
    layer.c = 3.0
    m = nn.Sequential(nn.Flatten(), layer).eval()
    check_lipschitz(m, 5.0, input_shape=(6,), budget=512)  # the true bound holds
    with pytest.raises(LipschitzViolation):
        check_lipschitz(m, 1.0, input_shape=(6,), budget=1024)
