"""Fixed graphs reproducing the violations the differential fuzzer (tests/test_fuzz_soundness.py)
found; each failed before its fix. Every check is the fuzzer's own (``check_model``): onnxruntime's
output and the exact value inside the verifier's boxes, the Lipschitz bound, forward vs onnxruntime."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from fuzz_graphs import OPSET, Fuzzed
from test_fuzz_soundness import check_model

N = h.make_node
BIG = np.float32(3e38)


def _fuzzed(nodes, inits, in_shape, k, lo, hi=None) -> Fuzzed:
    g = h.make_graph(
        nodes, "regression",
        [h.make_tensor_value_info("input", T.FLOAT, [1, *in_shape])],
        [h.make_tensor_value_info("y", T.FLOAT, [1, k])],
        [nh.from_array(np.asarray(v), n) for n, v in inits.items()],
    )
    m = h.make_model(g, opset_imports=[h.make_opsetid("", OPSET)])
    m.ir_version = 9
    lo = np.asarray(lo, np.float32).reshape(1, *in_shape)
    hi = lo if hi is None else np.asarray(hi, np.float32).reshape(1, *in_shape)
    return Fuzzed(m, [n.op_type for n in nodes], lo, hi)


def _assert_sound(fz, tmp_path):
    bad = check_model(fz, tmp_path, 0)
    assert not bad, "\n".join(bad[:4])


def test_gemm_alpha_scales_an_overflowed_dot_product(tmp_path):
    """Gemm(alpha = 0 or 1e-30): onnxruntime computes alpha · fl(A·B); A·B overflows to inf (NaN
    for alpha = 0) while alpha · (A·B) is finite: the box was computed from alpha·B only."""
    for alpha in (0.0, 1e-30):
        nodes = [N("Gemm", ["input", "B"], ["y"], alpha=alpha)]
        fz = _fuzzed(nodes, {"B": np.full((2, 1), BIG)}, [2], 1, [1.0, 1.0])
        _assert_sound(fz, tmp_path)


def test_gemm_alpha_scales_underflowed_products(tmp_path):
    """Gemm(alpha = 2^100): products of subnormals underflow in float32 before alpha scales them up."""
    nodes = [N("Gemm", ["input", "B"], ["y"], alpha=2.0**100)]
    fz = _fuzzed(nodes, {"B": np.full((3, 1), 0.7, np.float32)}, [3], 1, [1e-45, 3e-45, 1e-45])
    _assert_sound(fz, tmp_path)


def test_averagepool_window_sum_overflows(tmp_path):
    """AveragePool sums the window in float32 before dividing: 3e38 + 3e38 is inf, the mean is not."""
    nodes = [N("AveragePool", ["input"], ["p"], kernel_shape=[1, 2]), N("Flatten", ["p"], ["y"])]
    fz = _fuzzed(nodes, {}, [1, 1, 2], 1, [3e38, 3e38])
    _assert_sound(fz, tmp_path)


def test_sum_of_three_partial_sum_overflows(tmp_path):
    """Sum(x, x, -x) adds left to right in float32: 3e38 + 3e38 is inf, the sum is 3e38."""
    nodes = [N("Neg", ["input"], ["n"]), N("Sum", ["input", "input", "n"], ["y"])]
    fz = _fuzzed(nodes, {}, [1], 1, [3e38])
    _assert_sound(fz, tmp_path)


def test_batchnorm_folded_scale_overflows(tmp_path):
    """onnxruntime's BatchNormalization computes x·s + (B − mean·s) with s = scale/√(var+ε):
    x·s and mean·s overflow (inf − inf = NaN) where s·(x − mean) = 0."""
    c = lambda v: np.asarray([v], np.float32)  # noqa: E731
    for scale, x in ((2.0, 2e38), (1e30, 1e10)):
        inits = {"s": c(scale), "b": c(0.0), "m": c(x), "v": c(1.0)}
        nodes = [N("BatchNormalization", ["input", "s", "b", "m", "v"], ["y"])]
        _assert_sound(_fuzzed(nodes, inits, [1], 1, [x]), tmp_path)


def test_softmax_of_an_infinite_input_is_nan_in_onnxruntime(tmp_path):
    """x + x overflows to inf; onnxruntime's softmax computes x - max(x) = inf - inf = NaN, while
    the bound of s_i = 1 / (1 + sum_j exp(x_j - x_i)) said [1, 1] (one class) or [0, 1]."""
    for k in (1, 2):
        nodes = [N("Add", ["input", "input"], ["a"]), N("Softmax", ["a"], ["y"], axis=1)]
        _assert_sound(_fuzzed(nodes, {}, [k], k, [3e38] * k), tmp_path)


def test_batchnorm_subnormal_folded_scale(tmp_path):
    """scale = 1e-45: onnxruntime's s = scale/√(var+ε) is a subnormal (absolute error 2^-150, not
    relative), then multiplied by x = 3e38: 4.20390e-7 where a·x = 4.20387e-7."""
    c = lambda v: np.asarray([v], np.float32)  # noqa: E731
    inits = {"s": c(1e-45), "b": c(0.0), "m": c(0.0), "v": c(1.0)}
    nodes = [N("BatchNormalization", ["input", "s", "b", "m", "v"], ["y"])]
    _assert_sound(_fuzzed(nodes, inits, [1], 1, [3e38]), tmp_path)
