"""What exporters write, through the loader (issue 13): torch.onnx.export's dynamo files (external
data, an empty ``.data`` file, a fixed batch dimension, or a dynamic one with ``dynamic_shapes``),
TorchScript files (no constant folding, initializers listed as inputs, a fixed batch), weights
given as ``Constant`` / ``ConstantOfShape`` nodes, a Keras/TensorFlow-style NHWC graph as tf2onnx
emits it; one model identity over file and external data; and the one-line unsupported-op error.
Every loaded model's forward is compared with onnxruntime's."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from torch import nn

from certify_helpers import one_torch_thread  # noqa: F401  (module fixture, used through pytestmark)
from test_exporters import export
from common.errors import ModelError
from verify.front.loader import model_identity
from verify.front.model import load_model
from common.runtime import ort_logits, ort_session

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _agrees(path, shape, n=5, seed=0, exact=False):
    """load_model(path) and its forward against onnxruntime on n random inputs in [0, 1]."""
    m = load_model(path)
    x = np.random.default_rng(seed).random((n, *shape), dtype=np.float32)
    y, want = m.forward(x), ort_logits(ort_session(path), x)
    if exact:
        assert np.array_equal(y, want)
    else:
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    return m


def _torch_export(net, path, x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (x,), str(path), **kw)
    return path


def test_dynamo_linf_external_data_and_identity(tmp_path):
    path, _ = export("linf", "dynamo", tmp_path)
    data = path.with_name(path.name + ".data")
    m = _agrees(path, (1, 4, 4), n=7, exact=True)  # 7 rows, fixed batch 2: chunks
    assert m.batch_size == 2 and m.lipschitz() == 1.0
    assert [op.op_type for op in m.graph.nodes].count("LinfDist") == 3
    before = model_identity(path)
    assert m.sha256 == before
    raw = bytearray(data.read_bytes())
    raw[5] ^= 0x40  # one weight bit in the external data changes the identity
    data.write_bytes(bytes(raw))
    assert model_identity(path) != before


def test_dynamo_dynamic_batch(tmp_path):
    from test_exporters import _net

    net = _net("linf")
    p = _torch_export(net, tmp_path / "m.onnx", torch.rand(2, 1, 4, 4), dynamo=True,
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    m = _agrees(p, (1, 4, 4), n=5, exact=True)
    assert m.batch_size is None and m.lipschitz() == 1.0


def test_dynamo_empty_external_data_file(tmp_path):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    p = _torch_export(net, tmp_path / "m.onnx", torch.rand(1, 1, 4, 4), dynamo=True)
    data = p.with_name(p.name + ".data")
    assert data.is_file() and data.stat().st_size == 0  # what the exporter writes for small weights
    m = _agrees(p, (1, 4, 4), n=4)
    assert m.batch_size == 1 and m.sha256 == model_identity(p)


@pytest.mark.parametrize("options", [
    dict(do_constant_folding=False, keep_initializers_as_inputs=True),
    dict(do_constant_folding=False),
    dict(keep_initializers_as_inputs=True, dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}),
])
def test_torchscript_variants(options, tmp_path):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        net[2].running_mean.uniform_(-0.5, 0.5)
        net[2].running_var.uniform_(0.5, 2.0)
    p = _torch_export(net, tmp_path / "m.onnx", torch.rand(3, 1, 4, 4), dynamo=False,
                      input_names=["x"], output_names=["y"], **options)
    m = _agrees(p, (1, 4, 4), n=5)
    assert m.batch_size == (None if "dynamic_axes" in options else 3)


def _as_constant_nodes(path, out):
    """The same model with every initializer given as a Constant node (older exporters, simplifiers)."""
    m = onnx.load(str(path))
    consts = [h.make_node("Constant", [], [t.name], value=t, name=f"const_{t.name}") for t in m.graph.initializer]
    names = {t.name for t in m.graph.initializer}
    keep_inputs = [i for i in m.graph.input if i.name not in names]
    del m.graph.input[:]
    m.graph.input.extend(keep_inputs)
    del m.graph.initializer[:]
    nodes = consts + list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    onnx.save(m, str(out))
    return out


def test_initializers_as_constant_nodes(tmp_path):
    path, _ = export("linf", "torchscript", tmp_path)
    p = _as_constant_nodes(path, tmp_path / "const.onnx")
    assert not onnx.load(str(p)).graph.initializer
    m0, m = load_model(path), _agrees(p, (1, 4, 4), exact=True)
    assert m.lipschitz() == m0.lipschitz() == 1.0
    assert [op.op_type for op in m.graph.nodes] == [op.op_type for op in m0.graph.nodes]


def test_bias_from_constant_of_shape(tmp_path):
    """A bias made by ConstantOfShape (value 0.25) is folded exactly: the layer stays one node."""
    rng = np.random.default_rng(3)
    w = rng.normal(size=(3, 6)).astype(np.float32)
    nodes = [h.make_node("ConstantOfShape", ["k"], ["b"], value=h.make_tensor("v", T.FLOAT, [1], [0.25])),
             h.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["N", 6])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", 3])],
                     [nh.from_array(w, "W"), nh.from_array(np.array([3], np.int64), "k")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 18)])
    m.ir_version = 9
    p = tmp_path / "m.onnx"
    onnx.save(m, str(p))
    vm = _agrees(p, (6,))
    assert [op.op_type for op in vm.graph.nodes] == ["Gemm"]
    assert np.array_equal(vm.last_affine().bias, np.full(3, 0.25, np.float32))


def _keras_nhwc(batch="unk__12"):
    """A small Keras CNN as tf2onnx writes it: NHWC input, Transpose to NCHW before Conv, back to NHWC
    before Keras' Flatten (Reshape to [-1, F]), Dense as MatMul + Add, Softmax."""
    rng = np.random.default_rng(4)
    inits = [nh.from_array(rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32), "sequential/conv2d/Conv2D/ReadVariableOp:0"),
             nh.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "sequential/conv2d/BiasAdd/ReadVariableOp:0"),
             nh.from_array(np.array([-1, 64], np.int64), "const_fold_opt__20"),
             nh.from_array(rng.normal(0, 0.3, (64, 10)).astype(np.float32), "sequential/dense/MatMul/ReadVariableOp:0"),
             nh.from_array(rng.normal(0, 0.1, 10).astype(np.float32), "sequential/dense/BiasAdd/ReadVariableOp:0")]
    nodes = [
        h.make_node("Transpose", ["input_1"], ["t0"], perm=[0, 3, 1, 2], name="sequential/conv2d/Conv2D__6"),
        h.make_node("Conv", ["t0", inits[0].name, inits[1].name], ["c0"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                    strides=[1, 1], dilations=[1, 1], group=1, name="sequential/conv2d/BiasAdd"),
        h.make_node("Relu", ["c0"], ["r0"], name="sequential/conv2d/Relu"),
        h.make_node("MaxPool", ["r0"], ["p0"], kernel_shape=[2, 2], strides=[2, 2], name="sequential/max_pooling2d/MaxPool"),
        h.make_node("Transpose", ["p0"], ["t1"], perm=[0, 2, 3, 1], name="sequential/max_pooling2d/MaxPool__16"),
        h.make_node("Reshape", ["t1", "const_fold_opt__20"], ["f0"], name="sequential/flatten/Reshape"),
        h.make_node("MatMul", ["f0", inits[3].name], ["m0"], name="sequential/dense/MatMul"),
        h.make_node("Add", ["m0", inits[4].name], ["logits"], name="sequential/dense/BiasAdd"),
        h.make_node("Softmax", ["logits"], ["dense"], axis=1, name="sequential/dense/Softmax"),
    ]
    g = h.make_graph(nodes, "tf2onnx", [h.make_tensor_value_info("input_1", T.FLOAT, [batch, 8, 8, 1])],
                     [h.make_tensor_value_info("dense", T.FLOAT, [batch, 10])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 15), h.make_opsetid("ai.onnx.ml", 2)],
                     producer_name="tf2onnx", producer_version="1.16.1")
    m.ir_version = 8
    return m


