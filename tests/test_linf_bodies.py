"""linf::LinfDist functions whose body is correct but not byte-identical to ours (issue 13).

onnxruntime runs a ``linf`` function's body (it has no kernel in that domain), so the loader
inlines any non-canonical body and verifies what runs: an ℓ∞-dist body written with standard ops
fuses back into linf::LinfDist (verify/front/fuse.py), giving the same Lipschitz bound and the same
certify results as the canonical file; a wrong body is verified as what it computes.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from test_import import ort_run, pure_linf_net, save
from verify.certify.certifier import CertifyConfig, certify_batch
from common.errors import ModelError
from verify.front.model import load_model

OPSET = 18
D = 12


def _c(name, values):
    return h.make_node("Constant", [], [name], value=h.make_tensor(name + "_v", T.INT64, [len(values)], values))


def _natural():
    """Y = max_d |X - W| + B, the way a user writes it: Unsqueeze, Sub, Abs, ReduceMax, Add."""
    return [_c("ax1", [1]), _c("ax2", [2]), h.make_node("Unsqueeze", ["X", "ax1"], ["U"]),
            h.make_node("Sub", ["U", "W"], ["S"]), h.make_node("Abs", ["S"], ["A"]),
            h.make_node("ReduceMax", ["A", "ax2"], ["R"], keepdims=0), h.make_node("Add", ["R", "B"], ["Y"])]


def _reordered():
    """Constants last-minute, Sub(W, U) instead of Sub(U, W), Add(B, R), negative axes."""
    return [_c("axm2", [-2]), h.make_node("Unsqueeze", ["X", "axm2"], ["U"]),
            h.make_node("Sub", ["W", "U"], ["S"]), h.make_node("Abs", ["S"], ["A"]), _c("axm1", [-1]),
            h.make_node("ReduceMax", ["A", "axm1"], ["R"], keepdims=0), h.make_node("Add", ["B", "R"], ["Y"])]


def _max_over_split():
    """Max of the ReduceMax of two Slices of |X - W| along d (halves of different sizes)."""
    return [_c("ax1", [1]), _c("ax2", [2]), _c("z", [0]), _c("k", [5]), _c("big", [2**62]),
            h.make_node("Unsqueeze", ["X", "ax1"], ["U"]), h.make_node("Sub", ["U", "W"], ["S"]),
            h.make_node("Abs", ["S"], ["A"]),
            h.make_node("Slice", ["A", "z", "k", "ax2"], ["A1"]),
            h.make_node("Slice", ["A", "k", "big", "ax2"], ["A2"]),
            h.make_node("ReduceMax", ["A1", "ax2"], ["R1"], keepdims=0),
            h.make_node("ReduceMax", ["A2", "ax2"], ["R2"], keepdims=0),
            h.make_node("Max", ["R2", "R1"], ["R"]), h.make_node("Add", ["R", "B"], ["Y"])]


def _neg_add():
    """|Neg(U + Neg(W))|: the subtraction written as an addition of -W, then negated."""
    return [_c("ax1", [1]), _c("ax2", [2]), h.make_node("Neg", ["W"], ["NW"]),
            h.make_node("Unsqueeze", ["X", "ax1"], ["U"]), h.make_node("Add", ["U", "NW"], ["S"]),
            h.make_node("Neg", ["S"], ["NS"]), h.make_node("Abs", ["NS"], ["A"]),
            h.make_node("ReduceMax", ["A", "ax2"], ["R"], keepdims=0), h.make_node("Add", ["R", "B"], ["Y"])]


def _identities():
    """Identity copies between every step."""
    return [_c("ax1", [1]), _c("ax2", [2]), h.make_node("Identity", ["X"], ["X1"]),
            h.make_node("Unsqueeze", ["X1", "ax1"], ["U0"]), h.make_node("Identity", ["U0"], ["U"]),
            h.make_node("Sub", ["U", "W"], ["S0"]), h.make_node("Identity", ["S0"], ["S"]),
            h.make_node("Abs", ["S"], ["A0"]), h.make_node("Identity", ["A0"], ["A"]),
            h.make_node("ReduceMax", ["A", "ax2"], ["R0"], keepdims=0), h.make_node("Identity", ["R0"], ["R"]),
            h.make_node("Add", ["R", "B"], ["Y"])]


def _wrong_no_abs():
    """max_d (X - W) + B: no Abs, so NOT the ℓ∞ distance."""
    return [_c("ax1", [1]), _c("ax2", [2]), h.make_node("Unsqueeze", ["X", "ax1"], ["U"]),
            h.make_node("Sub", ["U", "W"], ["S"]),
            h.make_node("ReduceMax", ["S", "ax2"], ["R"], keepdims=0), h.make_node("Add", ["R", "B"], ["Y"])]


def _wrong_partial_split():
    """Max over the first 5 coordinates only: a slice that does not cover every d."""
    body = [n for n in _max_over_split() if n.output[0] not in ("A2", "R2", "R", "Y")]
    return body + [h.make_node("Identity", ["R1"], ["R"]), h.make_node("Add", ["R", "B"], ["Y"])]


def _wrong_permuted_rows():
    """|X - W| with the rows of W reversed (a Slice with step -1 on axis 1, shape unchanged) before
    ReduceMax: a selection the matcher must not take for one along d."""
    return [_c("ax1", [1]), _c("ax2", [2]), _c("m1", [-1]), _c("low", [-2**62]),
            h.make_node("Unsqueeze", ["X", "ax1"], ["U"]),
            h.make_node("Sub", ["U", "W"], ["S"]), h.make_node("Abs", ["S"], ["A"]),
            h.make_node("Slice", ["A", "m1", "low", "ax1", "m1"], ["P"]),
            h.make_node("ReduceMax", ["P", "ax2"], ["R"], keepdims=0), h.make_node("Add", ["R", "B"], ["Y"])]


GOOD = {"reordered": _reordered, "max_over_split": _max_over_split, "neg_add": _neg_add,
        "identities": _identities, "natural": _natural}
WRONG = {"no_abs": _wrong_no_abs, "partial_split": _wrong_partial_split, "permuted_rows": _wrong_permuted_rows}


def _with_body(body, seed=3):
    """pure_linf_net (every layer with a bias) whose LinfDist function body is ``body``."""
    m = pure_linf_net(np.random.default_rng(seed), d=D)
    assert [f.name for f in m.functions] == ["LinfDist"]
    f = h.make_function("linf", "LinfDist", ["X", "W", "B"], ["Y"], body, [h.make_opsetid("", OPSET)])
    del m.functions[:]
    m.functions.append(f)
    return m


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("canon")
    p = save(pure_linf_net(np.random.default_rng(3), d=D), d)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, D)).astype(np.float32)
    m = load_model(p)
    return p, m, x


def _certify(m, x, eps=0.3):
    y = np.argmax(m.forward(x), axis=1)
    y[::3] = (y[::3] + 1) % m.num_classes
    return certify_batch(m, x, y, CertifyConfig(eps, "auto", (-10.0, 10.0)))


@pytest.mark.parametrize("name", sorted(GOOD))
def test_equivalent_body_fuses_back_and_certifies_the_same(name, reference, tmp_path):
    p0, m0, x = reference
    p = save(_with_body(GOOD[name]()), tmp_path)
    m = load_model(p)
    assert [op.op_type for op in m.graph.nodes] == [op.op_type for op in m0.graph.nodes]
    assert sum(op.op_type == "LinfDist" for op in m.graph.nodes) == 3
    for a, b in zip(m.graph.nodes, m0.graph.nodes):
        for i in a.consts:
            assert np.array_equal(a.consts[i], b.consts[i])
    assert m.lipschitz() == m0.lipschitz() == 1.0
    assert np.array_equal(m.forward(x), ort_run(p, x))
    assert np.array_equal(ort_run(p, x), ort_run(p0, x))  # the body is equivalent in onnxruntime too
    r, r0 = _certify(m, x), _certify(m0, x)
    assert r.status == r0.status and np.array_equal(r.radius, r0.radius)
    assert np.array_equal(r.margin_lower, r0.margin_lower)
    assert "certified" in r.status and set(r.status) != {"certified"}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_body_is_verified_as_what_it_computes(name, reference, tmp_path):
    p0, m0, x = reference
    p = save(_with_body(WRONG[name]()), tmp_path)
    m = load_model(p)
    assert not any(op.op_type == "LinfDist" for op in m.graph.nodes)
    y = ort_run(p, x)
    assert np.array_equal(m.forward(x), y) and not np.array_equal(y, ort_run(p0, x))
    rng = np.random.default_rng(1)
    lo, hi = m.interval(x - np.float32(0.2), x + np.float32(0.2))
    for _ in range(10):
        xs = (x + rng.uniform(-0.2, 0.2, x.shape)).astype(np.float32)
        ys = ort_run(p, xs)
        assert np.all(lo <= ys) and np.all(ys <= hi)


def test_unknown_linf_op_still_refused(tmp_path):
    m = _with_body(_natural())
    m.functions[0].name = "LinfFoo"
    for n in m.graph.node:
        if n.domain == "linf":
            n.op_type = "LinfFoo"
    with pytest.raises(ModelError, match="unknown op linf::LinfFoo"):
        load_model(save(m, tmp_path))
