"""The canonical linf v1 function bodies: bit-exact vs numpy in plain onnxruntime, checker-clean."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from common import linf_spec as ls
from common.errors import ModelError

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _one_node_model(op, x_shape, w, b, attrs, opset=ls.DEFAULT_OPSET):
    ins = ["x", "W"] + (["B"] if b is not None else [])
    inits = [nh.from_array(w, "W")] + ([nh.from_array(b, "B")] if b is not None else [])
    g = h.make_graph(
        [h.make_node(op, ins, ["y"], domain=ls.DOMAIN, **attrs)],
        "g",
        [h.make_tensor_value_info("x", T.FLOAT, ["N", *x_shape[1:]])],
        [h.make_tensor_value_info("y", T.FLOAT, [None] * len(x_shape))],
        inits,
    )
    m = h.make_model(
        g,
        opset_imports=[h.make_opsetid("", opset), h.make_opsetid(ls.DOMAIN, ls.DOMAIN_VERSION)],
        functions=ls.make_linf_functions(opset),
    )
    m.ir_version = 9
    return m


def _run(m, x):
    onnx.checker.check_model(m, full_check=True)
    onnx.shape_inference.infer_shapes(m, strict_mode=True, check_type=True)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _arr(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


@SETTINGS
@given(
    n=st.integers(1, 6),
    d=st.integers(1, 40),
    m=st.integers(1, 9),
    bias=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
    opset=st.sampled_from([ls.MIN_OPSET, 21, ls.MAX_OPSET]),
)
def test_linf_dist_body_bit_exact(n, d, m, bias, seed, opset):
    rng = np.random.default_rng(seed)
    x, w = _arr(rng, (n, d), 3.0), _arr(rng, (m, d), 3.0)
    b = _arr(rng, (m,), 10.0) if bias else None
    y = _run(_one_node_model(ls.LINF_DIST, x.shape, w, b, {}, opset), x)
    ref = ls.linf_dist_reference(x, w, b)
    assert y.dtype == np.float32 and y.shape == (n, m)
    assert np.array_equal(y, ref)
    # independent float64 check: the float32 result is the correctly rounded exact value (+ bias)
    exact = np.abs(x.astype(np.float64)[:, None] - w.astype(np.float64)[None]).max(-1)
    ref32 = exact.astype(np.float32)
    if b is not None:
        ref32 = ref32 + b
    assert np.array_equal(y, ref32)


@st.composite
def conv_cases(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    s = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    dl = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    p = [draw(st.integers(0, 2)) for _ in range(4)]
    omit = draw(st.sets(st.sampled_from(["strides", "pads", "dilations"])))
    s = [1, 1] if "strides" in omit else s
    dl = [1, 1] if "dilations" in omit else dl
    p = [0, 0, 0, 0] if "pads" in omit else p
    hh = draw(st.integers(max(1, dl[0] * (kh - 1) + 1 - p[0] - p[2]), 9))
    ww = draw(st.integers(max(1, dl[1] * (kw - 1) + 1 - p[1] - p[3]), 9))
    return dict(
        n=draw(st.integers(1, 3)), c=draw(st.integers(1, 3)), m=draw(st.integers(1, 5)),
        hw=(hh, ww), k=(kh, kw), attrs=dict(strides=s, pads=p, dilations=dl),
        omit=omit,
        bias=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)),
    )


@SETTINGS
@given(case=conv_cases())
def test_linf_dist_conv_body_bit_exact(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.random((case["n"], case["c"], *case["hw"]), dtype=np.float32)
    w = _arr(rng, (case["m"], case["c"], *case["k"]))
    b = _arr(rng, (case["m"],)) if case["bias"] else None
    attrs = {k: v for k, v in case["attrs"].items() if k not in case["omit"]}
    y = _run(_one_node_model(ls.LINF_DIST_CONV, x.shape, w, b, attrs), x)
    full = {**{k: list(v) for k, v in ls.CONV_DEFAULTS.items()}, **attrs}
    ref = ls.linf_dist_conv_reference(x, w, b, **full)
    assert y.shape == ref.shape
    assert np.array_equal(y, ref)


def test_conv_reference_matches_direct_definition():
    """The numpy conv reference against the spec formula, loop by loop (independent of im2col)."""
    rng = np.random.default_rng(1)
    x, w, b = rng.random((2, 2, 7, 6), dtype=np.float32), _arr(rng, (3, 2, 2, 3)), _arr(rng, (3,))
    s, p, d = (2, 1), (1, 2, 0, 1), (2, 1)
    y = ls.linf_dist_conv_reference(x, w, b, s, p, d)
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])))
    for n in range(2):
        for m in range(3):
            for i in range(y.shape[2]):
                for j in range(y.shape[3]):
                    v = max(
                        abs(float(xp[n, c, i * s[0] + u * d[0], j * s[1] + t * d[1]]) - float(w[m, c, u, t]))
                        for c in range(2) for u in range(2) for t in range(3)
                    )
                    assert y[n, m, i, j] == np.float32(np.float32(v) + b[m])


def _replace_op(nodes, old: str, new: str) -> int:
    count = 0
    for node in nodes:
        if node.op_type == old:
            node.op_type, count = new, count + 1
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                count += _replace_op(a.g.node, old, new)
    return count


def test_canonical_check_accepts_own_and_rejects_tampered():
    for op in ls.OP_TYPES:
        fn = ls.canonical_function(op, 18)
        ls.check_function(fn, 18)
        assert ls.is_canonical_function(fn, 18)
        assert not ls.is_canonical_function(fn, 19)  # opset must match the model's
        bad = onnx.FunctionProto()
        bad.CopyFrom(fn)
        assert _replace_op(bad.node, "ReduceMin", "ReduceMax") == 1  # however deeply nested
        assert not ls.is_canonical_function(bad, 18)
        with pytest.raises(ModelError, match="not the canonical"):
            ls.check_function(bad, 18)


def test_bad_opset_and_unknown_op_are_one_line_errors():
    with pytest.raises(ModelError, match="opsets"):
        ls.linf_dist_function(17)
    with pytest.raises(ModelError, match="unknown op"):
        ls.canonical_function("LinfDistTranspose")


def test_conv_attributes_defaults_and_validation():
    node = h.make_node("LinfDistConv", ["x", "W"], ["y"], domain="linf", strides=[2, 2])
    assert ls.conv_attributes(node) == {"strides": (2, 2), "pads": (0, 0, 0, 0), "dilations": (1, 1)}
    for bad in (dict(strides=[0, 1]), dict(pads=[1, 1]), dict(group=2)):
        with pytest.raises(ModelError):
            ls.conv_attributes(h.make_node("LinfDistConv", ["x", "W"], ["y"], domain="linf", **bad))


def test_third_party_recipe_from_docs_runs():
    """The docs/onnx-ops.md recipe: a hand-built model with LinfDist + Neg checks and runs in ORT."""
    rng = np.random.default_rng(7)
    w, b = _arr(rng, (10, 784)), _arr(rng, (10,))
    node = h.make_node("LinfDist", ["x", "W", "B"], ["z"], domain="linf")
    neg = h.make_node("Neg", ["z"], ["logits"])
    graph = h.make_graph([node, neg], "net", [h.make_tensor_value_info("x", T.FLOAT, ["N", 784])],
                         [h.make_tensor_value_info("logits", T.FLOAT, ["N", 10])],
                         [nh.from_array(w, "W"), nh.from_array(b, "B")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18), h.make_opsetid("linf", 1)],
                         functions=ls.make_linf_functions(18, ["LinfDist"]))
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    x = rng.random((3, 784), dtype=np.float32)
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.array_equal(y, -ls.linf_dist_reference(x, w, b))
