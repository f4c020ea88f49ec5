"""Second adversarial review: models we read differently from onnxruntime, or cannot run.

Each test failed before its fix: a traceback (op forwards on shapes hidden from shape inference,
a model onnxruntime loads but cannot run), a `check` that accepted a run whose domain excludes its
own sample, and no guard when our reading of an op disagrees with onnxruntime at the sample.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as H
from onnx import numpy_helper as nh

from verify.certify.certifier import CertifyConfig, certify_batch
from common.errors import ModelError
from verify.front.model import load_model

ROOT = Path(__file__).resolve().parents[1]


def _save(tmp_path, nodes, inits, k=2, name="m.onnx", opset=17):
    g = H.make_graph(nodes, "g", [H.make_tensor_value_info("x", T.FLOAT, ["N", 2])],
                     [H.make_tensor_value_info("y", T.FLOAT, ["N", k])], inits)
    p = tmp_path / name
    onnx.save(H.make_model(g, opset_imports=[H.make_opsetid("", opset)]), p)
    return p


def _cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "verify_cli.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


def _one_line_error(r, code=2):
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert "Traceback" not in r.stderr


def _i64(n, v):
    return nh.from_array(np.array(v, np.int64), n)


@pytest.mark.parametrize("case", ["reshape_zero_past_rank", "maxpool_kernel_too_large"])
def test_op_forward_errors_on_hidden_shapes_are_one_line(tmp_path, case):
    if case == "reshape_zero_past_rank":  # a computed target [N, 2, 0]: 0 past the input's rank
        nodes = [H.make_node("Shape", ["x"], ["sh"]), H.make_node("Concat", ["sh", "z"], ["tgt"], axis=0),
                 H.make_node("Reshape", ["x", "tgt"], ["r"]), H.make_node("Reshape", ["r", "s2"], ["y"])]
        inits = [_i64("z", [0]), _i64("s2", [-1, 2])]
    else:  # MaxPool 3x3 over a hidden 1x2 extent
        nodes = [H.make_node("Shape", ["x"], ["sh"]), H.make_node("Gather", ["sh", "i0"], ["n"]),
                 H.make_node("Concat", ["n", "c4"], ["tgt"], axis=0), H.make_node("Reshape", ["x", "tgt"], ["r"]),
                 H.make_node("MaxPool", ["r"], ["p"], kernel_shape=[3, 3]), H.make_node("Reshape", ["p", "s2"], ["y"])]
        inits = [_i64("i0", [0]), _i64("c4", [1, 1, 2]), _i64("s2", [-1, 2])]
    p = _save(tmp_path, nodes, inits)
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2), np.float32), y=np.zeros(2, np.int64))
    _one_line_error(_cli("certify", p, "--data", tmp_path / "d.npz", "--eps", "0.1", "--out", tmp_path / "c.jsonl"))


def test_model_onnxruntime_cannot_run_is_one_line(tmp_path):
    """Clip with a min of shape [2]: onnxruntime loads it, then fails at run time."""
    p = _save(tmp_path, [H.make_node("Clip", ["x", "lo", ""], ["y"])],
              [nh.from_array(np.array([0.1, 0.2], np.float32), "lo")])
    np.savez(tmp_path / "d.npz", x=np.array([[0.3, 0.7]], np.float32), y=np.array([1]))
    for cmd in ("certify", "attack"):
        r = _cli(cmd, p, "--data", tmp_path / "d.npz", "--eps", "0.1", "--out", tmp_path / f"{cmd}.jsonl")
        _one_line_error(r)
        assert not (tmp_path / f"{cmd}.jsonl").exists()


def test_check_refuses_a_run_whose_domain_excludes_its_sample(tmp_path):
    nodes = [H.make_node("Slice", ["x", "s0", "s1", "ax"], ["x0"]), H.make_node("Mul", ["x0", "zero"], ["z"]),
             H.make_node("Add", ["z", "half"], ["l1"]), H.make_node("Concat", ["x0", "l1"], ["y"], axis=1)]
    p = _save(tmp_path, nodes, [_i64("s0", [0]), _i64("s1", [1]), _i64("ax", [1]),
                                nh.from_array(np.array([0.0], np.float32), "zero"),
                                nh.from_array(np.array([0.5], np.float32), "half")])
    np.savez(tmp_path / "d.npz", x=np.array([[0.6, 0.0]], np.float32), y=np.array([0], np.int64))
    c = tmp_path / "c.jsonl"
    r = _cli("certify", p, "--data", tmp_path / "d.npz", "--eps", "0.2", "--method", "ibp", "--out", c)
    assert r.returncode == 0, r.stderr
    head, rec = [json.loads(line) for line in c.read_text().splitlines()]
    assert rec["status"] == "not_certified"
    head["domain"] = rec["domain"] = [0.7, 1.0]  # ball ∩ domain no longer holds the sample
    rec.update(status="certified", radius=0.2, margin_lower=None)
    t = tmp_path / "t.jsonl"
    t.write_text(json.dumps(head) + "\n" + json.dumps(rec) + "\n")
    r = _cli("check", t, "--model", p, "--data", tmp_path / "d.npz")
    assert r.returncode == 1 and "outside the run's domain" in r.stderr, r.stderr


def test_reading_that_disagrees_with_onnxruntime_stops_certify(tmp_path, monkeypatch):
    """A wrong reading of an op (simulated: our Relu box shifted by +1, which stays a valid-looking
    box) must stop certify: onnxruntime's logits at x lie outside our box at the point x."""
    from verify.ops.op_relu import Relu

    p = _save(tmp_path, [H.make_node("Relu", ["x"], ["y"])], [])
    model = load_model(p)
    x, y = np.array([[0.3, 0.1]], np.float32), np.array([0])
    assert certify_batch(model, x, y, CertifyConfig(eps=0.01, method="ibp")).status == ["certified"]
    real = Relu.interval
    monkeypatch.setattr(Relu, "interval", lambda self, b: (lambda r: type(r)(r.lo + 1, r.hi + 1))(real(self, b)))
    with pytest.raises(ModelError, match="disagrees with onnxruntime"):
        certify_batch(load_model(p), x, y, CertifyConfig(eps=0.01, method="ibp"))


