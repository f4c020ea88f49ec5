"""Regressions from the adversarial review of the issue-12 merge: fixed batch sizes and broadcast
weights.

- every evaluation of a fixed-batch model (the chain fast path of certify and check included) runs
  in chunks of exactly the batch size, so a Reshape to the fixed batch size never merges samples
  (a false certificate before) and a sample count that is not a multiple of it never crashes;
- ``attack`` replays witnesses of a fixed-batch model in chunks of its batch size;
- a batch dimension declared 0 is refused at load time (one line);
- a standard-op ℓ∞-dist layer whose constant broadcasts along D is fused into a LinfDist whose W
  has the full [M, D] shape (onnxruntime's values), and IBP on it works.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as H
from onnx import numpy_helper as nh
from typer.testing import CliRunner

from certify_helpers import one_torch_thread  # noqa: F401  (module fixture, used through pytestmark)
from common.errors import ModelError
from verify.front.model import load_model
from common.runtime import ort_logits, ort_session
from verify_cli import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _i64(name, v):
    return nh.from_array(np.array(v, np.int64), name)


def _save(d, nodes, inits, in_shape, out_shape, name="m.onnx"):
    g = H.make_graph(nodes, "g", [H.make_tensor_value_info("x", T.FLOAT, in_shape)],
                     [H.make_tensor_value_info("y", T.FLOAT, out_shape)], inits)
    m = H.make_model(g, opset_imports=[H.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    p = d / name
    onnx.save(m, str(p))
    return p


def _mixing_chain(d, batch):
    """Reshape to [batch, 1, 2, -1] + MaxPool (max of the two inputs of a sample, per sample at N =
    batch), Reshape [-1, 1], then a standard-op ℓ∞-dist layer with W = [[0], [1]]: class 0 iff
    max(x) < 0.5. Evaluated on more rows than ``batch`` at once, the Reshape merges samples."""
    nodes = [H.make_node("Reshape", ["x", "s1"], ["r1"]),
             H.make_node("MaxPool", ["r1"], ["mp"], kernel_shape=[2, 1]),
             H.make_node("Reshape", ["mp", "s2"], ["r"]),
             H.make_node("Unsqueeze", ["r", "ax1"], ["u"]),
             H.make_node("Sub", ["u", "W"], ["s"]),
             H.make_node("Abs", ["s"], ["a"]),
             H.make_node("ReduceMax", ["a"], ["y"], axes=[2], keepdims=0)]
    inits = [_i64("s1", [batch, 1, 2, -1]), _i64("s2", [-1, 1]), _i64("ax1", [1]),
             nh.from_array(np.array([[0.0], [1.0]], np.float32), "W")]
    return _save(d, nodes, inits, [batch, 2], [batch, 2])


def _records(path):
    lines = [json.loads(s) for s in open(path).read().splitlines() if s.strip()]
    return {r["index"]: r for r in lines[1:]}


def _certify(model, data, out, eps, *extra):
    return runner.invoke(app, ["certify", str(model), "--data", str(data), "--eps", str(eps),
                               "--out", str(out), *extra])


def _check(certs, model, data):
    return runner.invoke(app, ["check", str(certs), "--model", str(model), "--data", str(data)])


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("method", ["auto", "lipschitz", "ibp"])
def test_fixed_batch_chain_never_merges_samples(tmp_path, batch, method):
    """Sample 0 (max 0.51, label 0) is NOT robust at ε = 0.2: x′ = [0.35, 0] is class 1 in
    onnxruntime. Before, the chain path evaluated all rows at once and sample 1 (0.99) lifted the
    merged max, so certify (and check) accepted a false certificate."""
    m = _mixing_chain(tmp_path, batch)
    x = np.array([[0.51, 0.0], [0.99, 0.99], [0.9, 0.9], [0.9, 0.9]], np.float32)
    y = np.zeros(4, np.int64)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    xp = np.array([[0.35, 0.0]], np.float32)
    assert int(np.argmax(ort_logits(ort_session(m), xp)[0])) == 1  # the counterexample is real
    r = _certify(m, tmp_path / "d.npz", tmp_path / "c.jsonl", 0.2, "--method", method)
    assert r.exit_code == 0, r.output
    recs = _records(tmp_path / "c.jsonl")
    assert recs[0]["status"] != "certified", recs[0]
    assert recs[0]["radius"] < 0.16  # the exact robust radius is 0.16 (max = 0.35 flips it)
    assert _check(tmp_path / "c.jsonl", m, tmp_path / "d.npz").exit_code == 0
    # the false certificate the merged evaluation produced is refused by check
    lines = open(tmp_path / "c.jsonl").read().splitlines()
    rec = json.loads(lines[1])
    assert rec["index"] == 0
    rec.update(status="certified", radius=0.3, margin_lower=0.4, method="lipschitz")
    lines[1] = json.dumps(rec)
    (tmp_path / "forged.jsonl").write_text("\n".join(lines) + "\n")
    assert _check(tmp_path / "forged.jsonl", m, tmp_path / "d.npz").exit_code == 1


@pytest.mark.parametrize("batch", [1, 2])
def test_chain_bounds_of_a_sample_do_not_depend_on_its_batch(tmp_path, batch):
    """ChainBound (certify's and check's fast path) gives each sample what it gives it alone."""
    from verify.certify.check import _Prover
    from verify.bounds.fastpath import ChainBound

    m = _mixing_chain(tmp_path, batch)
    model = load_model(m)
    chain = ChainBound.build(model)
    assert chain is not None
    x = np.array([[0.51, 0.0], [0.99, 0.99], [0.2, 0.1]], np.float32)
    z, e, e2 = chain.forward_with_error(x, 0.2)
    lo, hi = chain.interval(x - 0.1, x + 0.1)
    for i in range(len(x)):
        zi, ei, e2i = chain.forward_with_error(x[i:i + 1], 0.2)
        assert np.array_equal(z[i], zi[0]) and np.array_equal(z[i], model.forward(x[i:i + 1])[0])
        assert ei[0] <= e[i] and e2i[0] <= e2[i]  # never less than alone
        li, hi_i = chain.interval(x[i:i + 1] - 0.1, x[i:i + 1] + 0.1)
        assert np.array_equal(lo[i], li[0]) and np.array_equal(hi[i], hi_i[0])
    prover = _Prover(model, m, "float32")
    y = np.zeros(3, np.int64)
    m0, ball = prover.m0(x, y, np.full(3, 0.2), (0.0, 1.0))
    assert ball[0] <= 0 and m0[0] <= 0.02  # sample 0's exact margin at x is 0.02


def test_fixed_batch_chain_with_a_short_last_chunk(tmp_path):
    """Fixed batch 2, 3 samples, Reshape([2, -1]) into a fused ℓ∞-dist layer: traceback before."""
    nodes = [H.make_node("Reshape", ["x", "s"], ["r"]), H.make_node("Unsqueeze", ["r", "ax1"], ["u"]),
             H.make_node("Sub", ["u", "W"], ["t"]), H.make_node("Abs", ["t"], ["a"]),
             H.make_node("ReduceMax", ["a"], ["y"], axes=[2], keepdims=0)]
    m = _save(tmp_path, nodes, [_i64("s", [2, -1]), _i64("ax1", [1]),
                                nh.from_array(np.array([[0, 0], [1, 1]], np.float32), "W")], [2, 2], [2, 2])
    x = np.array([[0.9, 0.8], [0.1, 0.2], [0.7, 0.9]], np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 0]))
    for method in ("auto", "lipschitz", "ibp"):
        r = _certify(m, tmp_path / "d.npz", tmp_path / f"c_{method}.jsonl", 0.05, "--method", method)
        assert r.exit_code == 0, r.output
        assert _check(tmp_path / f"c_{method}.jsonl", m, tmp_path / "d.npz").exit_code == 0


def test_attack_on_a_fixed_batch_model(tmp_path):
    """attack replayed witnesses with session.run on up to 256 rows: onnxruntime traceback."""
    from verify.attack.replay import OrtReplayer

    g = [H.make_node("Gemm", ["x", "W"], ["y"], transB=1)]
    m = _save(tmp_path, g, [nh.from_array(np.array([[1, -1], [-1, 1]], np.float32), "W")], [1, 2], [1, 2])
    x = np.array([[0.6, 0.4], [0.2, 0.9], [0.55, 0.5]], np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 0]))
    r = runner.invoke(app, ["attack", str(m), "--data", str(tmp_path / "d.npz"), "--eps", "0.3",
                            "--out", str(tmp_path / "a.jsonl"), "--steps", "3"])
    assert r.exit_code == 0, r.output
    recs = _records(tmp_path / "a.jsonl")
    assert recs[0]["status"] == "falsified" and recs[2]["status"] == "falsified"
    assert _check(tmp_path / "a.jsonl", m, tmp_path / "d.npz").exit_code == 0
    want = np.stack([x[:, 0] - x[:, 1], x[:, 1] - x[:, 0]], 1)
    assert np.allclose(OrtReplayer(m).logits(x), want, atol=1e-6)


def test_batch_dim_zero_is_refused(tmp_path):
    from common.runtime import fixed_batch

    g = [H.make_node("Sub", ["x", "c"], ["y"])]
    m = _save(tmp_path, g, [nh.from_array(np.array([0.5, 0.5], np.float32), "c")], [0, 2], [0, 2])
    with pytest.raises(ModelError, match="batch"):
        load_model(m)
    with pytest.raises(ModelError, match="batch"):
        fixed_batch(ort_session(m))
    np.savez(tmp_path / "d.npz", x=np.array([[0.6, 0.4]], np.float32), y=np.array([0]))
    for cmd in (["certify", str(m), "--data", str(tmp_path / "d.npz"), "--eps", "0.01", "--out", str(tmp_path / "c.jsonl")],
                ["attack", str(m), "--data", str(tmp_path / "d.npz"), "--eps", "0.01", "--out", str(tmp_path / "a.jsonl")],
                ["lipschitz", str(m)]):
        r = runner.invoke(app, cmd)
        assert r.exit_code == 2, (cmd[0], r.output)
        assert "Traceback" not in r.output and r.stderr.startswith("error:") and r.stderr.count("\n") == 1


@pytest.mark.parametrize("c", [[[0.0], [1.0]], [[0.25, 0.5, 0.75]], [0.25, 0.5, 0.75], [[[0.5], [0.0]]]])
def test_fused_layer_with_a_broadcast_constant(tmp_path, c):
    """C broadcasting along D (or of rank 1, or [1, M, 1]) against X [N, 3]: the fused LinfDist
    must compute onnxruntime's values; `certify --method ibp` crashed in the chain IBP session."""
    nodes = [H.make_node("Unsqueeze", ["x", "ax1"], ["u"]), H.make_node("Sub", ["u", "C"], ["s"]),
             H.make_node("Abs", ["s"], ["a"]), H.make_node("ReduceMax", ["a"], ["y"], axes=[2], keepdims=0)]
    c = np.array(c, np.float32)
    k = c.shape[-2] if c.ndim >= 2 else 1
    m = _save(tmp_path, nodes, [_i64("ax1", [1]), nh.from_array(c, "C")], [None, 3], [None, k])
    model = load_model(m)
    assert [op.op_type for op in model.graph.nodes] == ["LinfDist"]
    rng = np.random.default_rng(0)
    x = rng.random((5, 3)).astype(np.float32)
    want = ort_logits(ort_session(m), x)
    assert np.array_equal(model.forward(x), want)
    lo, hi = model.interval(x, x)
    assert np.all(lo <= want) and np.all(want <= hi)
    np.savez(tmp_path / "d.npz", x=x, y=np.argmax(want, 1))
    for method in ("auto", "ibp"):
        r = _certify(m, tmp_path / "d.npz", tmp_path / f"c_{method}.jsonl", 0.01, "--method", method)
        assert r.exit_code == 0, r.output
        assert _check(tmp_path / f"c_{method}.jsonl", m, tmp_path / "d.npz").exit_code == 0


