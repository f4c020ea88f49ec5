"""Regressions from the second adversarial review: op index semantics that differed from
onnxruntime (false certificates) and op arguments that gave tracebacks.

- Slice follows onnxruntime's clamping (negative steps, starts below -dim, INT64_MAX/INT32_MAX ends),
  checked bit for bit against onnxruntime by a differential hypothesis test;
- Squeeze with an EMPTY axes tensor squeezes every extent-1 axis (as absent axes), repeated axes
  squeeze once; Unsqueeze refuses repeated axes; axes out of range are ModelErrors;
- the load-time dry run refuses an op output whose RANK differs from ONNX shape inference.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto as T
from onnx import helper as H
from onnx import numpy_helper as nh

from common.errors import ModelError
from verify.front.model import load_model
from verify.ops.base import NodeSpec
from verify.ops.op_reducemax import ReduceMax
from verify.ops.op_slice import Slice
from verify.ops.op_squeeze import Squeeze
from verify.ops.op_unsqueeze import Unsqueeze
from common.runtime import ort_session

I64_MAX, I64_MIN = int(np.iinfo(np.int64).max), int(np.iinfo(np.int64).min)
I32_MAX = int(np.iinfo(np.int32).max)


def _one_op(op_type, x, consts, **attrs):
    """(onnxruntime's output, the verifier op) for one node on input x with constant int64 inputs."""
    names = [f"c{i}" for i in range(len(consts))]
    opset = 18 if op_type == "ReduceMax" else 17
    g = H.make_graph([H.make_node(op_type, ["x"] + names, ["y"], **attrs)], "g",
                     [H.make_tensor_value_info("x", T.FLOAT, list(x.shape))],
                     [H.make_tensor_value_info("y", T.FLOAT, None)],
                     [nh.from_array(np.array(v, np.int64), n) for n, v in zip(names, consts)])
    m = H.make_model(g, opset_imports=[H.make_opsetid("", opset)])
    cls = {"Slice": Slice, "Squeeze": Squeeze, "Unsqueeze": Unsqueeze, "ReduceMax": ReduceMax}[op_type]
    op = cls(NodeSpec("n", op_type, "", ["x"] + names, ["y"], attrs, opset),
             {i + 1: np.array(v, np.int64) for i, v in enumerate(consts)})
    try:
        sess = ort_session(m)
        ort = sess.run(None, {"x": x})[0]
    except Exception as e:  # onnxruntime refuses: the verifier must refuse too (a ModelError)
        ort = e
    return ort, op


def _same_as_ort(op_type, x, consts, **attrs):
    ort, op = _one_op(op_type, x, consts, **attrs)
    if isinstance(ort, Exception):
        with pytest.raises(ModelError):
            op.forward(x)
        return
    got = op.forward(x)
    assert got.shape == ort.shape and np.array_equal(got, ort), (consts, got, ort)
    box = op.interval(_box(x))
    assert np.array_equal(box.lo, ort) and np.array_equal(box.hi, ort)


def _box(x):
    from verify.ops.base import Box

    return Box(x, x)


# ---- Slice ----
@pytest.mark.parametrize("s,e,step", [(-100, -6, -1), (I64_MIN, -100, -1), (6, I64_MAX, -1), (-1, I64_MAX, -2),
                                      (0, I64_MAX, -2), (2, 0, -1), (4, -100, -1), (3, I32_MAX, -1),
                                      (-100, I64_MAX, 2), (I64_MAX, I64_MIN, -3)])
def test_slice_negative_steps_match_onnxruntime(s, e, step):
    x = np.arange(1, 6, dtype=np.float32)[None]
    _same_as_ort("Slice", x, [[s], [e], [1], [step]])


_EXTREME = st.sampled_from([I64_MAX, I64_MIN, I32_MAX, -I32_MAX - 1, 0, -1, 1])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_slice_differential_onnxruntime(data):
    shape = data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
    r = len(shape)
    k = data.draw(st.integers(1, r))
    axes = data.draw(st.permutations(range(r)))[:k]
    axes = [a - r if data.draw(st.booleans()) else a for a in axes]
    idx = st.one_of(st.integers(-8, 8), _EXTREME)
    starts = data.draw(st.lists(idx, min_size=k, max_size=k))
    ends = data.draw(st.lists(idx, min_size=k, max_size=k))
    steps = data.draw(st.lists(st.one_of(st.integers(-4, 4).filter(bool), st.sampled_from([I64_MAX, I64_MIN])),
                               min_size=k, max_size=k))
    x = np.arange(1, 1 + int(np.prod(shape)), dtype=np.float32).reshape(shape)
    _same_as_ort("Slice", x, [starts, ends, axes, steps])


def test_slice_repeated_axis_refused():
    x = np.zeros((2, 3), np.float32)
    _same_as_ort("Slice", x, [[0, 0], [1, 1], [1, -1], [1, 1]])


# ---- Squeeze / Unsqueeze ----
@pytest.mark.parametrize("shape,axes", [((1, 2), []), ((1, 2, 1), []), ((2, 1, 3), [1, -2]), ((1, 1, 2), [0, 1, -3]),
                                        ((1, 2), [2]), ((1, 2), [-3]), ((1, 2), [1])])
def test_squeeze_matches_onnxruntime(shape, axes):
    x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    _same_as_ort("Squeeze", x, [axes])


@pytest.mark.parametrize("shape,axes", [((2, 3), []), ((2, 3), [0, 0]), ((2, 3), [1, -2]), ((2, 3), [-1, 0]),
                                        ((2, 3), [3]), ((2, 3), [-4]), ((2,), [2, 0])])
def test_unsqueeze_matches_onnxruntime(shape, axes):
    x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    _same_as_ort("Unsqueeze", x, [axes])


@pytest.mark.parametrize("axes", [[1, -3], [0, 0], [-1, 2], [3], [-4]])
def test_reducemax_axes_match_onnxruntime(axes):
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3) * np.float32(0.5)
    _same_as_ort("ReduceMax", x, [axes])


