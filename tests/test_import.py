"""Safe ONNX import: forward vs onnxruntime, shapes, unsupported ops, external data, fusion."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from common.errors import ModelError
from verify.front.model import load_model
from onnx_helpers import OPSET, make_model, mlp, ort_run, pure_linf_net, save


def test_pure_linf_forward_matches_ort_bit_exactly(tmp_path):
    rng = np.random.default_rng(0)
    p = save(pure_linf_net(rng), tmp_path)
    m = load_model(p)
    x = rng.random((9, 12), dtype=np.float32)
    assert np.array_equal(m.forward(x), ort_run(p, x))
    assert m.num_classes == 5 and m.input_shape == (12,) and len(m.sha256) == 64
    assert m.lipschitz() == 1.0
    la = m.last_affine()
    assert la is None  # a pure net ends in Neg(LinfDist): no affine layer


def test_mlp_forward_close_to_ort_and_last_affine(tmp_path):
    rng = np.random.default_rng(1)
    p = save(mlp(rng), tmp_path)
    m = load_model(p)
    x = rng.random((6, 12), dtype=np.float32)
    np.testing.assert_allclose(m.forward(x), ort_run(p, x), rtol=1e-5, atol=1e-5)
    la = m.last_affine()
    assert la is not None and la.input_name == "r"
    r = np.maximum(x @ m.graph.constants["W1"].T + m.graph.constants["B1"], 0)
    np.testing.assert_allclose(r @ la.weight.T + la.bias, ort_run(p, x), rtol=1e-4, atol=1e-4)


def test_interval_contains_ort_outputs(tmp_path):
    rng = np.random.default_rng(2)
    for model in (pure_linf_net(rng), mlp(rng, act="Tanh")):
        p = save(model, tmp_path)
        m = load_model(p)
        x = rng.random((4, 12), dtype=np.float32)
        lo, hi = m.interval(x - np.float32(0.05), x + np.float32(0.05))
        for _ in range(20):
            xs = (x + rng.uniform(-0.05, 0.05, x.shape)).astype(np.float32)
            xs = np.clip(xs, x - np.float32(0.05), x + np.float32(0.05))
            y = ort_run(p, xs)
            assert np.all(lo <= y) and np.all(y <= hi)


def test_unsupported_ops_listed_in_one_error(tmp_path):
    nodes = [
        h.make_node("Selu", ["input"], ["a"], name="e1"),
        h.make_node("Relu", ["a"], ["b"]),
        h.make_node("HardSwish", ["b"], ["c"], name="hs"),
        h.make_node("Identity", ["c"], ["logits"]),
    ]
    m = make_model(nodes, {}, [4], 4)
    with pytest.raises(ModelError) as e:
        load_model(save(m, tmp_path))
    msg = str(e.value)
    assert "unsupported ops: Selu ×1, HardSwish ×1." in msg and "Supported: " in msg and "LinfDist" in msg
    assert "\n" not in msg


def test_unsupported_attribute_is_named(tmp_path):
    w = np.ones((2, 2, 3, 3), np.float32)
    nodes = [
        h.make_node("Conv", ["input", "W"], ["c"], name="grouped", group=2),
        h.make_node("Flatten", ["c"], ["logits"]),
    ]
    m = make_model(nodes, {"W": w}, [4, 3, 3], 2)
    with pytest.raises(ModelError, match="grouped.*group"):
        load_model(save(m, tmp_path))


def _external_model(tmp_path, location: str):
    rng = np.random.default_rng(3)
    m = mlp(rng)
    for t in m.graph.initializer:
        if t.name == "W1":
            t.data_location = T.EXTERNAL
            t.ClearField("raw_data")
            t.ClearField("float_data")
            e = t.external_data.add()
            e.key, e.value = "location", location
    return save(m, tmp_path)


@pytest.mark.parametrize("loc", ["/etc/passwd", "../secret.bin", "sub/../../secret.bin", "link.bin"])
def test_external_data_outside_folder_refused(tmp_path, loc):
    d = tmp_path / "model"
    d.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(16 * 12, np.float32).tobytes())
    os.symlink(secret, d / "link.bin")
    p = _external_model(d, loc)
    with pytest.raises(ModelError, match="outside the model folder|absolute|'\\.\\.'"):
        load_model(p)


def test_external_data_inside_folder_loads(tmp_path):
    rng = np.random.default_rng(3)
    w = rng.normal(size=(16, 12)).astype(np.float32)
    (tmp_path / "w.bin").write_bytes(b"\0" * 8 + w.tobytes())
    p = _external_model(tmp_path, "w.bin")
    m = onnx.load(str(p), load_external_data=False)
    t = next(t for t in m.graph.initializer if t.name == "W1")
    e = t.external_data.add()
    e.key, e.value = "offset", "8"
    onnx.save(m, str(p))
    vm = load_model(p)
    assert np.array_equal(vm.graph.constants["W1"], w)
    x = rng.random((3, 12), dtype=np.float32)
    np.testing.assert_allclose(vm.forward(x), ort_run(p, x), rtol=1e-5, atol=1e-5)


def test_bad_files_give_model_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not protobuf at all \xff\xfe")
    with pytest.raises(ModelError):
        load_model(bad)


def test_float16_weights_refused(tmp_path):
    w = np.ones((4, 2), np.float16)
    nodes = [h.make_node("Cast", ["W"], ["w32"], to=T.FLOAT), h.make_node("MatMul", ["input", "w32"], ["logits"])]
    m = make_model(nodes, {"W": w}, [4], 2)
    with pytest.raises(ModelError, match="'W' has dtype float16"):
        load_model(save(m, tmp_path))


def test_two_inputs_refused(tmp_path):
    g = h.make_graph(
        [h.make_node("Add", ["a", "b"], ["logits"])],
        "g",
        [h.make_tensor_value_info("a", T.FLOAT, ["N", 3]), h.make_tensor_value_info("b", T.FLOAT, ["N", 3])],
        [h.make_tensor_value_info("logits", T.FLOAT, ["N", 3])],
    )
    m = h.make_model(g, opset_imports=[h.make_opsetid("", OPSET)])
    with pytest.raises(ModelError, match="exactly one input"):
        load_model(save(m, tmp_path))


def test_tampered_linf_function_refused(tmp_path):
    """A tampered body is no longer the canonical one: it is inlined (what onnxruntime runs), and
    its Scan is not an op the verifier reads."""
    rng = np.random.default_rng(4)
    m = pure_linf_net(rng)
    f = m.functions[0]
    for n in f.node:
        if n.op_type == "Add":
            n.op_type = "Sub"
    with pytest.raises(ModelError, match="unsupported ops: Scan"):
        load_model(save(m, tmp_path))


def test_missing_linf_function_refused(tmp_path):
    rng = np.random.default_rng(5)
    m = pure_linf_net(rng)
    del m.functions[:]
    with pytest.raises(ModelError, match="function body"):
        load_model(save(m, tmp_path))


def _exported(cfg, tmp_path, name, seed=0, ensemble=None):
    torch = pytest.importorskip("torch")
    from export.onnx_export import build_onnx
    from nets.models import build_model

    torch.manual_seed(seed)
    if ensemble:
        from nets.ensemble import ConvexEnsemble

        members = [build_model(cfg).eval() for _ in range(3)]
        model = ConvexEnsemble(members, [0.5, 0.25, 0.25], mode=ensemble).eval()
    else:
        model = build_model(cfg).eval()
    return save(build_onnx(model), tmp_path, name)


@pytest.mark.parametrize("ensemble", [None, "fusion", "voting"])
def test_models_exported_by_us_load_and_bound(tiny_cfg, tmp_path, ensemble):
    """Integration with export/: every architecture (and ensembles) loads, forward matches ORT, boxes
    contain ORT at random points of an ε-box, and the pure net is exactly 1-Lipschitz."""
    p = _exported(tiny_cfg, tmp_path, f"{tiny_cfg.arch}.onnx", ensemble=ensemble)
    m = load_model(p)
    rng = np.random.default_rng(0)
    x = rng.random((4, *m.input_shape), dtype=np.float32)
    y = ort_run(p, x)
    if tiny_cfg.arch == "linf" and not ensemble:
        assert np.array_equal(m.forward(x), y)
        assert m.lipschitz() == 1.0
    else:
        np.testing.assert_allclose(m.forward(x), y, rtol=1e-5, atol=1e-5 * (1 + np.abs(y).max()))
    eps = np.float32(0.05)
    lo, hi = np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1)
    blo, bhi = m.interval(lo, hi)
    for _ in range(6):
        xs = np.where(rng.random(x.shape) < 0.5, lo, hi).astype(np.float32)
        ys = ort_run(p, xs)
        assert np.all(blo <= ys) and np.all(ys <= bhi)


def test_torch_onnx_export_of_a_standard_cnn_loads(tmp_path):
    """A third-party style model: torch's TorchScript exporter (Conv+BN folded, MaxPool, the
    Shape/Gather/Unsqueeze/Concat/Reshape flatten idiom, Gemm, Sigmoid)."""
    torch = pytest.importorskip("torch")
    import warnings

    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.bn, self.p = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.MaxPool2d(2)
            self.l, self.o = nn.Linear(64, 16), nn.Linear(16, 10)

        def forward(self, x):
            x = self.p(torch.relu(self.bn(self.c(x))))
            x = x.view(x.size(0), -1)
            return self.o(torch.sigmoid(self.l(x)))

    torch.manual_seed(0)
    net = Net().eval()
    p = tmp_path / "t.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(net, (torch.rand(2, 1, 8, 8),), str(p), input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, dynamo=False, opset_version=17)
        except Exception as e:  # pragma: no cover - exporter availability
            pytest.skip(f"torch TorchScript exporter unavailable: {e}")
    m = load_model(p)
    rng = np.random.default_rng(0)
    x = rng.random((5, 1, 8, 8), dtype=np.float32)
    y = ort_run(p, x)
    np.testing.assert_allclose(m.forward(x), y, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(net(torch.from_numpy(x)).numpy(), y, rtol=1e-4, atol=1e-5)
    lo, hi = m.interval(np.clip(x - np.float32(0.02), 0, 1), np.clip(x + np.float32(0.02), 0, 1))
    assert np.all(lo <= y) and np.all(y <= hi)
    la = m.last_affine()
    assert la is not None and la.weight.shape == (10, 16)
    assert 0 < m.lipschitz() < np.inf


@pytest.mark.parametrize("form", ["gemm", "gemm_noC_add", "matmul_add_neg", "matmul"])
def test_last_affine_forms(form, tmp_path):
    rng = np.random.default_rng(6)
    W = rng.normal(size=(4, 6)).astype(np.float32)  # logits = h @ W.T + b
    b = rng.normal(size=4).astype(np.float32)
    first = [h.make_node("Relu", ["input"], ["h"])]
    if form == "gemm":
        nodes, inits, sign = [h.make_node("Gemm", ["h", "W", "b"], ["logits"], transB=1)], {"W": W, "b": b}, 1
    elif form == "gemm_noC_add":
        nodes = [h.make_node("Gemm", ["h", "Wt"], ["g"]), h.make_node("Add", ["b", "g"], ["logits"])]
        inits, sign = {"Wt": W.T.copy(), "b": b}, 1
    elif form == "matmul_add_neg":
        nodes = [h.make_node("MatMul", ["h", "Wt"], ["g"]), h.make_node("Add", ["g", "b"], ["a"]),
                 h.make_node("Neg", ["a"], ["logits"])]
        inits, sign = {"Wt": W.T.copy(), "b": b}, -1
    else:
        nodes, inits, sign = [h.make_node("MatMul", ["h", "Wt"], ["logits"])], {"Wt": W.T.copy()}, 1
        b = np.zeros(4, np.float32)
    p = save(make_model(first + nodes, inits, [6], 4), tmp_path)
    la = load_model(p).last_affine()
    assert la is not None and la.input_name == "h"
    assert np.array_equal(la.weight, sign * W) and np.array_equal(la.bias, sign * b)


def test_no_last_affine_when_shared_or_nonlinear(tmp_path):
    rng = np.random.default_rng(7)
    W = rng.normal(size=(6, 4)).astype(np.float32)
    nodes = [h.make_node("MatMul", ["input", "W"], ["g"]), h.make_node("Add", ["g", "g"], ["logits"])]
    assert load_model(save(make_model(nodes, {"W": W}, [6], 4), tmp_path)).last_affine() is None
    nodes = [h.make_node("MatMul", ["input", "W"], ["g"]), h.make_node("Relu", ["g"], ["logits"])]
    assert load_model(save(make_model(nodes, {"W": W}, [6], 4), tmp_path)).last_affine() is None


def test_fixed_batch_model_runs_in_chunks(tmp_path):
    rng = np.random.default_rng(10)
    m = pure_linf_net(rng)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 1
    p = save(m, tmp_path)
    vm = load_model(p)
    assert vm.batch_size == 1
    x = rng.random((5, 12), dtype=np.float32)
    want = np.concatenate([ort_run(p, x[i:i + 1]) for i in range(5)])
    assert np.array_equal(vm.forward(x), want)
    lo, hi = vm.interval(x, x)
    assert np.all(lo <= want) and np.all(want <= hi)
    with pytest.raises(ModelError, match="fixed batch size"):
        vm.propagate(x, x)
    with pytest.raises(ModelError, match="float32"):
        vm.forward(x.astype(np.float64))
    with pytest.raises(ModelError, match="lo <= hi"):
        vm.interval(x, x - 1)
