"""Third-party ℓ∞-dist layers written with standard ops (Unsqueeze/Sub/Abs/ReduceMax/Add) are fused
into LinfDist and certify exactly like linf::LinfDist."""

from __future__ import annotations


import numpy as np
import pytest
from onnx import helper as h

from onnx_helpers import make_model, ort_run, save
from verify.front.model import load_model

N = h.make_node


def _fused_style_model(rng, *, w_first=False, w3d=False, axes_neg=False, opset=18, bias=True):
    d, widths, k = 6, [5], 4
    inits, nodes, prev, cur = {}, [], d, "input"
    for i, w in enumerate(widths + [k]):
        W = rng.normal(size=(w, prev)).astype(np.float32)
        inits[f"W{i}"] = W[None] if w3d else W
        ax_u, ax_r = ([-2], [-1]) if axes_neg else ([1], [2])
        if opset >= 13:
            inits[f"au{i}"] = np.array(ax_u, np.int64)
            nodes.append(N("Unsqueeze", [cur, f"au{i}"], [f"u{i}"]))
        else:
            nodes.append(N("Unsqueeze", [cur], [f"u{i}"], axes=ax_u))
        nodes.append(N("Sub", [f"W{i}", f"u{i}"] if w_first else [f"u{i}", f"W{i}"], [f"s{i}"]))
        nodes.append(N("Abs", [f"s{i}"], [f"a{i}"]))
        if opset >= 18:
            inits[f"ar{i}"] = np.array(ax_r, np.int64)
            nodes.append(N("ReduceMax", [f"a{i}", f"ar{i}"], [f"r{i}"], keepdims=0))
        else:
            nodes.append(N("ReduceMax", [f"a{i}"], [f"r{i}"], axes=ax_r, keepdims=0))
        out = f"h{i}"
        if bias:
            inits[f"B{i}"] = rng.normal(size=w).astype(np.float32)
            nodes.append(N("Add", [f"r{i}", f"B{i}"], [out]))
        else:
            nodes.append(N("Identity", [f"r{i}"], [out]))
        cur, prev = out, w
    nodes.append(N("Neg", [cur], ["logits"]))
    std = make_model(nodes, inits, [d], k, opset=opset)
    linf_nodes = []
    prev, cur = "input", None
    linit = {}
    for i in range(len(widths) + 1):
        W = inits[f"W{i}"][0] if w3d else inits[f"W{i}"]
        linit[f"W{i}"] = W
        ins = [prev, f"W{i}"]
        if bias:
            linit[f"B{i}"] = inits[f"B{i}"]
            ins.append(f"B{i}")
        linf_nodes.append(N("LinfDist", ins, [f"h{i}"], domain="linf"))
        prev = f"h{i}"
    linf_nodes.append(N("Neg", [prev], ["logits"]))
    ours = make_model(linf_nodes, linit, [d], k, linf_ops=["LinfDist"], opset=max(opset, 18))
    return std, ours


@pytest.mark.parametrize(
    "variant",
    [dict(), dict(w_first=True), dict(w3d=True), dict(axes_neg=True), dict(opset=13), dict(bias=False)],
)
def test_fused_standard_op_layers_certify_exactly_like_linfdist(variant, tmp_path):
    rng = np.random.default_rng(9)
    std, ours = _fused_style_model(rng, **variant)
    ps, po = save(std, tmp_path, "std.onnx"), save(ours, tmp_path, "ours.onnx")
    ms, mo = load_model(ps), load_model(po)
    assert [n.op_type for n in ms.graph.nodes if n.op_type == "LinfDist"] == ["LinfDist", "LinfDist"]
    x = rng.random((7, 6), dtype=np.float32)
    assert np.array_equal(ms.forward(x), ort_run(ps, x))
    assert np.array_equal(ort_run(ps, x), ort_run(po, x))
    for eps in (0.0, 0.01, 0.3):
        ls, hs = ms.interval(x - np.float32(eps), x + np.float32(eps))
        lo, ho = mo.interval(x - np.float32(eps), x + np.float32(eps))
        assert np.array_equal(ls, lo) and np.array_equal(hs, ho)
    assert ms.lipschitz() == mo.lipschitz() == 1.0


def test_no_fusion_when_intermediate_is_shared(tmp_path):
    rng = np.random.default_rng(2)
    W = rng.normal(size=(3, 4)).astype(np.float32)
    nodes = [
        N("Unsqueeze", ["input", "au"], ["u"]),
        N("Sub", ["u", "W"], ["s"]),
        N("Abs", ["s"], ["a"]),
        N("ReduceMax", ["a", "ar"], ["r"], keepdims=0),
        N("ReduceMax", ["s", "ar"], ["r2"], keepdims=0),  # s has a second consumer
        N("Add", ["r", "r2"], ["logits"]),
    ]
    inits = {"W": W, "au": np.array([1], np.int64), "ar": np.array([2], np.int64)}
    p = save(make_model(nodes, inits, [4], 3), tmp_path)
    m = load_model(p)
    assert "LinfDist" not in [n.op_type for n in m.graph.nodes]
    x = rng.random((4, 4), dtype=np.float32)
    assert np.array_equal(m.forward(x), ort_run(p, x))
    lo, hi = m.interval(x - np.float32(0.1), x + np.float32(0.1))
    y = ort_run(p, x)
    assert np.all(lo <= y) and np.all(y <= hi)
