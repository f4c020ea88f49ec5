"""Ops at float32 extremes (issue 12, root cause 1): overflow to ±inf, inf - inf = NaN, 0/0, 0·inf,
casts past the integer range, integer wrap-around. For every input box either the verifier refuses
to bound it (ModelError, which the certifier reports as ``unknown``) or the box contains onnxruntime's
float32 output at every sampled float32 point of the input box (and that output is not NaN)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx_helpers import make_model, save

from verify.certify.certifier import CertifyConfig, certify_batch
from common.errors import ModelError
from verify.front.model import load_model
from common.runtime import ort_logits, ort_session

N = h.make_node
f32 = np.float32
BIG = f32(1e30)


def _clip01(src: str) -> list:
    return [N("Clip", [src, "zero", "one"], ["logits"])]


CLIP_INITS = {"zero": f32(0.0), "one": f32(1.0)}


def _points(lo: np.ndarray, hi: np.ndarray, extra=()) -> np.ndarray:
    """Corners, a grid in between (float32) and the given extra points, each clipped into the box."""
    t = np.linspace(0.0, 1.0, 33)[:, None]
    grid = (lo.astype(np.float64) + t * (hi.astype(np.float64) - lo.astype(np.float64))).astype(np.float32)
    pts = [lo, hi, *grid, *[np.full_like(lo, v) for v in extra]]
    return np.clip(np.stack(pts), lo, hi).astype(np.float32)


def assert_sound_or_unknown(path, lo, hi, extra=()) -> str:
    """'unknown' if the verifier refuses the box, else checks ORT's outputs lie in the box."""
    m = load_model(path)
    lo, hi = np.asarray(lo, np.float32)[None], np.asarray(hi, np.float32)[None]
    try:
        blo, bhi = m.interval(lo, hi)
    except ModelError:
        return "unknown"
    pts = _points(lo[0], hi[0], extra)
    yo = ort_logits(ort_session(path), pts)
    assert not np.isnan(yo).any(), "onnxruntime computes NaN inside a box the verifier bounded"
    assert np.all(blo <= yo) and np.all(yo <= bhi), (blo, bhi, yo[(yo < blo).any(1) | (yo > bhi).any(1)][:3])
    return "bounded"


def _model(tmp_path, nodes, inits, d=1, k=1, name="m.onnx"):
    return save(make_model(nodes, inits, [d], k), tmp_path, name)


# ---- Cast ----

@pytest.mark.parametrize("to,lo,hi", [
    (T.INT32, 2e9, 3e9), (T.INT32, -3e9, -2e9), (T.INT64, 1e18, 1e19), (T.INT64, -1e19, -1e18),
    (T.INT32, -2147483648.0, 2147483520.0),  # exactly the int32 range: must stay bounded and sound
])
def test_cast_float_to_int_past_the_range(tmp_path, to, lo, hi):
    nodes = [N("Cast", ["input"], ["i"], to=to), N("Cast", ["i"], ["logits"], to=T.FLOAT)]
    got = assert_sound_or_unknown(_model(tmp_path, nodes, {}), [lo], [hi])
    if (lo, hi) == (-2147483648.0, 2147483520.0):
        assert got == "bounded"


def test_cast_int64_to_int32_wraps(tmp_path):
    nodes = [N("Cast", ["input"], ["i"], to=T.INT64), N("Cast", ["i"], ["j"], to=T.INT32),
             N("Cast", ["j"], ["logits"], to=T.FLOAT)]
    assert_sound_or_unknown(_model(tmp_path, nodes, {}), [2e9], [2.5e9])


def test_cast_overflowed_inf_to_int(tmp_path):
    nodes = [N("Mul", ["input", "big"], ["b"]), N("Cast", ["b"], ["i"], to=T.INT64), N("Cast", ["i"], ["logits"], to=T.FLOAT)]
    assert_sound_or_unknown(_model(tmp_path, nodes, {"big": BIG}), [1e8], [1e9])


