"""Sum (variadic) has a CROWN step (verify/ops/op_sum.py ``relax``): an ensemble's averaging
(members → Mul by a weight → Sum) no longer stops the back-substitution, so the spec reaches every
member's last layer. Sound at onnxruntime's points (theorem (b)) and at exact rational points."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from test_crown import spec_rows, violations
from verify.bounds import margins
from verify.bounds.spec import margin_lower, spec_lower
from verify.front.model import load_model
from verify.ops.op_sum import Sum

K, D, H, C = 3, 5, 7, 4


def _ensemble(path, rng):
    nodes, inits, outs = [], [], []
    for k in range(K):
        w1, b1 = rng.normal(0, 1, (H, D)), rng.normal(0, 0.3, H)
        w2, b2 = rng.normal(0, 1, (C, H)), rng.normal(0, 0.3, C)
        for name, v in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)):
            inits.append(nh.from_array(v.astype(np.float32), f"{name}_{k}"))
        inits.append(nh.from_array(np.array([1.0 / K], np.float32), f"s_{k}"))
        nodes += [h.make_node("Gemm", ["input", f"w1_{k}", f"b1_{k}"], [f"z_{k}"], transB=1),
                  h.make_node("Relu", [f"z_{k}"], [f"r_{k}"]),
                  h.make_node("Gemm", [f"r_{k}", f"w2_{k}", f"b2_{k}"], [f"y_{k}"], transB=1),
                  h.make_node("Mul", [f"y_{k}", f"s_{k}"], [f"m_{k}"])]
        outs.append(f"m_{k}")
    nodes.append(h.make_node("Sum", outs, ["out"]))
    g = h.make_graph(nodes, "ens", [h.make_tensor_value_info("input", T.FLOAT, ["N", D])],
                     [h.make_tensor_value_info("out", T.FLOAT, ["N", C])], inits)
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), path)
    return path


def _exact(path, x):
    m = onnx.load(str(path))
    w = {i.name: nh.to_array(i).astype(np.float64) for i in m.graph.initializer}
    fr = np.vectorize(lambda v: Fraction(float(v)), otypes=[object])
    xs = fr(x)
    total = 0
    for k in range(K):
        z = np.maximum(fr(w[f"w1_{k}"]) @ xs + fr(w[f"b1_{k}"]), 0)
        total = total + (fr(w[f"w2_{k}"]) @ z + fr(w[f"b2_{k}"])) * fr(w[f"s_{k}"])[0]
    return total


def test_sum_relaxation_is_sound_and_reaches_every_member(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    path = _ensemble(tmp_path / "ens.onnx", rng)
    m = load_model(path)
    x = rng.random((6, D)).astype(np.float32)
    y = np.argmax(m.forward(x), 1)
    lo, hi = margins.input_box(x, 0.05, (0.0, 1.0))
    c = spec_rows(rng, 6, C)
    for ort in (True, False):
        low = spec_lower(m, lo, hi, c, ort=ort)
        if ort:
            assert violations(path, m, lo, hi, c, rng, ort=True, low=low) == 0
        for _ in range(20):  # exact rational points (theorem (a)) inside the box
            i = rng.integers(0, 6)
            pt = lo[i] + (hi[i] - lo[i]) * rng.random(D).astype(np.float32)
            pt = np.clip(pt, lo[i], hi[i])
            val = np.asarray(c[i], dtype=object) @ _exact(path, pt)
            assert all(v >= Fraction(float(b)) for v, b in zip(val, low[i]))
    with_sum = margin_lower(m, lo, hi, y)
    monkeypatch.setattr(Sum, "relax", lambda self, *a: None)
    without = margin_lower(m, lo, hi, y)
    assert np.all(with_sum >= without) and np.mean(with_sum - without) > 0.05
