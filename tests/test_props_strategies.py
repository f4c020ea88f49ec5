"""props.strategies: values are valid by construction (no filtering) and models are what they claim."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from props import strategies as pst
from props.floaterr import forward_with_error

FAST = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FAST
@given(pst.convex_weights(min_size=1, max_size=6))
def test_convex_weights_sum_exactly_to_one_in_float32_any_order(w):
    assert all(v >= 0 for v in w)
    w32 = np.array(w, np.float32)
    assert np.array_equal(w32.astype(np.float64), np.array(w))  # exactly representable
    for order in (w32, w32[::-1], np.sort(w32)):
        acc = np.float32(0)
        for v in order:
            acc = np.float32(acc + v)
        assert acc == np.float32(1.0)
    assert math.fsum(w) == 1.0


def test_convex_weights_shrink_to_a_vertex():
    from hypothesis import find

    w = find(pst.convex_weights(min_size=3, max_size=3), lambda w: True)
    assert sorted(w) == [0.0, 0.0, 1.0]


@FAST
@given(st.data(), st.tuples(st.integers(1, 3), st.integers(1, 4)))
def test_input_boxes_are_valid(data, shape):
    lo, hi = data.draw(pst.input_boxes(shape=shape, min_value=-0.5, max_value=2.0, max_radius=0.3))
    assert lo.shape == hi.shape == shape and lo.dtype == hi.dtype == np.float32
    assert (lo <= hi).all() and (lo >= -0.5).all() and (hi <= 2.0).all()
    assert (hi - lo <= np.float32(0.6) + 1e-6).all()


DATA = np.random.default_rng(0).random((5, 1, 2, 3)).astype(np.float32)


@FAST
@given(pst.input_pairs(near=DATA, max_distance=0.05, min_distance=0.01))
def test_input_pairs_near_data(pair):
    x, xp = pair
    assert x.shape == xp.shape == DATA.shape[1:] and x.dtype == xp.dtype == np.float32
    dist = np.abs(x.astype(np.float64) - xp).max()
    assert 0.01 * (1 - 1e-6) <= dist <= 0.05 * (1 + 1e-6)
    assert ((x >= 0) & (x <= 1) & (xp >= 0) & (xp <= 1)).all()
    near = np.abs(DATA.astype(np.float64) - x).reshape(len(DATA), -1).max(axis=1).min()
    assert near <= 0.05 * (1 + 1e-6)


@pytest.mark.parametrize("make", [
    lambda: pst.input_pairs(near=DATA, max_distance=0.6),
    lambda: pst.input_pairs(near=np.zeros((0, 3)), max_distance=0.1),
    lambda: pst.input_pairs(near=DATA, min_distance=0.2, max_distance=0.1),
    lambda: pst.input_boxes(shape=(2,), min_value=1.0, max_value=0.0),
    lambda: pst.input_boxes(shape=(0,)),
    lambda: pst.convex_weights(min_size=0),
    lambda: pst.convex_weights(min_size=3, max_size=2),
    lambda: pst.convex_weights(bits=25),
    lambda: pst.linf_dist_layers(min_features=0),
    lambda: pst.linf_dist_layers(bias="yes"),
    lambda: pst.linf_dist_conv_layers(max_kernel_size=0),
    lambda: pst.mean_shifts(scale=-1.0),
    lambda: pst.linf_dist_nets(input_shape=(1, 0, 3)),
    lambda: pst.linf_dist_nets(min_classes=1),
    lambda: pst.linf_dist_mlp_nets(max_hidden=0),
    lambda: pst.conv_linf_dist_mlp_nets(max_conv_layers=0),
    lambda: pst.ensembles(mode="average"),
    lambda: pst.ensembles(members=3),
    lambda: pst.lipschitz_violating_nets(kinds=("bogus",)),
    lambda: pst.lipschitz_violating_nets(min_excess=0.0),
    lambda: pst.lipschitz_violating_nets(min_excess=2.0, max_excess=3.0),
])
def test_bad_arguments_raise_invalid_argument_at_definition(make):
    """Hypothesis's style: InvalidArgument when the strategy is defined (no draw needed)."""
    from hypothesis.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        make()


def test_no_argument_takes_a_strategy_or_a_value():
    """The old "value or strategy" arguments are gone: a strategy where a value belongs is refused."""
    from hypothesis.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        pst.linf_dist_nets(input_shape=st.just((1, 3, 3)))
    with pytest.raises(TypeError):
        pst.convex_weights(n=3)  # renamed to min_size / max_size


@FAST
@given(pst.linf_dist_layers(bias=True), pst.input_pairs(near=np.random.default_rng(1).random((4, 8)),
                                                         max_distance=0.2))
def test_linf_layers_are_1_lipschitz_on_pairs_near_data(layer, pair):
    """A direct property on given pairs: ‖f(x) − f(x′)‖∞ ≤ ‖x − x′‖∞ + (float error of both)."""
    n = layer.in_features
    x, xp = (torch.from_numpy(v[:n].copy())[None] for v in pair)
    (y0, e0), (y1, e1) = forward_with_error(layer, x), forward_with_error(layer, xp)
    lhs = (y0.double() - y1.double()).abs().max()
    assert lhs <= (x.double() - xp.double()).abs().max() + e0 + e1


@settings(FAST, max_examples=10)
@given(pst.linf_dist_nets(), pst.linf_dist_mlp_nets(), pst.ensembles())
def test_models_are_eval_float32_p_inf(net, mlp, ens):
    for m in (net, mlp, ens):
        assert not m.training
        assert all(p.dtype == torch.float32 for p in m.parameters())
        assert all(math.isinf(sub.p) for sub in m.modules() if hasattr(sub, "p") and hasattr(sub, "weight"))
    assert math.fsum(float(a) for a in ens.weights) == 1.0


@settings(FAST, max_examples=20)
@given(pst.lipschitz_violating_nets())
def test_planted_models_declare_a_lower_bound_above_one(m):
    assert m.planted_kind in ("scale", "gemm", "finite_p", "weights")
    assert m.planted_lipschitz >= 1.1 - 1e-6
    assert not m.training


def test_planted_does_not_import_strategies():
    """The cycle props/_planted.py ↔ props/strategies.py is gone: shared pieces live in props/_base.py."""
    import ast
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "props" / "_planted.py"
    imported = {n.module for n in ast.walk(ast.parse(src.read_text())) if isinstance(n, ast.ImportFrom)}
    assert "props.strategies" not in imported and "props._base" in imported
