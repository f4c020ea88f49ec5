"""Model-local functions named like an op onnxruntime has a kernel for (issue 12, root cause 2).

onnxruntime resolves a node against its own operator registry first: a model-local FunctionProto
in the default domain (``Relu``, ``Mul``), ``com.microsoft`` (``Gelu``, ``FusedGemm``) or
``ai.onnx.ml`` is ignored when a schema exists and the node runs onnxruntime's kernel; without a
schema the model fails to load (default domain, ``ai.onnx.ml``) or the body runs
(``com.microsoft::MyFn``). Only functions of domains onnxruntime registers nothing for are certain
to run as written, so the loader inlines those and refuses the others (one-line ModelError).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from verify.certify.certifier import CertifyConfig, certify_batch
from common.errors import ModelError
from verify.front.model import load_model
from common.runtime import ort_logits, ort_session

OPSET = 18


def _fn(domain, name, body, inputs=("X",), opset=OPSET, extra_imports=()):
    """A FunctionProto ``domain::name(inputs) -> Y`` with the given body nodes."""
    imports = [h.make_opsetid("", opset)] + [h.make_opsetid(d, 1) for d in extra_imports]
    return h.make_function(domain, name, list(inputs), ["Y"], body, imports)


def _model(nodes, functions, inits=None, opset=OPSET, domains=()):
    """x [N, 2] -> nodes -> logits [N, 2] with model-local ``functions``."""
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["N", 2])],
                     [h.make_tensor_value_info("logits", T.FLOAT, ["N", 2])],
                     [nh.from_array(np.asarray(v, np.float32), k) for k, v in (inits or {}).items()])
    imports = [h.make_opsetid("", opset)] + [h.make_opsetid(d, 1) for d in domains]
    m = h.make_model(g, opset_imports=imports, functions=functions)
    m.ir_version = 9
    return m


def _save(m, tmp_path, name="m.onnx"):
    p = tmp_path / name
    p.write_bytes(m.SerializeToString())
    return p


def _unary_shadow(domain, name, opset=OPSET):
    """logits = domain::name(x - c), the local function's body being Neg."""
    body = [h.make_node("Neg", ["X"], ["Y"])]
    nodes = [h.make_node("Sub", ["x", "c"], ["s"]), h.make_node(name, ["s"], ["logits"], domain=domain)]
    doms = () if domain in ("", "ai.onnx") else (domain,)
    return _model(nodes, [_fn(domain, name, body, opset=opset)], {"c": [0.5, 0.25]}, opset, doms)


def _mul_shadow():
    """logits = Mul(x, c) with a local ``Mul`` function whose body is Div."""
    body = [h.make_node("Div", ["A", "B"], ["Y"])]
    nodes = [h.make_node("Mul", ["x", "c"], ["logits"])]
    return _model(nodes, [_fn("", "Mul", body, inputs=("A", "B"))], {"c": [0.5, 4.0]})


def _nested_shadow():
    """A custom-domain function (run as written) whose body calls ``Relu``, shadowed by a local
    default-domain ``Relu`` function with body Neg."""
    outer = _fn("foo", "Outer", [h.make_node("Sub", ["X", "C"], ["S"]), h.make_node("Relu", ["S"], ["Y"])],
                inputs=("X", "C"))
    relu = _fn("", "Relu", [h.make_node("Neg", ["X"], ["Y"])])
    nodes = [h.make_node("Outer", ["x", "c"], ["logits"], domain="foo")]
    return _model(nodes, [outer, relu], {"c": [0.5, 0.25]}, domains=("foo",))


SHADOWS = {
    "relu": lambda: _unary_shadow("", "Relu"),
    "ai.onnx-relu": lambda: _unary_shadow("ai.onnx", "Relu"),
    "mul": _mul_shadow,
    "ms-gelu": lambda: _unary_shadow("com.microsoft", "Gelu"),
    "ms-fastgelu": lambda: _unary_shadow("com.microsoft", "FastGelu"),
    "ml-normalizer": lambda: _unary_shadow("ai.onnx.ml", "Normalizer"),
    "gelu-opset20": lambda: _unary_shadow("", "Gelu", opset=20),
    "nested": _nested_shadow,
}

X = np.array([[0.1, 0.9], [0.9, 0.1], [0.6, 0.2], [0.2, 0.7]], np.float32)


def _certified_hold_in_onnxruntime(path, eps) -> bool:
    """Certify X (labels = our own forward's argmax) at ``eps``; True when every certified sample
    keeps its label in onnxruntime at x and at the ball's float32 corners (or the model is refused)."""
    try:
        model = load_model(path)
    except ModelError:
        return True
    y = np.argmax(model.forward(X), axis=1)
    res = certify_batch(model, X, y, CertifyConfig(eps))
    sess = ort_session(path)
    for k, status in enumerate(res.status):
        if status != "certified":
            continue
        pts = np.stack([X[k] + np.float32(s * eps) for s in ([0, 0], [-1, -1], [-1, 1], [1, -1], [1, 1])])
        pts = np.clip(pts, 0, 1).astype(np.float32)
        if np.any(np.argmax(ort_logits(sess, pts), axis=1) != y[k]):
            return False
    return True


@pytest.mark.parametrize("case", sorted(SHADOWS))
def test_shadowing_function_is_refused(case, tmp_path):
    """Each of these certified labels onnxruntime never outputs; now a one-line refusal."""
    p = _save(SHADOWS[case](), tmp_path)
    assert _certified_hold_in_onnxruntime(p, 0.01)
    with pytest.raises(ModelError, match="onnxruntime") as e:
        load_model(p)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("case", ["relu", "mul", "ms-gelu", "ml-normalizer", "gelu-opset20", "nested"])