def test_constant_wider_than_x_is_not_fused(tmp_path):
    """X [N, 1] against C [M, 3]: onnxruntime broadcasts X, which LinfDist cannot express."""
    nodes = [H.make_node("Unsqueeze", ["x", "ax1"], ["u"]), H.make_node("Sub", ["u", "C"], ["s"]),
             H.make_node("Abs", ["s"], ["a"]), H.make_node("ReduceMax", ["a"], ["y"], axes=[2], keepdims=0)]
    c = np.array([[0.0, 0.5, 1.0], [0.2, 0.3, 0.4]], np.float32)
    m = _save(tmp_path, nodes, [_i64("ax1", [1]), nh.from_array(c, "C")], [None, 1], [None, 2])
    model = load_model(m)
    assert "LinfDist" not in [op.op_type for op in model.graph.nodes]
    x = np.array([[0.1], [0.9]], np.float32)
    assert np.array_equal(model.forward(x), ort_logits(ort_session(m), x))


def test_attack_torch_evaluator_runs_in_fixed_batches(tmp_path):
    """The attack's torch evaluator fed a Reshape-to-B model other row counts (ModelError before);
    in chunks of B it finds sample 0's witness, which onnxruntime confirms."""
    from verify.attack.torch_graph import TorchGraph

    m = _mixing_chain(tmp_path, 2)
    x = np.array([[0.51, 0.0], [0.99, 0.99], [0.2, 0.1]], np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(3, np.int64))
    tg = TorchGraph.from_onnx(m)
    assert np.array_equal(tg.predict_logits(x), load_model(m).forward(x))
    r = runner.invoke(app, ["attack", str(m), "--data", str(tmp_path / "d.npz"), "--eps", "0.2",
                            "--out", str(tmp_path / "a.jsonl"), "--steps", "5"])
    assert r.exit_code == 0, r.output
    recs = _records(tmp_path / "a.jsonl")
    assert recs[0]["status"] == "falsified" and recs[2]["status"] != "falsified"
    assert _check(tmp_path / "a.jsonl", m, tmp_path / "d.npz").exit_code == 0