@pytest.mark.parametrize("bounds", [(None, None), (0.0, None), (None, 0.0), (np.inf, None), (None, -np.inf)])
def test_clip_missing_bound_is_flt_max_as_in_onnxruntime(tmp_path, bounds):
    """Found by the slow fuzzer: a missing Clip bound is ±FLT_MAX in onnxruntime (not ±inf), so
    Clip(0, min=+inf) is FLT_MAX and Clip(+inf) is FLT_MAX; our box said [inf, inf]."""
    from common.runtime import ort_session

    ins, inits = ["x", "", ""], []
    for k, (name, v) in enumerate(zip(("lo", "hi"), bounds)):
        if v is not None:
            ins[k + 1] = name
            inits.append(nh.from_array(np.array(v, np.float32), name))
    g = H.make_graph([H.make_node("Clip", ins, ["y"])], "g", [H.make_tensor_value_info("x", T.FLOAT, ["N", 3])],
                     [H.make_tensor_value_info("y", T.FLOAT, ["N", 3])], inits)
    p = tmp_path / "clip.onnx"
    onnx.save(H.make_model(g, opset_imports=[H.make_opsetid("", 18)]), p)
    x = np.array([[np.inf, -np.inf, 0.0]], np.float32)
    want = ort_session(p).run(None, {"x": x})[0]
    model = load_model(p)
    assert np.array_equal(model.forward(x), want)
    lo, hi = model.interval(x, x)
    assert np.array_equal(lo, want) and np.array_equal(hi, want)


def test_lipschitz_bound_states_it_is_about_the_real_function(tmp_path):
    """Outside attack: y = x + 1 is 1-Lipschitz as a real function, but onnxruntime's rounding maps
    inputs 2^-47 apart to outputs 2^-23 apart. The command must say which function its L bounds."""
    from common.runtime import ort_session

    p = _save(tmp_path, [H.make_node("Add", ["x", "one"], ["y"])], [nh.from_array(np.ones(2, np.float32), "one")])
    r = _cli("lipschitz", p, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["global"] == 1.0 and rep["guarantee"] == "real"
    x = np.array([[2.0**-24, 0.0]], np.float32)
    x2 = np.array([[np.nextafter(np.float32(2.0**-24), np.float32(1)), 0.0]], np.float32)
    sess = ort_session(p)
    ratio = np.abs(sess.run(None, {"x": x2})[0] - sess.run(None, {"x": x})[0]).max() / np.abs(x2 - x).max()
    assert ratio > 1e6  # so the bound could not honestly claim onnxruntime's float32 evaluation