def test_cast_out_of_range_sample_does_not_certify(tmp_path):
    """Logits (trunc(x), 0) with the int32 cast: onnxruntime gives INT_MIN past 2^31, so class 0
    loses inside the ball around x = 2.1e9; the old endpoint-wise box certified it."""
    # the second logit is c - c (0 in onnxruntime; a per-sample graph, unlike a concatenated
    # constant row, which the batch analysis refuses)
    nodes = [N("Cast", ["input"], ["i"], to=T.INT32), N("Cast", ["i"], ["c"], to=T.FLOAT),
             N("Sub", ["c", "c"], ["z"]), N("Concat", ["c", "z"], ["logits"], axis=1)]
    p = _model(tmp_path, nodes, {}, k=2)
    x = np.array([[2.1e9]], np.float32)
    ball = np.array([[2.1e9 + 1e8]], np.float32)
    assert ort_logits(ort_session(p), ball)[0, 0] < 0  # not robust in onnxruntime
    r = certify_batch(load_model(p), x, np.array([0]), CertifyConfig(eps=1e8, method="ibp", domain=(0.0, 4e9)))
    assert r.status[0] != "certified"


# ---- overflow, inf - inf, 0 * inf, 0 / 0 ----

def test_sum_partial_overflow(tmp_path):
    """Sum(x, x, -3e38) at x = 3e38: exact 3e38, onnxruntime's first partial sum is inf."""
    nodes = [N("Sum", ["input", "input", "c"], ["logits"])]
    assert_sound_or_unknown(_model(tmp_path, nodes, {"c": np.full((1, 1), -3e38, np.float32)}), [3e38], [3e38])


@pytest.mark.parametrize("mid", [
    [N("Mul", ["input", "big"], ["a"]), N("Mul", ["input", "nbig"], ["b"]), N("Add", ["a", "b"], ["s"])],
    [N("Mul", ["input", "big"], ["a"]), N("Mul", ["input", "big"], ["b"]), N("Sub", ["a", "b"], ["s"])],
    [N("Mul", ["input", "big"], ["a"]), N("Mul", ["a", "input"], ["s"])],
    [N("Mul", ["input", "big"], ["a"]), N("Gemm", ["a", "W"], ["s"])],
    [N("Mul", ["input", "big"], ["a"]), N("MatMul", ["a", "W"], ["s"])],
    [N("Mul", ["input", "big"], ["a"]), N("Mul", ["input", "nbig"], ["a2"]), N("Sum", ["a", "input", "a2"], ["s"])],
    [N("Mul", ["input", "big"], ["a"]), N("LeakyRelu", ["a"], ["s"], alpha=0.0)],
    [N("Mul", ["input", "big"], ["a"]), N("Softmax", ["a"], ["s"], axis=1)],
    [N("Div", ["zc", "input"], ["s"])],
    [N("Div", ["input", "input"], ["s"])],
    [N("Mul", ["input", "big"], ["a"]), N("Div", ["a", "a"], ["s"])],
], ids=["add_inf_minus_inf", "sub_inf_minus_inf", "mul_0_inf", "gemm_0_inf", "matmul_0_inf", "sum_inf",
        "leakyrelu0_inf", "softmax_inf", "div_0_0", "div_x_x", "div_inf_inf"])
def test_nan_in_onnxruntime_is_never_bounded(tmp_path, mid):
    """The box before the final Clip contains both signs of infinity or 0/0 where onnxruntime
    computes NaN; Clip(NaN) is NaN, so bounding the output by [0, 1] would be a false theorem."""
    inits = {"big": BIG, "nbig": -BIG, "W": np.array([[0.0]], np.float32), "zc": f32(0.0), **CLIP_INITS}
    inits = {k: v for k, v in inits.items() if any(k in n.input for n in mid + _clip01("s"))}
    p = _model(tmp_path, mid + _clip01("s"), inits)
    assert assert_sound_or_unknown(p, [-1e10], [1e10], extra=[0.0, 1e9, -1e9]) == "unknown"


@pytest.mark.parametrize("op,attrs", [("Sigmoid", {}), ("Tanh", {}), ("Relu", {}), ("Abs", {}), ("Neg", {}),
                                      ("LeakyRelu", {"alpha": 0.5})])
def test_inf_safe_ops_stay_bounded_at_infinity(tmp_path, op, attrs):
    """Monotone ops that never produce NaN from ±inf keep a sound box over overflowed inputs."""
    nodes = [N("Mul", ["input", "big"], ["a"]), N(op, ["a"], ["logits"], **attrs)]
    got = assert_sound_or_unknown(_model(tmp_path, nodes, {"big": BIG}), [-1e10], [1e10], extra=[0.0, 1e9, -1e9])
    assert got == "bounded"


