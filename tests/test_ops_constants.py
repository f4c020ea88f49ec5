"""Invalid constants (issue 12, root cause 7): NaN or ±inf in any op's constant inputs or float
attributes, BatchNormalization's var + epsilon <= 0. Every registered op is poisoned in turn (the
valid nodes come from test_ops_registry.CASES): loading, bounding, Lipschitz and forward either
raise a one-line ModelError or give sound results; never another exception."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper as h
from onnx_helpers import make_model, save
from test_ops_registry import CASES

from common.errors import ModelError
from verify.front.model import load_model
from verify.ops._op_list import OPS
from common.runtime import ort_logits, ort_session

BAD = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}


def _variants():
    """(case, what, value, build) for every float constant input and float attribute of each case."""
    out = []
    for case, (shape, nodes, inits, *_rest, linf) in sorted(CASES.items()):
        for name, v in inits.items():
            if np.issubdtype(np.asarray(v).dtype, np.floating):
                out += [(case, f"init {name}", bad) for bad in BAD]
        for k, node in enumerate(nodes):
            for a in node.attribute:
                if a.type in (h.AttributeProto.FLOAT, h.AttributeProto.FLOATS):
                    out += [(case, f"attr {k} {a.name}", bad) for bad in BAD]
    return out


def _poisoned(case, what, bad, tmp_path):
    shape, nodes, inits, _ref, _exact, linf = CASES[case]
    inits = dict(inits)
    nodes = [h.make_node(n.op_type, list(n.input), list(n.output), domain=n.domain or None,
                         **{a.name: h.get_attribute_value(a) for a in n.attribute}) for n in nodes]
    kind, *rest = what.split()
    if kind == "init":
        v = np.array(inits[rest[0]], copy=True)
        v.reshape(-1)[0] = BAD[bad]
        inits[rest[0]] = v
    else:
        node, attr = nodes[int(rest[0])], rest[1]
        for a in node.attribute:
            if a.name == attr:
                if a.type == h.AttributeProto.FLOAT:
                    a.f = BAD[bad]
                else:
                    a.floats[0] = BAD[bad]
    nodes = nodes + [h.make_node("Flatten", ["y"], ["logits"])]
    return save(make_model(nodes, inits, shape, "K", linf_ops=linf), tmp_path, f"{case}.onnx"), shape


VARIANTS = _variants()


def test_every_op_with_float_constants_is_poisoned():
    poisoned = {n.op_type for case, *_ in VARIANTS for n in CASES[case][1]}
    without = {"Abs", "Neg", "Relu", "Tanh", "Sigmoid", "Identity", "Softmax", "MaxPool", "AveragePool", "Flatten",
               "Transpose", "Cast", "Shape", "Gather", "Reshape", "Squeeze", "Unsqueeze", "Slice", "ReduceMax",
               "Concat", "Erf", "Exp", "Gelu", "Sqrt", "ReduceMean", "ReduceSum", "GlobalAveragePool",
               "GlobalMaxPool", "Split", "Expand",
               "ConstantOfShape"}  # its float constant is a tensor attribute: test_constantofshape_value_poisoned  # ops whose cases have no float constant: covered by test_ops_extremes
    assert {t for _, t in OPS} <= poisoned | without


@pytest.mark.parametrize("case,what,bad", VARIANTS, ids=[f"{c}-{w}-{b}".replace(" ", "_") for c, w, b in VARIANTS])
def test_invalid_constant_gives_model_error_or_sound_bounds(tmp_path, case, what, bad):
    p, shape = _poisoned(case, what, bad, tmp_path)
    try:
        m = load_model(p)
    except ModelError as e:
        assert "\n" not in str(e)
        assert bad != "nan" or "NaN" in str(e) or "nan" in str(e).lower()
        return
    assert bad != "nan", "a NaN constant was accepted"
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, *shape)).astype(np.float32)
    try:
        m.lipschitz()
        lo, hi = m.interval(x - np.float32(0.1), x + np.float32(0.1))
    except ModelError:
        return
    pts = np.concatenate([x, x - np.float32(0.1), x + np.float32(0.1)])
    yo = ort_logits(ort_session(p), pts).reshape(3, *lo.shape)
    assert not np.isnan(yo).any() and np.all(lo <= yo) and np.all(yo <= hi)


@pytest.mark.parametrize("var,eps", [(-1.0, 1e-5), (-1e-5, 1e-5), (0.0, 0.0), (1e-45, 0.0), (np.nan, 1e-5)])
def test_batchnorm_variance_must_be_positive(tmp_path, var, eps):
    nodes = [h.make_node("BatchNormalization", ["input", "s", "b", "m", "v"], ["y"], epsilon=eps),
             h.make_node("Flatten", ["y"], ["logits"])]
    one = np.ones(2, np.float32)
    inits = {"s": one * 1e38, "b": one, "m": one, "v": np.array([1.0, var], np.float32)}
    with pytest.raises(ModelError, match="var|NaN|overflow"):
        load_model(save(make_model(nodes, inits, [2, 2, 2], "K"), tmp_path))


@pytest.mark.parametrize("bad", sorted(BAD))
def test_constantofshape_value_poisoned(tmp_path, bad):
    """ConstantOfShape's ``value`` (a tensor attribute): NaN is refused at load; ±inf loads (the op
    declares inf_consts_ok) but bounding the Add it feeds is refused, never a box."""
    nodes = [
        h.make_node("Shape", ["input"], ["s"], start=1),
        h.make_node("ConstantOfShape", ["s"], ["c"], value=h.make_tensor("v", 1, [1], [BAD[bad]])),
        h.make_node("Add", ["input", "c"], ["y"]),
        h.make_node("Flatten", ["y"], ["logits"]),
    ]
    path = save(make_model(nodes, {}, [4], 4), tmp_path)
    if bad == "nan":
        with pytest.raises(ModelError, match="NaN"):
            load_model(path)
        return
    m = load_model(path)
    with pytest.raises(ModelError, match="±inf"):
        m.interval(np.zeros((1, 4), np.float32), np.ones((1, 4), np.float32))
