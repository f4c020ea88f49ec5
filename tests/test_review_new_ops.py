"""Adversarial review of the ops the torch exporters emit (verify/ops/, docs/OPS.md): boxes that
must hold onnxruntime's float32 result in the pinned configuration (common/runtime.py) and the
exact real value, at the extremes (subnormals, huge values, ±0, ties)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper as h

from onnx_helpers import make_model, ort_run, save
from common.errors import ModelError
from verify.front.model import load_model

N = h.make_node


def _one(tmp_path, nodes, inits, shape, k, name="m.onnx"):
    return save(make_model(nodes, inits, shape, k, opset=20), tmp_path, name)


def _holds_or_unknown(m, p, lo, hi, points):
    """The model's box on [lo, hi] holds onnxruntime's output at every point (or is refused)."""
    try:
        blo, bhi = m.interval(lo, hi)
    except ModelError:
        return
    for x in points:
        y = ort_run(p, x)
        assert not np.isnan(y).any() and np.all(blo <= y) and np.all(y <= bhi), (x, y, blo, bhi)


@pytest.mark.parametrize("row", [
    [4.0962224e-39, -2.3239190e-39, 1.9123128e-39, 1.2440401e-38],
    [2.2386665e-31, -6.1976595e-31, 6.3586044e-31, 1e-31],
    [1e-45, 0.0, 0.0, 0.0],
    [1e-20, -1e-20, 3e-21, 0.0],
])
def test_layernorm_variance_that_underflows_in_float32(row, tmp_path):
    """onnxruntime squares the deviations in float32: below ~1e-23 they underflow, the variance is
    0 (or a few subnormals) and with epsilon 0 the output is ±inf or NaN. The box must hold it
    (in practice: the sample is unknown)."""
    n = len(row)
    s = np.linspace(0.5, 2.0, n).astype(np.float32)
    b = np.linspace(-1.0, 1.0, n).astype(np.float32)
    p = _one(tmp_path, [N("LayerNormalization", ["input", "s", "b"], ["logits"], axis=-1, epsilon=0.0)],
             {"s": s, "b": b}, [n], n)
    x = np.asarray([row], np.float32)
    _holds_or_unknown(load_model(p), p, x, x, [x])


def _cast_int_model(tmp_path, middle, inits, d, k, name):
    from onnx import TensorProto as T

    nodes = [N("Cast", ["input"], ["i"], to=T.INT64), *middle, N("Cast", ["r"], ["logits"], to=T.FLOAT)]
    return save(make_model(nodes, inits, [d], k, opset=18), tmp_path, name)


def _point_and_box_hold(p, x, r):
    """Loading refuses the model, or the point box of x and the box of radius r hold onnxruntime's
    output at x."""
    try:
        m = load_model(p)
    except ModelError:
        return
    _holds_or_unknown(m, p, x, x, [x])
    _holds_or_unknown(m, p, x - np.float32(r), x + np.float32(r), [x])


@pytest.mark.parametrize("e", [2.0, 0.5])
def test_pow_of_an_integer_variable_base(e, tmp_path):
    """Pow(int64, float) is integer arithmetic in onnxruntime (x² wraps past 2^63, x^0.5 truncates):
    a float box of x^e does not hold it; the model is refused or the box holds onnxruntime's value."""
    p = _cast_int_model(tmp_path, [N("Pow", ["i", "e"], ["r"])], {"e": np.float32(e)}, 3, 3, "pow.onnx")
    _point_and_box_hold(p, np.array([[3.0, 5.0, 1e10]], np.float32), 0.25)


@pytest.mark.parametrize("which", ["constant", "variables"])
def test_matmul_of_integer_operands_that_wrap(which, tmp_path):
    """MatMul of int64 tensors wraps around in onnxruntime (4e18 · 4e18); a real-valued box does not
    hold the wrapped value."""
    if which == "constant":
        middle, inits = [N("MatMul", ["i", "w"], ["r"])], {"w": np.array([[3], [1], [5]], np.int64)}
        k = 1
    else:
        middle = [N("Unsqueeze", ["i", "a1"], ["u"]), N("Unsqueeze", ["i", "a2"], ["v"]),
                  N("MatMul", ["v", "u"], ["mm"]), N("Flatten", ["mm"], ["r"])]
        inits, k = {"a1": np.array([1], np.int64), "a2": np.array([2], np.int64)}, 9
    p = _cast_int_model(tmp_path, middle, inits, 3, k, "mm.onnx")
    _point_and_box_hold(p, np.array([[4e18, 2.0, 3e18]], np.float32), 0.5)