@pytest.mark.parametrize("nodes,inits", [
    ([N("Mul", ["input", "big"], ["a"]), N("Concat", ["a", "input"], ["c"], axis=1),
      N("Softmax", ["c"], ["logits"], axis=1)], {"big": f32(1e28)}),
    ([N("Mul", ["input", "big"], ["a"]), N("Clip", ["a", "ninf", "pinf"], ["logits"])],
     {"big": BIG, "ninf": f32(-np.inf), "pinf": f32(np.inf)}),
    ([N("Mul", ["input", "big"], ["a"]), N("Pad", ["a", "pads", "ninf"], ["p"]), N("ReduceMax", ["p", "ax"], ["r"], keepdims=1),
      N("Max", ["r", "a"], ["logits"])], {"big": BIG, "pads": np.array([0, 1, 0, 1], np.int64), "ninf": f32(-np.inf), "ax": np.array([1], np.int64)}),
    ([N("Mul", ["input", "big"], ["a"]), N("LinfDist", ["a", "W", "B"], ["logits"], domain="linf")],
     {"big": BIG, "W": np.array([[0.0], [1e30]], np.float32), "B": np.array([1.0, -3e38], np.float32)}),
], ids=["softmax_huge_finite", "clip_inf_bounds", "pad_reducemax_inf", "linfdist_inf_input"])
def test_extreme_but_nan_free_graphs_stay_sound(tmp_path, nodes, inits):
    k = 2 if nodes[-1].op_type in ("Softmax", "LinfDist") else 1
    linf = ["LinfDist"] if nodes[-1].domain == "linf" else []
    p = save(make_model(nodes, inits, [1], k, linf_ops=linf), tmp_path)
    got = assert_sound_or_unknown(p, [-1e10], [1e10], extra=[0.0, 1e-20, -1e-20, 1e9, -1e9])
    assert got == "bounded"


@pytest.mark.parametrize("op", ["Abs", "Neg"])
def test_integer_abs_neg_of_int_min(tmp_path, op):
    """|INT64_MIN| and -INT64_MIN wrap to INT64_MIN in onnxruntime; a float32 detour gave +2^63."""
    nodes = [N("Cast", ["input"], ["i"], to=T.INT64), N(op, ["i"], ["j"]), N("Cast", ["j"], ["logits"], to=T.FLOAT)]
    lo = -(2.0**63)
    assert assert_sound_or_unknown(_model(tmp_path, nodes, {}), [lo], [lo + 2.0**40]) == "unknown"


def test_integer_clip_and_relu_stay_integer(tmp_path):
    """Integer Relu/Clip of a shape are exact: no float32 rounding of 2^40 + 1."""
    nodes = [N("Shape", ["input"], ["s"]), N("Gather", ["s", "i1"], ["d"]), N("Add", ["d", "big"], ["e"]),
             N("Relu", ["e"], ["r"]), N("Clip", ["r", "lo", "hi"], ["c"]), N("Sub", ["c", "big"], ["k"]),
             N("Cast", ["k"], ["kf"], to=T.FLOAT), N("Mul", ["input", "kf"], ["logits"])]
    inits = {"i1": np.array(1, np.int64), "big": np.array(2**40 + 1, np.int64),
             "lo": np.array(0, np.int64), "hi": np.array(2**41, np.int64)}
    p = _model(tmp_path, nodes, inits)
    x = np.array([[3.0]], np.float32)
    assert load_model(p).forward(x)[0, 0] == 3.0 == ort_logits(ort_session(p), x)[0, 0]
    assert assert_sound_or_unknown(p, [2.0], [3.0]) == "bounded"


@pytest.mark.parametrize("idx", [[6], [-7], [2**40]])
def test_gather_out_of_range_is_a_model_error(tmp_path, idx):
    nodes = [N("Gather", ["input", "gi"], ["logits"], axis=1)]
    with pytest.raises(ModelError, match="out of range"):
        load_model(_model(tmp_path, nodes, {"gi": np.array(idx, np.int64)}, d=6))


