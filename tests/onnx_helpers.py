"""Small ONNX builders shared by the verifier tests: a one-input model from nodes, save, run in the
pinned onnxruntime configuration, and two reference nets (pure ℓ∞-dist, ReLU MLP)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from common import linf_spec
from common.runtime import ort_session

OPSET = 18


def make_model(nodes, inits: dict, in_shape, out_k, *, linf_ops=(), opset=OPSET, in_name="input"):
    """A model with one float input [N, *in_shape] and output 'logits' [N, out_k]."""
    g = h.make_graph(
        nodes,
        "g",
        [h.make_tensor_value_info(in_name, T.FLOAT, ["N", *in_shape])],
        [h.make_tensor_value_info("logits", T.FLOAT, ["N", out_k])],
        [nh.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    imports = [h.make_opsetid("", opset)]
    funcs = []
    if linf_ops:
        imports.append(h.make_opsetid("linf", 1))
        funcs = linf_spec.make_linf_functions(opset, list(linf_ops))
    m = h.make_model(g, opset_imports=imports, functions=funcs)
    m.ir_version = 9
    return m


def save(m, tmp_path, name="m.onnx") -> Path:
    p = Path(tmp_path) / name
    onnx.save(m, str(p))
    return p


def ort_run(path, x):
    """onnxruntime's outputs in the pinned configuration of theorem (b) (common/runtime.py)."""
    s = ort_session(path)
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def pure_linf_net(rng, d=12, widths=(16, 16), k=5, mean_shift=True):
    """Flatten -> LinfDist... -> Neg: the shape of our exported pure ℓ∞-dist nets."""
    nodes = [h.make_node("Flatten", ["input"], ["h0"])]
    inits = {}
    prev, cur = d, "h0"
    for i, w in enumerate(list(widths) + [k]):
        inits[f"W{i}"] = rng.normal(size=(w, prev)).astype(np.float32)
        ins = [cur, f"W{i}"]
        if mean_shift or i == len(widths):
            inits[f"B{i}"] = rng.normal(size=w).astype(np.float32)
            ins.append(f"B{i}")
        nodes.append(h.make_node("LinfDist", ins, [f"h{i + 1}"], domain="linf"))
        cur, prev = f"h{i + 1}", w
    nodes.append(h.make_node("Neg", [cur], ["logits"]))
    return make_model(nodes, inits, [d], k, linf_ops=["LinfDist"])


def mlp(rng, d=12, hidden=16, k=4, act="Relu"):
    inits = {
        "W1": rng.normal(size=(hidden, d)).astype(np.float32),
        "B1": rng.normal(size=hidden).astype(np.float32),
        "W2": rng.normal(size=(hidden, k)).astype(np.float32),
        "B2": rng.normal(size=k).astype(np.float32),
    }
    nodes = [
        h.make_node("Gemm", ["input", "W1", "B1"], ["a"], transB=1),
        h.make_node(act, ["a"], ["r"]),
        h.make_node("MatMul", ["r", "W2"], ["m"]),
        h.make_node("Add", ["m", "B2"], ["logits"]),
    ]
    return make_model(nodes, inits, [d], k)
