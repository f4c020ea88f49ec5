"""Issue 13: models with a fixed batch dimension (most VNN-COMP files) in `attack`, `audit` and the
witness replay, and ops that certify but the attack used to refuse (Pad, LeakyRelu, Slice,
Dropout: its own ONNX reader lacked them; the attack now evaluates the verifier's IR)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from attack_helpers import relu_mlp_onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from typer.testing import CliRunner

from verify.attack.pgd import AttackConfig
from verify.attack.replay import OrtReplayer
from verify.attack.runner import attack_arrays
from verify.attack.torch_graph import TorchGraph
from common.datasets import load_arrays
from verify.front.model import load_model
from common.runtime import ort_logits, ort_session
from verify_cli import app

runner = CliRunner()


def _fix_batch(path, b):
    """The same model with its input and output batch dimension fixed to ``b``."""
    m = onnx.load(str(path))
    for vi in (m.graph.input[0], m.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_value = b
    out = path.with_name(f"{path.stem}_b{b}.onnx")
    onnx.save(m, str(out))
    return out


def _labelled(path, x):
    """Data labelled with onnxruntime's own predictions (every sample correctly classified)."""
    return np.asarray(ort_logits(ort_session(path), x).argmax(1), np.int64)


@pytest.fixture(scope="module")
def digits():
    x, _ = load_arrays("digits", "test")
    return x[:7]


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    rng = np.random.default_rng(0)
    w = [(rng.normal(size=(16, 64)) * 0.5, rng.normal(size=16)), (rng.normal(size=(10, 16)), rng.normal(size=10))]
    return relu_mlp_onnx(tmp_path_factory.mktemp("fixed") / "mlp.onnx", w, (1, 8, 8))


def _records(path):
    lines = [json.loads(s) for s in path.read_text().splitlines() if s.strip()]
    return lines[1:]


@pytest.mark.parametrize("b", [1, 3])
def test_replay_and_torch_graph_respect_a_fixed_batch(mlp, digits, b):
    """300 rows (more than the replayer's 256-row chunks, not a multiple of 3) through a model whose
    batch is fixed: onnxruntime's logits equal the dynamic model's; the torch graph chunks too."""
    fixed = _fix_batch(mlp, b)
    x = np.concatenate([digits] * 43)[:300]
    want = ort_logits(ort_session(mlp), x)
    rep = OrtReplayer(fixed)
    assert np.array_equal(rep.logits(x), want)
    tg = TorchGraph.from_onnx(fixed)
    assert tg.model.batch_size == b and tg.sha256 == load_model(fixed).sha256
    np.testing.assert_allclose(tg.predict_logits(x), want, rtol=1e-5, atol=1e-5)
    y = want.argmax(1)
    ok = rep.confirm(x[:7], x[:7], y[:7], 0.0, (0.0, 1.0))
    assert not ok.any()  # x itself is classified as its label: no witness


def _fixed_case(mlp, digits, tmp_path, b):
    """The MLP with batch fixed to b, and the 7 digits (not a multiple of 3) labelled by it."""
    fixed = _fix_batch(mlp, b)
    np.savez(tmp_path / "d.npz", x=digits, y=_labelled(fixed, digits))
    return str(fixed), str(tmp_path / "d.npz")


@pytest.mark.parametrize("b", [1, 3])
def test_attack_and_check_on_a_fixed_batch_model(mlp, digits, tmp_path, b):
    fixed, data = _fixed_case(mlp, digits, tmp_path, b)
    out = tmp_path / "w.jsonl"
    r = runner.invoke(app, ["attack", fixed, "--data", data, "--eps", "0.3", "--out", str(out), "--steps", "10",
                            "--targets", "1", "--batch-size", "5", "--json"])
    assert r.exit_code == 0, r.output
    recs = _records(out)
    assert len(recs) == 7 and sum(rec["status"] == "falsified" for rec in recs) > 0
    r = runner.invoke(app, ["check", str(out), "--model", fixed, "--data", data])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("b", [1, 3])
def test_audit_on_a_fixed_batch_model(mlp, digits, tmp_path, b):
    fixed, data = _fixed_case(mlp, digits, tmp_path, b)
    r = runner.invoke(app, ["audit", fixed, "--data", data, "--eps", "0.3", "--out", str(tmp_path / "rep"),
                            "--limit", "7", "--steps", "5", "--grid", "0.3", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["falsified"] > 0 and s["certified_accuracy"] <= s["robust_accuracy"]


def _padded_net(path, rng):
    """Pad -> Slice (crop back) -> Flatten -> Gemm -> LeakyRelu -> Dropout -> Gemm: ops the old
    attack reader refused although the verifier certifies them."""
    w1, b1 = rng.normal(size=(64, 16)).astype(np.float32), rng.normal(size=16).astype(np.float32)
    w2, b2 = rng.normal(size=(16, 10)).astype(np.float32), rng.normal(size=10).astype(np.float32)
    nodes = [h.make_node("Pad", ["x", "pads"], ["p"], mode="constant"),
             h.make_node("Slice", ["p", "st", "en", "ax"], ["s"]),
             h.make_node("Flatten", ["s"], ["f"], axis=1),
             h.make_node("Gemm", ["f", "W1", "B1"], ["g"]),
             h.make_node("LeakyRelu", ["g"], ["l"], alpha=0.1),
             h.make_node("Dropout", ["l"], ["d"]),
             h.make_node("Gemm", ["d", "W2", "B2"], ["logits"])]
    inits = [nh.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
             nh.from_array(np.array([1, 1], np.int64), "st"), nh.from_array(np.array([9, 9], np.int64), "en"),
             nh.from_array(np.array([2, 3], np.int64), "ax"),
             nh.from_array(w1, "W1"), nh.from_array(b1, "B1"), nh.from_array(w2, "W2"), nh.from_array(b2, "B2")]
    g = h.make_graph(nodes, "padded", [h.make_tensor_value_info("x", T.FLOAT, ["N", 1, 8, 8])],
                     [h.make_tensor_value_info("logits", T.FLOAT, ["N", 10])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 18)])
    m.ir_version = 9
    onnx.save(m, str(path))
    return path


def test_pad_leakyrelu_slice_dropout_certify_and_attack(digits, tmp_path):
    path = _padded_net(tmp_path / "padded.onnx", np.random.default_rng(1))
    m = load_model(path)
    lo, hi = m.interval(digits - np.float32(0.01), digits + np.float32(0.01))
    assert np.all(lo <= hi)
    y = _labelled(path, digits)
    res = attack_arrays(path, digits, y, 0.3, AttackConfig(steps=10, n_target_classes=1))
    assert res.summary()["falsified"] > 0
    rep = OrtReplayer(path)
    idx = sorted(res.witnesses)
    assert rep.confirm(digits[idx], np.stack([res.witnesses[i] for i in idx]), y[idx], 0.3, (0.0, 1.0)).all()