@pytest.mark.parametrize("batch", ["unk__12", 1])
def test_keras_nhwc_graph(batch, tmp_path):
    p = tmp_path / "keras.onnx"
    onnx.save(_keras_nhwc(batch), str(p))
    m = _agrees(p, (8, 8, 1), n=5)
    assert m.input_shape == (8, 8, 1) and m.batch_size == (None if batch == "unk__12" else 1)
    lo, hi = m.interval(*(np.full((2, 8, 8, 1), v, np.float32) for v in (0.2, 0.3)))
    xs = np.random.default_rng(1).uniform(0.2, 0.3, (20, 8, 8, 1)).astype(np.float32)
    ys = ort_logits(ort_session(p), xs)
    assert np.all(lo[:1] <= ys) and np.all(ys <= hi[:1])


def _unsupported_graph(types):
    """x -> one chain of the given (unsupported) op types -> y."""
    nodes, cur = [], "x"
    for i, t in enumerate(types):
        nodes.append(h.make_node(t, [cur], [f"v{i}"], name=f"node_{i}", domain="custom"))
        cur = f"v{i}"
    nodes.append(h.make_node("Identity", [cur], ["y"]))
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["N", 4])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", 4])])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 18), h.make_opsetid("custom", 1)])
    m.ir_version = 9
    return m


@pytest.mark.parametrize("kinds", [3, 500])
def test_unsupported_ops_one_short_line(kinds, tmp_path):
    """500 unsupported nodes (3 or 500 distinct types): one line, types with counts, then the
    supported set; its length does not grow with the model."""
    from verify.front.model import build_graph
    from verify.front.loader import RawModel
    from verify.ops._op_list import supported_ops

    types = [f"Op{i % kinds}" for i in range(500)]
    m = _unsupported_graph(types)
    raw = RawModel(m, "0" * 64, tmp_path / "m.onnx", {"": 18, "custom": 1}, "x", [4], None, "y", 4)
    with pytest.raises(ModelError) as e:
        build_graph(raw)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("unsupported ops: custom::Op0 ×")
    head, tail = msg.split(". Supported: ")
    assert tail == " ".join(supported_ops())
    assert len(head) < 400
    if kinds == 3:
        assert head == "unsupported ops: custom::Op0 ×167, custom::Op1 ×167, custom::Op2 ×166"
    else:
        assert head.endswith("and 492 more types")
