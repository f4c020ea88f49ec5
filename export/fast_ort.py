"""Optional fast path: onnxruntime with the linf ops as Python custom ops on nets' distance kernel.

The exported file stays the portable default (function bodies, plain onnxruntime). This module
runs the *same file* faster when `onnxruntime-extensions` is installed (`pip install
onnxruntime-extensions`; not a dependency of the package): it rewrites an in-memory copy so that
every `linf::LinfDist` / `linf::LinfDistConv` node becomes an `ai.onnx.contrib` Python op computing
the op's spec with `nets.ops.lp_dist` / `lp_dist_conv` at p = ∞ (the C++ AVX2 kernel when built),
then opens an onnxruntime session with the extensions library. The result is bit-identical to the
function bodies: the ℓ∞ distance is exact-then-rounded in both, and the bias is one float32 add.

Limits (onnxruntime-extensions' design): Python ops exist only in domain `ai.onnx.contrib`, are
registered process-wide, take scalar attributes only (the conv geometry travels as one string
attribute), and copy inputs and outputs through Python on every call.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper as h
from onnx import numpy_helper as nh

from common import linf_spec
from common.errors import ModelError
from common.runtime import session_options

CONTRIB = "ai.onnx.contrib"
_REGISTERED = False


def _extensions():
    try:
        import onnxruntime_extensions as ortx
    except ImportError:
        raise ModelError("the fast path needs onnxruntime-extensions (pip install onnxruntime-extensions)") from None
    return ortx


def linf_dist_op(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """LinfDist by the spec: max_d |x − w| (nets kernel, exact then rounded) + b in float32."""
    from nets.ops import lp_dist

    with torch.no_grad():
        y = lp_dist(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(w)), math.inf)
    return (y.numpy() + b).astype(np.float32)


def linf_dist_conv_op(x: np.ndarray, w: np.ndarray, b: np.ndarray, geometry: str) -> np.ndarray:
    """LinfDistConv by the spec; ``geometry`` = "s0,s1,top,left,bottom,right,d0,d1"."""
    from nets.ops import lp_dist_conv

    s0, s1, pt, pl, pb, pr, d0, d1 = (int(v) for v in geometry.split(","))
    if (pt, pl) != (pb, pr):  # torch pads symmetrically: pad explicitly (with zeros, like the spec)
        x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        pt = pl = 0
    with torch.no_grad():
        y = lp_dist_conv(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(w)),
                         math.inf, stride=(s0, s1), padding=(pt, pl), dilation=(d0, d1))
    return (y.numpy() + b.reshape(1, -1, 1, 1)).astype(np.float32)


def register_pyops() -> str:
    """Register the two Python ops (once per process); returns the extensions library path."""
    global _REGISTERED
    ortx = _extensions()
    f32 = ortx.PyCustomOpDef.dt_float
    if not _REGISTERED:
        ortx.onnx_op(op_type=linf_spec.LINF_DIST, inputs=[f32] * 3, outputs=[f32])(linf_dist_op)
        ortx.onnx_op(op_type=linf_spec.LINF_DIST_CONV, inputs=[f32] * 3, outputs=[f32],
                     attrs=["geometry"])(linf_dist_conv_op)
        _REGISTERED = True
    return ortx.get_library_path()


def rewrite_for_pyops(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose linf nodes are ai.onnx.contrib Python ops (missing B → zeros).

    Raises ModelError if an attached linf function body is not the canonical one (then the file's
    portable semantics and the fast path's could differ).
    """
    opset = next((o.version for o in model.opset_import if o.domain == ""), 0)
    for fn in model.functions:
        if fn.domain == linf_spec.DOMAIN:
            linf_spec.check_function(fn, opset)
    inits = {t.name: t for t in model.graph.initializer}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for node in m.graph.node:
        if node.domain != linf_spec.DOMAIN:
            continue
        w = inits.get(node.input[1])
        if w is None:
            raise ModelError(f"fast path: {node.op_type} node {node.name!r} needs W as an initializer")
        if len(node.input) < 3 or not node.input[2]:
            zeros = nh.from_array(np.zeros(w.dims[0], np.float32), f"{node.name or node.output[0]}.zero_bias")
            m.graph.initializer.append(zeros)
            del node.input[2:]
            node.input.append(zeros.name)
        if node.op_type == linf_spec.LINF_DIST_CONV:
            g = linf_spec.conv_attributes(node)
            geometry = ",".join(str(v) for v in (*g["strides"], *g["pads"], *g["dilations"]))
            del node.attribute[:]
            node.attribute.append(h.make_attribute("geometry", geometry))
        node.domain = CONTRIB
    keep = [f for f in m.functions if f.domain != linf_spec.DOMAIN]
    del m.functions[:]
    m.functions.extend(keep)
    imports = [o for o in m.opset_import if o.domain != linf_spec.DOMAIN]
    del m.opset_import[:]
    m.opset_import.extend(imports + [h.make_opsetid(CONTRIB, 1)])
    return m


def fast_session(model: onnx.ModelProto | str | Path, threads: int = 1):
    """An onnxruntime session running ``model`` with the linf ops on nets' kernel (module doc)."""
    import onnxruntime as ort

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    lib = register_pyops()
    so = session_options(threads)  # the pinned options (graph as written), plus the extensions library
    so.register_custom_ops_library(lib)
    return ort.InferenceSession(rewrite_for_pyops(model).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