def test_onnxruntime_runs_its_kernel_not_the_shadowing_body(case, tmp_path):
    """The premise, measured: onnxruntime's output is not the function body's (Neg / Div)."""
    sess = ort_session(SHADOWS[case]())
    y = ort_logits(sess, X)
    body = X / np.float32([0.5, 4.0]) if case == "mul" else -(X - np.float32([0.5, 0.25]))
    assert not np.array_equal(y, body)


@pytest.mark.parametrize("domain,name,opset", [
    ("", "Gelu", 18),          # no schema at opset 18: onnxruntime refuses the model, body never runs
    ("", "MyFn", 18),
    ("ai.onnx.ml", "MyFn", 18),
])
def test_default_and_ml_domain_functions_never_run(domain, name, opset, tmp_path):
    m = _unary_shadow(domain, name, opset)
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        ort_session(m)
    with pytest.raises(ModelError, match="onnxruntime"):
        load_model(_save(m, tmp_path))


@pytest.mark.parametrize("domain,name,accepted", [
    ("foo", "MyNeg", True), ("my.custom", "Negate", True), ("pkg.torch.sub", "Linear_fc1", True),
    # named like an onnxruntime operator, in a custom domain: onnxruntime runs these bodies, but
    # some of its code keys on the op name alone (test below), so they are refused
    ("foo", "Relu", False), ("foo", "Gelu", False), ("com.example", "FusedGemm", False),
    # domains onnxruntime registers operators in: refused as a whole, even where onnxruntime
    # happens to run the body (com.microsoft::MyFn, com.microsoft::Relu: no such schema)
    ("com.microsoft", "MyFn", False), ("com.microsoft", "Relu", False), ("com.microsoft.nchwc", "Relu", False),
    ("com.ms.internal.nhwc", "Relu", False), ("ai.onnx.preview.training", "Relu", False), ("", "Relu", False),
    ("com.microsoft", "Gelu", False), ("com.microsoft", "FusedGemm", False), ("ai.onnx.ml", "Normalizer", False),
])
def test_rule_matches_what_onnxruntime_runs(domain, name, accepted, tmp_path):
    """Whenever the loader accepts a local function, onnxruntime runs exactly its body: our forward
    equals onnxruntime's output bit for bit and equals the body (Neg)."""
    p = _save(_unary_shadow(domain, name), tmp_path)
    if not accepted:
        with pytest.raises(ModelError, match="onnxruntime"):
            load_model(p)
        return
    model = load_model(p)
    y = ort_logits(ort_session(p), X)
    assert np.array_equal(model.forward(X), y)
    assert np.array_equal(y, -(X - np.float32([0.5, 0.25])))


def test_custom_domain_function_named_like_an_op_is_refused(tmp_path):
    """onnxruntime aborts the whole process on a one-input foo::Mul (code that reads a Mul node's
    second input whatever its domain), or runs the body: op names are refused in every domain."""
    p = _save(_unary_shadow("foo", "Mul"), tmp_path)
    code = ("import sys, numpy as np; sys.path.insert(0, sys.argv[2]); from common.runtime import *; "
            "x = np.array([[0.1, 0.9]], np.float32); "
            "print(ort_logits(ort_session(sys.argv[1]), x).tolist() == (np.float32([0.5, 0.25]) - x).tolist())")
    r = subprocess.run([sys.executable, "-c", code, str(p), os.getcwd()], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode != 0 or r.stdout.strip() == "True", r.stdout  # never silently something else
    with pytest.raises(ModelError, match="name of an onnxruntime operator"):
        load_model(p)


def test_refuses_every_domain_onnxruntime_registers_ops_in(tmp_path):
    """Probe onnxruntime's own registry: a function shadowing any op of any of its domains is refused."""
    from common.runtime import kernel_registry

    doms = kernel_registry()[0]
    assert {"", "com.microsoft", "ai.onnx.ml", "com.microsoft.nchwc"} <= doms
    try:
        import onnxruntime.capi.onnxruntime_pybind11_state as C

        schemas = C.get_all_operator_schema()
    except (ImportError, AttributeError):
        pytest.skip("this onnxruntime build does not list its schemas")
    seen = {}
    for s in schemas:
        seen.setdefault(s.domain, s.name)
    for domain, name in seen.items():
        assert domain in doms
        with pytest.raises(ModelError, match="onnxruntime"):
            load_model(_save(_unary_shadow(domain, name), tmp_path, f"{domain or 'onnx'}.onnx"))


def test_linf_domain_check_unchanged(tmp_path):
    """linf functions keep their own check: a non-canonical linf::Relu is refused as before."""
    with pytest.raises(ModelError, match="unknown op linf::Relu"):
        load_model(_save(_unary_shadow("linf", "Relu"), tmp_path))


@pytest.mark.parametrize("imports", [[], [("", 13)]])
def test_function_must_import_the_models_default_opset(imports, tmp_path):
    """Without the import onnxruntime refuses the model; with another version it need not run the
    body as the model's opset defines: refused at load, not certified."""
    f = h.make_function("foo", "F", ["X"], ["Y"], [h.make_node("Neg", ["X"], ["Y"])],
                        [h.make_opsetid(d, v) for d, v in imports])
    m = _model([h.make_node("F", ["x"], ["logits"], domain="foo")], [f], domains=("foo",))
    with pytest.raises(ModelError, match="default-domain opset"):
        load_model(_save(m, tmp_path))
