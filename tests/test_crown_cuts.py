"""CROWN's final bound is the best of stopping the back-substitution after each op (crown.py
``back_substitute(cuts=True)``): never looser than the interval bound of the output, sound at
onnxruntime's and exact points. The case: a relaxation looser than the box it relaxes (Tanh over a
saturated box), where the plain back-substitution lost to intervals."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from test_crown import violations
from verify.bounds import crown
from verify.bounds.linear import Ctx
from verify.front.model import load_model


def _tanh_net(path, rng):
    w = rng.normal(0, 3.0, size=(6, 4)).astype(np.float32)
    b = rng.normal(0, 0.5, size=6).astype(np.float32)
    g = h.make_graph(
        [h.make_node("Gemm", ["input", "w", "b"], ["z"], transB=1), h.make_node("Tanh", ["z"], ["y"])],
        "tanh", [h.make_tensor_value_info("input", T.FLOAT, ["N", 4])],
        [h.make_tensor_value_info("y", T.FLOAT, ["N", 6])], [nh.from_array(w, "w"), nh.from_array(b, "b")])
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), path)
    return path


def test_cut_points_keep_crown_at_least_as_tight_as_the_output_box(tmp_path):
    rng = np.random.default_rng(0)
    path = _tanh_net(tmp_path / "tanh.onnx", rng)
    m = load_model(path)
    x = rng.random((8, 4)).astype(np.float32)
    lo, hi = x - 0.5, x + 0.5
    c = np.broadcast_to(np.eye(6), (8, 6, 6)).copy()
    for ort in (False, True):
        ctx = Ctx(ort)
        boxes = crown.tensor_boxes(m.graph, lo, hi, ctx)
        out = boxes.np[m.graph.output_name]
        plain = crown.back_substitute(m.graph, boxes, m.graph.output_name, crown.t64(c), ctx).numpy()
        cut = crown.spec_lower(m.graph, lo, hi, c, ctx)
        assert np.any(plain < out.lo - 1e-3)  # the relaxation alone is looser than the box here
        assert np.all(cut >= out.lo.astype(np.float64) - 1e-9)  # the cut at the output is the box
        assert np.all(cut >= plain)
        if ort:  # onnxruntime's points bound theorem (b); (a) is the exact tanh (test_relax_nonlinear_ops)
            assert violations(path, m, lo, hi, c, rng, ort=ort, low=cut) == 0
