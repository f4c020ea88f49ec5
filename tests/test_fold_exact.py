"""Constant folding is exact (issue 12, root cause 6): theorem (a) is about exact real arithmetic on
the stored weights, so a constant subgraph is folded only when its float32 value is provably the
exact value; otherwise the nodes stay in the graph and are bounded from point boxes, so the box holds
both the exact real value and onnxruntime's float32 value."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto as T
from onnx import helper as h
from onnx_helpers import make_model, save

from common.errors import ModelError
from verify.front.model import load_model
from common.runtime import ort_logits, ort_session

N = h.make_node
f32 = np.float32


def _check(path, x, exact_value):
    """The box of the degenerate input box [x, x] holds the exact real value and onnxruntime's."""
    m = load_model(path)
    x = np.array([[x]], np.float32)
    lo, hi = m.interval(x, x)
    ort = ort_logits(ort_session(path), x)
    assert Fraction(float(lo[0, 0])) <= exact_value <= Fraction(float(hi[0, 0])), (lo, hi, exact_value)
    assert lo[0, 0] <= ort[0, 0] <= hi[0, 0], (lo, hi, ort)
    return m


def test_rounded_constant_arithmetic_is_not_folded_in_float32(tmp_path):
    """(1 + 2^-30 - 1) * 2^30 is 1 in the reals, 0 in float32; logits = x + that."""
    nodes = [N("Add", ["one", "tiny"], ["u"]), N("Sub", ["u", "one"], ["v"]), N("Mul", ["v", "s"], ["w"]),
             N("Add", ["input", "w"], ["logits"])]
    inits = {"one": f32(1.0), "tiny": f32(2.0**-30), "s": f32(2.0**30)}
    p = save(make_model(nodes, inits, [1], 1), tmp_path)
    assert ort_logits(ort_session(p), np.zeros((1, 1), np.float32))[0, 0] == 0.0  # float32 says 0
    m = _check(p, 0.0, Fraction(1))
    assert [op.op_type for op in m.graph.nodes] == ["Add", "Sub", "Mul", "Add"]  # nothing folded


def test_rounded_int_to_float_cast_is_not_folded(tmp_path):
    """Cast(2^53 + 1 -> float32) - 2^53: exact 1, float32 0 (and float64 would round it too)."""
    nodes = [N("Cast", ["k"], ["kf"], to=T.FLOAT), N("Sub", ["kf", "p"], ["d"]), N("Add", ["input", "d"], ["logits"])]
    inits = {"k": np.array(2**53 + 1, np.int64), "p": f32(2.0**53)}
    _check(save(make_model(nodes, inits, [1], 1), tmp_path), 3.0, Fraction(4))


def test_exact_constant_arithmetic_still_folds(tmp_path):
    """W * 0.5, a sum that is exact, integer shape arithmetic and an in-range cast fold away."""
    w = np.array([[1.0, -2.0], [3.0, 0.25]], np.float32)
    nodes = [N("Mul", ["W0", "half"], ["W1"]), N("Add", ["W1", "zero"], ["W"]), N("Gemm", ["input", "W"], ["g"]),
             N("Add", ["two", "three"], ["five"]), N("Sub", ["five", "three"], ["two_i"]),
             N("Concat", ["m1", "two_i"], ["shape"], axis=0), N("Cast", ["shape"], ["shape32"], to=T.INT32),
             N("Cast", ["shape32"], ["shape64"], to=T.INT64), N("Reshape", ["g", "shape64"], ["logits"])]
    inits = {"W0": w, "half": f32(0.5), "zero": np.zeros((2, 2), np.float32),
             "two": np.array([2], np.int64), "three": np.array([3], np.int64),
             "m1": np.array([-1], np.int64)}
    p = save(make_model(nodes, inits, [2], 2), tmp_path)
    m = load_model(p)
    assert [op.op_type for op in m.graph.nodes] == ["Gemm", "Reshape"]
    assert np.array_equal(m.graph.nodes[0].const(1), w * 0.5)
    x = np.array([[1.0, 2.0]], np.float32)
    assert np.array_equal(m.forward(x), ort_logits(ort_session(p), x))


def test_weight_computed_with_rounding_is_refused_with_a_reason(tmp_path):
    nodes = [N("Mul", ["W0", "tenth"], ["W"]), N("Gemm", ["input", "W"], ["logits"])]
    inits = {"W0": np.array([[1.0, 3.0], [7.0, 1.0]], np.float32), "tenth": f32(0.1)}
    with pytest.raises(ModelError, match="computed from constants with rounding"):
        load_model(save(make_model(nodes, inits, [2], 2), tmp_path))


@pytest.mark.parametrize("nodes,inits", [
    ([N("Add", ["big", "one"], ["k"])], {"big": np.array([2**63 - 1], np.int64), "one": np.array([1], np.int64)}),
    ([N("Mul", ["big", "big"], ["k"])], {"big": np.array([2**40], np.int64)}),
    ([N("Cast", ["f"], ["k"], to=T.INT32)], {"f": np.array([3e9], np.float32)}),
], ids=["add_wraps", "mul_wraps", "cast_out_of_range"])
def test_integer_constants_that_wrap_are_refused(tmp_path, nodes, inits):
    nodes = nodes + [N("Cast", ["k"], ["kf"], to=T.FLOAT), N("Add", ["input", "kf"], ["logits"])]
    with pytest.raises(ModelError, match="overflow|range"):
        load_model(save(make_model(nodes, inits, [1], 1), tmp_path))


_VALS = [1.0, -1.0, 2.0**-30, 2.0**30, 0.5, 3.0, 0.1, -7.0, 1e-45, 1e30, 2.0**-24]
_EXACT = {"Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mul": lambda a, b: a * b,
          "Div": lambda a, b: a / b}


def _chain_property(tmp_path, consts, steps):
    """Constants c0..c3, three random Add/Sub/Mul/Div steps on them, logits = x + last: the box at
    x = 0.25 holds the exact rational value and onnxruntime's, or the sample is refused."""
    inits = {f"c{i}": f32(v) for i, v in enumerate(consts)}
    exact = {k: Fraction(float(v)) for k, v in inits.items()}
    names, nodes = list(inits), []
    for j, (op, ia, ib) in enumerate(steps):
        a, b = names[ia % len(names)], names[ib % len(names)]
        if op == "Div" and exact[b] == 0:
            return
        nodes.append(N(op, [a, b], [f"t{j}"]))
        exact[f"t{j}"] = _EXACT[op](exact[a], exact[b])
        names.append(f"t{j}")
    nodes.append(N("Add", ["input", names[-1]], ["logits"]))
    p = save(make_model(nodes, inits, [1], 1), tmp_path)
    try:
        _check(p, 0.25, Fraction(1, 4) + exact[names[-1]])
    except ModelError:
        pass  # refused (e.g. an overflowed constant reaching Add): unknown, never wrong


_chain_strategy = dict(
    consts=st.lists(st.sampled_from(_VALS).flatmap(lambda v: st.sampled_from([v, -v])), min_size=4, max_size=4),
    steps=st.lists(st.tuples(st.sampled_from(sorted(_EXACT)), st.integers(0, 6), st.integers(0, 6)),
                   min_size=3, max_size=3),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**_chain_strategy)
def test_constant_chains_hold_exact_and_onnxruntime_values(tmp_path, consts, steps):
    _chain_property(tmp_path, consts, steps)


@pytest.mark.slow
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**_chain_strategy)
def test_constant_chains_hold_exact_and_onnxruntime_values_slow(tmp_path, consts, steps):
    _chain_property(tmp_path, consts, steps)
