"""Interval bounds of ``linf::LinfDist`` layers evaluated by onnxruntime (a speed path for IBP).

For a box [lo, hi] and weights W, the exact bounds of ``max_d |x_d − w_d|`` over the box are

    upper = max_d max(hi_d − w_d, w_d − lo_d),
    lower = max(0, max_d max(lo_d − w_d, w_d − hi_d)) = max(0, −min_d(w_d − lo_d), −min_d(hi_d − w_d)).

In float32 every difference is one correctly rounded subtraction and max/min/negation are exact,
so the computed values are RN(exact) (rounding is monotone); one outward step each makes them sound
— the same values the core's ``op_linfdist.dist_box`` produces (checked by a probe when the layer
is built; any mismatch or onnxruntime failure disables this path). onnxruntime runs the two
differences per row of W in a ``Scan`` (the portable body's fast form), ~2 forwards of work,
against ~4 for the core's torch kernel.
"""

from __future__ import annotations

import numpy as np

from verify.ops.base import Box
from verify.bounds.rounding import step_down, step_up

__all__ = ["OrtLinfBox"]


def _body():
    from onnx import TensorProto as T
    from onnx import helper as h

    nodes = [
        h.make_node("Sub", ["HI", "w"], ["a"]),  # hi − w
        h.make_node("Sub", ["w", "LO"], ["b"]),  # w − lo
        h.make_node("Constant", [], ["ax"], value_ints=[1]),
        h.make_node("ReduceMax", ["a", "ax"], ["amax"], keepdims=0),
        h.make_node("ReduceMax", ["b", "ax"], ["bmax"], keepdims=0),
        h.make_node("ReduceMin", ["a", "ax"], ["amin"], keepdims=0),
        h.make_node("ReduceMin", ["b", "ax"], ["bmin"], keepdims=0),
        h.make_node("Max", ["amax", "bmax"], ["up"]),
        h.make_node("Min", ["amin", "bmin"], ["mn"]),
        h.make_node("Neg", ["mn"], ["low"]),
    ]
    return h.make_graph(nodes, "linf_box_row", [h.make_tensor_value_info("w", T.FLOAT, None)],
                        [h.make_tensor_value_info("up", T.FLOAT, None),
                         h.make_tensor_value_info("low", T.FLOAT, None)])


def _session(w: np.ndarray, threads: int):
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    d = w.shape[1]
    graph = h.make_graph(
        [h.make_node("Scan", ["W"], ["UPt", "LOWt"], num_scan_inputs=1, body=_body()),
         h.make_node("Transpose", ["UPt"], ["UP"], perm=[1, 0]),
         h.make_node("Transpose", ["LOWt"], ["LOW"], perm=[1, 0])],
        "linf_box",
        [h.make_tensor_value_info("LO", T.FLOAT, ["N", d]), h.make_tensor_value_info("HI", T.FLOAT, ["N", d])],
        [h.make_tensor_value_info("UP", T.FLOAT, ["N", w.shape[0]]),
         h.make_tensor_value_info("LOW", T.FLOAT, ["N", w.shape[0]])],
        [nh.from_array(np.ascontiguousarray(w, np.float32), "W")])
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    m.ir_version = 9
    onnx.checker.check_model(m)
    from common.runtime import ort_session

    return ort_session(m, threads=threads)


class OrtLinfBox:
    """``dist_box`` of one ℓ∞-dist layer via onnxruntime; :meth:`build` returns None if unusable."""

    def __init__(self, sess):
        self.sess = sess

    @classmethod
    def build(cls, w: np.ndarray, threads: int = 1) -> "OrtLinfBox | None":
        try:
            obj = cls(_session(np.asarray(w, np.float32), threads))
        except Exception:  # any failure only disables the speed path
            return None
        from verify.ops.op_linfdist import dist_box

        rng = np.random.default_rng(0)
        lo = rng.normal(0, 1, (4, w.shape[1])).astype(np.float32)
        hi = lo + rng.random(lo.shape).astype(np.float32)
        want, got = dist_box(lo, hi, np.asarray(w, np.float32)), obj.bounds(lo, hi)
        ok = all(np.array_equal(a, b) for a, b in zip(want, got))
        return obj if ok else None

    def bounds(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sound float32 (lower, upper) of max_d |x_d − w_d| over the box (one step outward)."""
        up, low = self.sess.run(["UP", "LOW"], {"LO": np.ascontiguousarray(lo, np.float32),
                                                 "HI": np.ascontiguousarray(hi, np.float32)})
        return np.maximum(step_down(low), np.float32(0.0)), step_up(up)

    def interval(self, xb: Box, bias: Box | None) -> Box:
        """The layer's box with the optional bias (one rounded add, one step outward)."""
        lo, hi = self.bounds(xb.lo, xb.hi)
        if bias is None:
            return Box(lo, hi)
        return Box(step_down(lo + bias.lo.astype(np.float32)), step_up(hi + bias.hi.astype(np.float32)))
