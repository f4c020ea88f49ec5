"""Float64 underflow of CROWN's own coefficient products (theorem (a), ``ort=False``).

Back-substituting through many layers of tiny weights multiplies the coefficients down below the
float64 range: fl64(A·w) of A = 2^-1008 and w = 2^-126 is 0 where the exact product is 2^-1134. That
absolute error (≤ 2^-1075 per product) is not covered by a relative γ_n bound, and times an input
of 2^127 it is 2^-1007, far above the subnormal-sized charges the bias had (found by review). The
charges now include ``n_back·2^-1074·Σ mag(x)`` (verify/bounds/linear.affine_bias) and the absolute
underflow term of dot products, rescaled coefficients and concretisation (verify/bounds/linear.py).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from verify.bounds import linear
from verify.bounds.spec import spec_lower
from verify.front.model import load_model


def _chain(tmp_path, depth, w):
    nodes = [h.make_node("Gemm", ["input" if i == 0 else f"h{i}", f"W{i}"],
                         ["logits" if i == depth - 1 else f"h{i + 1}"], transB=1) for i in range(depth)]
    inits = [nh.from_array(np.full((1, 1), w, np.float32), f"W{i}") for i in range(depth)]
    g = h.make_graph(nodes, "chain", [h.make_tensor_value_info("input", T.FLOAT, ["N", 1])],
                     [h.make_tensor_value_info("logits", T.FLOAT, ["N", 1])], inits)
    mod = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    mod.ir_version = 9
    path = tmp_path / "chain.onnx"
    onnx.save(mod, str(path))
    return load_model(path)


@pytest.mark.parametrize("depth", [2, 3])
def test_underflowed_coefficient_products_are_charged(tmp_path, depth):
    """y = w^depth · x with w = 2^-126, x = 2^127 and spec rows ±2^-900 (exact-rational check,
    ort=False). Spec rows this small keep every charge near 2^-1074 (a float32 box's magnitude
    is ≥ 2^-149 where nonzero, so with rows of size 1 the γ charges of the top layer, ≥ 2^-202,
    would dwarf any underflow error, ≤ 2^-1075·2^128: that is why the rows are tiny). The
    coefficient 2^-900·2^-126 = 2^-1026 is exact, the next product 2^-1152 flushes to 0: the
    exact ±2^-1025 (depth 2) was below the claimed lower bound (≈ −4·2^-1074) before the charge."""
    w = 2.0**-126
    m = _chain(tmp_path, depth, w)
    x = np.array([[2.0**127]], np.float32)
    c = np.array([[[2.0**-900], [-(2.0**-900)]]])
    low = spec_lower(m, x, x, c, ort=False)
    y = Fraction(w) ** depth * Fraction(float(x[0, 0])) * Fraction(2) ** -900
    assert Fraction(float(low[0, 0])) <= y
    assert Fraction(float(low[0, 1])) <= -y


def test_dot_lo_charges_underflowed_products_absolutely():
    """Σ a·v with every product below half the smallest subnormal: fl64 gives 0 exactly where the
    exact sum is m·2^-1076 > 0; the lower bound must stay ≤ it, and for −a ≤ −m·2^-1076."""
    m = 64
    a = torch.full((1, 1, m), 2.0**-600, dtype=torch.float64)
    v = torch.full((1, m), 2.0**-476, dtype=torch.float64)
    exact = Fraction(m) * Fraction(2) ** -1076
    assert Fraction(float(linear.dot_lo(a, v)[0, 0])) <= exact
    assert Fraction(float(linear.dot_lo(-a, v)[0, 0])) <= -exact


def test_rescaled_err_charges_underflowed_products_absolutely():
    """A coefficient that is fl64 of a product below 2^-1075 is 0: the charge must still cover
    2^-1075·|t| for |t| up to mag (here 2^1000, so 2^-75 per coordinate)."""
    a_new = torch.zeros((1, 1, 3), dtype=torch.float64)
    mag = torch.full((1, 3), 2.0**1000, dtype=torch.float64)
    assert float(linear.rescaled_err(a_new, mag)[0, 0]) >= 3 * 2.0**-75