@pytest.mark.parametrize("axes", [[1, -1], [2], [-3]])
def test_pad_bad_axes_refused(axes):
    from verify.ops.op_pad import Pad

    pads = np.array([1] * (2 * len(axes)), np.int64)
    op = Pad(NodeSpec("n", "Pad", "", ["x", "p", "", "a"], ["y"], {}, 18), {1: pads, 3: np.array(axes, np.int64)})
    with pytest.raises(ModelError):
        op.forward(np.ones((2, 3), np.float32))


def _model(tmp_path, nodes, inits, in_shape, out_shape):
    g = H.make_graph(nodes, "g", [H.make_tensor_value_info("x", T.FLOAT, in_shape)],
                     [H.make_tensor_value_info("logits", T.FLOAT, out_shape)], inits)
    p = tmp_path / "m.onnx"
    onnx.save(H.make_model(g, opset_imports=[H.make_opsetid("", 17)]), p)
    return p


def test_squeeze_empty_axes_model_forward_matches_onnxruntime(tmp_path):
    """s5: Squeeze(x[1,2], axes=[]) -> [2] in onnxruntime; the verifier kept [1,2] and certified a wrong
    max. ONNX shape inference reads the empty axes as "none" ([1,2]), so the model is ambiguous and the
    dry run refuses it (the op itself computes onnxruntime's value: test_squeeze_matches_onnxruntime)."""
    i64 = lambda n, v: nh.from_array(np.array(v, np.int64), n)  # noqa: E731
    nodes = [H.make_node("Squeeze", ["x", "noaxes"], ["s"]), H.make_node("Gather", ["s", "zero"], ["g"], axis=0),
             H.make_node("ReduceMax", ["g"], ["m"], keepdims=0), H.make_node("Reshape", ["m", "s11"], ["l0"]),
             H.make_node("Concat", ["l0", "half"], ["logits"], axis=1)]
    inits = [nh.from_array(np.zeros(0, np.int64), "noaxes"), i64("zero", 0), i64("s11", [1, 1]),
             nh.from_array(np.array([[0.5]], np.float32), "half")]
    p = _model(tmp_path, nodes, inits, [1, 2], [1, 2])
    with pytest.raises(ModelError, match="shape inference"):
        load_model(p)


def test_squeeze_duplicate_axes_loads(tmp_path):
    """s8: axes [1, -2] name one axis; onnxruntime squeezes it once; the verifier died in np.squeeze."""
    p = _model(tmp_path, [H.make_node("Squeeze", ["x", "ax"], ["logits"])], [nh.from_array(np.array([1, -2], np.int64), "ax")],
               ["N", 1, 2], ["N", 2])
    x = np.array([[[0.3, 0.7]]], np.float32)
    assert np.array_equal(load_model(p).forward(x), ort_session(p).run(None, {"x": x})[0])


def test_dry_run_refuses_rank_mismatch(tmp_path, monkeypatch):
    """An op whose output rank the verifier reads wrongly is refused at load, not run silently."""
    p = _model(tmp_path, [H.make_node("Squeeze", ["x", "ax"], ["s"]), H.make_node("Flatten", ["s"], ["logits"], axis=1)],
               [nh.from_array(np.array([2], np.int64), "ax")], ["N", 3, 1], ["N", 3])
    load_model(p)
    monkeypatch.setattr(Squeeze, "forward", lambda self, x, *_: np.asarray(x)[:, :, 0, None])
    with pytest.raises(ModelError, match="rank|shape"):
        load_model(p)
