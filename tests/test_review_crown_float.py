"""CROWN's onnxruntime error charge for Gemm(alpha): onnxruntime computes alpha · fl(A·B), so the
absolute error of products that underflow in float32 is multiplied by |alpha| (the interval bound of
verify/ops/_affine.py knew it; verify/bounds/linear.affine_bias did not: found by
tests/test_fuzz_regressions.py::test_gemm_alpha_scales_underflowed_products once the fuzzer checked
the linear bounds)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from certify_helpers import ort_logits
from verify.bounds.spec import spec_lower
from verify.front.model import load_model


def test_crown_charges_alpha_times_underflowed_products(tmp_path):
    b = np.full((3, 2), 0.7, np.float32)
    g = h.make_graph([h.make_node("Gemm", ["input", "B"], ["logits"], alpha=2.0**100)], "g",
                     [h.make_tensor_value_info("input", T.FLOAT, ["N", 3])],
                     [h.make_tensor_value_info("logits", T.FLOAT, ["N", 2])], [nh.from_array(b, "B")])
    mod = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    mod.ir_version = 9
    path = tmp_path / "g.onnx"
    onnx.save(mod, str(path))
    m = load_model(path)
    x = np.array([[1e-45, 3e-45, 1e-45], [3e-45, 1e-45, 1e-45]], np.float32)
    c = np.broadcast_to(np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]), (2, 4, 2)).copy()
    low = spec_lower(m, x, x, c)
    y = ort_logits(path, x).astype(np.float64)
    assert np.all(np.einsum("nk,nsk->ns", y, c) >= low)


def test_leaky_relu_charges_the_underflow_of_its_product(tmp_path):
    """LeakyRelu(0.3) at a subnormal negative input: onnxruntime's 0.3·(−2^-149) rounds to −0, an
    absolute error of 0.3·2^-149 that no relative charge covers (found: the bound of −y was
    +4.2e-46 where onnxruntime's −y is 0)."""
    g = h.make_graph([h.make_node("LeakyRelu", ["input"], ["logits"], alpha=0.3)], "g",
                     [h.make_tensor_value_info("input", T.FLOAT, ["N", 2])],
                     [h.make_tensor_value_info("logits", T.FLOAT, ["N", 2])])
    mod = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    mod.ir_version = 9
    path = tmp_path / "lr.onnx"
    onnx.save(mod, str(path))
    m = load_model(path)
    x = np.array([[-1e-45, -3e-45], [-1e-45, 2e-45]], np.float32)
    c = np.broadcast_to(np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]), (2, 4, 2)).copy()
    low = spec_lower(m, x, x, c)
    y = ort_logits(path, x).astype(np.float64)
    assert np.all(np.einsum("nk,nsk->ns", y, c) >= low)