@pytest.mark.parametrize("st,en,stp", [([2**62], [-2**62], [-2**62]), ([-2**63], [2**63 - 1], [2**62]),
                                       ([5], [-2**63], [-1]), ([-1], [-7], [-3]), ([-100], [100], [4])])
def test_slice_with_huge_arguments_matches_onnxruntime(tmp_path, st, en, stp):
    nodes = [N("Slice", ["input", "st", "en", "ax", "stp"], ["logits"])]
    inits = {"st": np.array(st, np.int64), "en": np.array(en, np.int64), "ax": np.array([1], np.int64),
             "stp": np.array(stp, np.int64)}
    p = save(make_model(nodes, inits, [6], "K"), tmp_path)
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    assert np.array_equal(load_model(p).forward(x), ort_logits(ort_session(p), x))


@pytest.mark.parametrize("op", ["AveragePool", "MaxPool"])
def test_pool_padding_as_large_as_the_kernel_is_refused(tmp_path, op):
    """onnxruntime refuses pads >= kernel (a window of padding only: 0/0 = NaN for AveragePool)."""
    nodes = [N(op, ["input"], ["y"], kernel_shape=[2, 2], pads=[2, 0, 0, 0]), N("Flatten", ["y"], ["logits"])]
    p = save(make_model(nodes, {}, [1, 3, 3], "K"), tmp_path)
    with pytest.raises(ModelError):
        ort_session(p)
    with pytest.raises(ModelError, match="pads must be smaller"):
        load_model(p)


# ---- partial sums that overflow before a scaling, subnormal coefficients ----

def test_gemm_with_small_alpha_overflows_before_the_scaling(tmp_path):
    """alpha (A B) with A B = 1.2e39: onnxruntime returns inf, the exact value is 1.2e9."""
    nodes = [N("Gemm", ["input", "W"], ["logits"], alpha=1e-30)]
    p = save(make_model(nodes, {"W": np.ones((4, 2), np.float32)}, [4], 2), tmp_path)
    assert assert_sound_or_unknown(p, [3e38] * 4, [3e38] * 4) == "unknown"


def test_average_pool_sum_overflows_before_the_division(tmp_path):
    """The window sum of four -3e38 is -inf in float32; the average is -3e38."""
    nodes = [N("Reshape", ["input", "shp"], ["r"]), N("AveragePool", ["r"], ["y"], kernel_shape=[2, 2]),
             N("Flatten", ["y"], ["logits"])]
    p = save(make_model(nodes, {"shp": np.array([-1, 1, 2, 2], np.int64)}, [4], 1), tmp_path)
    assert assert_sound_or_unknown(p, [-3e38] * 4, [-3e38] * 4) == "unknown"


@pytest.mark.parametrize("scale,mean,lo,hi", [
    (3.960609e-39, -1.752896e-38, -8.2808155e+29, -8.2808155e+29),  # a = scale / sqrt(var) is subnormal
    (1e-30, -3e38, 3e38, 3e38),  # x - mean overflows although a (x - mean) is 6e8
])
def test_batchnorm_subnormal_coefficient_and_overflowing_difference(tmp_path, scale, mean, lo, hi):
    nodes = [N("Reshape", ["input", "shp"], ["r"]), N("BatchNormalization", ["r", "s", "b", "m", "v"], ["y"]),
             N("Flatten", ["y"], ["logits"])]
    inits = {"shp": np.array([-1, 1, 1, 1], np.int64), "s": np.array([scale], np.float32),
             "b": np.array([-0.0], np.float32), "m": np.array([mean], np.float32),
             "v": np.array([61.527267], np.float32)}
    assert_sound_or_unknown(save(make_model(nodes, inits, [1], 1), tmp_path), [lo], [hi])


def test_gemm_with_large_alpha_scales_underflowed_products(tmp_path):
    """alpha (A B) with products 1e-46 that underflow to 0 in float32: onnxruntime returns 0, the
    exact value is 4e-16; the absolute underflow error is multiplied by alpha = 1e30."""
    nodes = [N("Gemm", ["input", "W"], ["logits"], alpha=1e30)]
    p = save(make_model(nodes, {"W": np.full((4, 2), 1e-16, np.float32)}, [4], 2), tmp_path)
    assert assert_sound_or_unknown(p, [1e-30] * 4, [1e-30] * 4) == "bounded"
