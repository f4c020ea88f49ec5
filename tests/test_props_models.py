"""Issue 7 must-show 1: every layer type, mean shift at eval, whole nets and convex ensembles pass as
1-Lipschitz through props; planted non-Lipschitz parts are flagged by the static bound of the
verifier and found by the search."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from props import strategies as pst
from props._planted import l1_layer_onnx, plant_onnx_input_scaling, planted_finite_p, planted_gemm, planted_scale
from props.floaterr import forward_with_error
from props.lipschitz import LipschitzViolation, check_lipschitz, search_lipschitz
from common.errors import ModelError

SETTINGS = settings(max_examples=8, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BUDGET = 512


def _passes(model, L, input_shape=None, budget=BUDGET):
    r = check_lipschitz(model, L, budget=budget, input_shape=input_shape)
    assert r.rigorous, r.notes  # the float tolerance was proven, not guessed
    assert r.ratio_lower <= L
    return r


@SETTINGS
@given(pst.linf_dist_layers())
def test_linf_dist_linear_layers_are_1_lipschitz(layer):
    r = _passes(layer, 1.0)
    assert r.ratio > 0.5  # the search is not vacuous: a unit has slope 1 almost everywhere


@settings(SETTINGS, max_examples=5)
@given(pst.linf_dist_conv_layers(), st.integers(3, 5), st.integers(3, 5))
def test_linf_dist_conv_layers_are_1_lipschitz(layer, h, w):
    _passes(layer, 1.0, input_shape=(layer.in_channels, h, w))


@SETTINGS
@given(pst.mean_shifts())
def test_mean_shift_at_eval_is_1_lipschitz(ms):
    r = _passes(ms, 1.0, input_shape=(ms.num_features,))
    assert r.ratio == pytest.approx(1.0, abs=1e-3)  # a translation: every pair has ratio 1


def test_mean_shift_in_training_mode_is_refused():
    from nets.layers import MeanShift

    with pytest.raises(ModelError, match="eval"):
        search_lipschitz(MeanShift(3).train(), input_shape=(3,), budget=64)


@SETTINGS
@given(st.tuples(st.just(1), st.integers(1, 3), st.integers(1, 3)).flatmap(lambda s: pst.linf_dist_nets(input_shape=s)))
def test_pure_nets_are_1_lipschitz(model):
    r = _passes(model, 1.0)
    assert r.ratio > 0.9  # a pure net has slope exactly 1 a.e.: the search gets there


@SETTINGS
@given(pst.linf_dist_mlp_nets())
def test_mlp_nets_respect_the_head_bound(model):
    w1, w2 = model.head[0].weight.detach().double(), model.head[2].weight.detach().double()
    bound = float(w1.abs().sum(1).max() * w2.abs().sum(1).max()) * (1 + 1e-9)
    _passes(model, bound)


@settings(SETTINGS, max_examples=4)
@given(pst.conv_linf_dist_mlp_nets())
def test_conv_mlp_nets_respect_the_head_bound(model):
    w1, w2 = model.head[0].weight.detach().double(), model.head[2].weight.detach().double()
    bound = float(w1.abs().sum(1).max() * w2.abs().sum(1).max()) * (1 + 1e-9)
    _passes(model, bound)  # (identity init + tanh often saturates: the ratio found may be ~0)


@settings(SETTINGS, max_examples=6)
@given(pst.ensembles(mode="fusion"))
def test_fusion_ensembles_are_1_lipschitz(ens):
    _passes(ens, 1.0)


@settings(SETTINGS, max_examples=4)
@given(pst.ensembles(mode="voting", max_size=2))
def test_voting_ensembles_are_half_lipschitz(ens):
    _passes(ens, 0.5)


def test_softmax_half_constant_is_attained():
    """softmax of (x, −x): s = σ(2x), ds/dx = 2·s(1 − s) = ½ at x = 0: the ½ of voting is tight,
    and a claim of ¼ is caught."""

    class TwoLogitVote(nn.Module):
        def forward(self, x):
            return torch.softmax(torch.cat([x, -x], dim=1), dim=1)

    with pytest.raises(LipschitzViolation):
        check_lipschitz(TwoLogitVote(), 0.25, input_shape=(1,), domain=(-1.0, 1.0), budget=BUDGET)
    r = check_lipschitz(TwoLogitVote(), 0.5, input_shape=(1,), domain=(-1.0, 1.0), budget=BUDGET)
    assert 0.45 < r.ratio <= 0.5 + 1e-4


def test_non_convex_ensemble_weights_are_refused_by_nets():
    from nets.ensemble import ConvexEnsemble

    m = planted_scale(3, 1, 2, 2, 1.0, 0)[1]
    with pytest.raises(ModelError):
        ConvexEnsemble([m, m], [0.9, 0.6])
    with pytest.raises(ModelError):
        ConvexEnsemble([m, m], [1.5, -0.5])


# ---------------------------------------------------------------- planted violations: static bound + search


def _export(model, path):
    export = pytest.importorskip("export.onnx_export")
    export.export_model(model, path)
    return path


def _static(path) -> float:
    from verify.front.model import load_model
    return load_model(path).lipschitz()


def test_gemm_in_the_middle_flagged_and_found(tmp_path):
    m = planted_gemm(4, 2, 3, 1.5, 0)  # ‖W‖∞ = 1.5 between ℓ∞-dist layers
    path = _export(m, tmp_path / "gemm.onnx")
    assert _static(path) >= 1.5 - 1e-6
    with pytest.raises(LipschitzViolation) as info:
        check_lipschitz(path, 1.0, budget=1024, save_dir=tmp_path)
    res = info.value.result
    assert res.rigorous and 1.0 < res.ratio_lower <= m.planted_lipschitz * (1 + 1e-5)
    assert "replay(" in str(info.value) and "gemm.onnx" in str(info.value)
    # the torch module and its export agree
    with pytest.raises(LipschitzViolation):
        check_lipschitz(m, 1.0, budget=1024, save_dir=tmp_path)


def test_input_scaling_flagged_and_found(tmp_path):
    g = planted_scale(4, 2, 6, 3, 1.0, 1)[1]  # the pure net inside, 1-Lipschitz
    good = _export(g, tmp_path / "good.onnx")
    assert _static(good) <= 1.0
    _passes(str(good), 1.0)
    bad = tmp_path / "scaled.onnx"
    plant_onnx_input_scaling(good, bad, 1.5)
    assert _static(bad) >= 1.5
    with pytest.raises(LipschitzViolation) as info:
        check_lipschitz(bad, 1.0, budget=1024, save_dir=tmp_path)
    assert 1.0 < info.value.result.ratio_lower <= 1.5 + 1e-5


def test_non_convex_weights_flagged_and_found(tmp_path):
    from props._planted import planted_weights

    ens = planted_weights(4, 2, 5, 3, [0.9, 0.6], 2)
    path = _export(ens, tmp_path / "ens.onnx")
    assert _static(path) >= 1.5 - 1e-6
    with pytest.raises(LipschitzViolation):
        check_lipschitz(path, 1.0, budget=1024, save_dir=tmp_path)


def test_finite_p_layer_in_p_inf_model_flagged_and_found(tmp_path):
    """ℓp with p < ∞ is not 1-Lipschitz in ℓ∞: ‖x − w‖_p changes by up to D^{1/p}·δ.
    The exporter refuses p < ∞; a p = 1 layer written in standard ops gets the static bound D."""
    m = planted_finite_p(6, 3, 4.0, 0)
    with pytest.raises(ModelError, match="p = "):
        _export(m, tmp_path / "p4.onnx")
    with pytest.raises(LipschitzViolation) as info:
        check_lipschitz(m, 1.0, budget=2048, save_dir=tmp_path)
    assert info.value.result.ratio_lower > 1.2  # sup = 6^(1/4) ≈ 1.565
    assert m.trunk[-1].p == 4.0 and math.isinf(m.trunk[1].p)  # the search restored every p
    path = tmp_path / "l1.onnx"
    l1_layer_onnx(path, np.random.default_rng(0).uniform(0.3, 0.7, (3, 5)))
    assert _static(path) >= 5.0
    with pytest.raises(LipschitzViolation) as info:
        check_lipschitz(path, 1.0, budget=BUDGET, save_dir=tmp_path)
    assert info.value.result.ratio_lower > 4.9


@settings(SETTINGS, max_examples=10)
@given(st.one_of(pst.linf_dist_nets(), pst.ensembles(), pst.linf_dist_mlp_nets()), st.integers(0, 1000))
def test_error_bound_holds_against_float64_for_strategy_models(m, seed):
    """The float32 error bound of props.floaterr contains the float64 evaluation (≈ exact)."""
    rng = torch.Generator().manual_seed(seed)
    if True:
        x = torch.rand(16, 1, 3, 3, generator=rng)
        y, err = forward_with_error(m, x)
        ref = m.double()(x.double())
        m.float()
        gap = (y.double() - ref).abs().reshape(16, -1).amax(1)
        assert (gap <= err + 1e-12).all()


@settings(SETTINGS, max_examples=4)
@given(st.one_of(pst.lipschitz_violating_nets(kinds=("gemm", "weights")),
                 pst.linf_dist_nets(), pst.ensembles(mode="fusion")))
def test_two_witnesses_bracket_the_truth(tmp_path_factory, model):
    """search lower bound ≤ exact Lipschitz constant ≤ verifier's static bound, on the exported file;
    for planted models the static bound is at least the proven planted constant."""
    path = _export(model, tmp_path_factory.mktemp("bracket") / "m.onnx")
    static = _static(path)
    r = search_lipschitz(path, budget=BUDGET)
    assert r.rigorous and r.ratio_lower <= static
    planted = getattr(model, "planted_lipschitz", None)
    if planted is not None:
        assert static >= planted * (1 - 1e-6) and static > 1.0
    else:
        assert static <= 1.0 + 1e-6


@settings(SETTINGS, max_examples=3)
@given(pst.linf_dist_nets(input_shape=(1, 2, 3)), st.data())
def test_interval_width_of_1_lipschitz_net_is_at_most_box_width(tmp_path_factory, model, data):
    """A consequence of 1-Lipschitzness the verifier's IBP keeps for pure ℓ∞-dist nets: every output
    interval is at most as wide as the input box (plus outward rounding)."""
    from verify.front.model import load_model

    path = _export(model, tmp_path_factory.mktemp("boxes") / "m.onnx")
    vm = load_model(path)
    lo, hi = data.draw(pst.input_boxes(shape=(1, 2, 3), max_radius=0.2))
    lo_out, hi_out = vm.interval(lo[None], hi[None])
    width_in = float(np.max(hi.astype(np.float64) - lo))
    assert (hi_out.astype(np.float64) - lo_out <= width_in + 1e-4).all()
    y = model(torch.from_numpy(lo[None])).detach().numpy()
    assert (lo_out <= y).all() and (y <= hi_out).all()
