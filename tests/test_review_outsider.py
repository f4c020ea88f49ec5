"""Outsider probes: float32 cancellation in a variadic Sum (x + 2^24 + (-2^24)).

Real function: y0 = x; onnxruntime float32: y0 = 0 for x in [0.95, 1) (2^24 + x rounds to 2^24).
A `real` certificate is true; the same certificate edited to say float32 must fail `check`,
and `certify --guarantee float32` must not certify it.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]


def _model(path: Path) -> None:
    c = np.float32(2.0**24)
    inits = [numpy_helper.from_array(np.array([[c]], np.float32), "c"),
             numpy_helper.from_array(np.array([[-c]], np.float32), "nc"),
             numpy_helper.from_array(np.array([[0.5]], np.float32), "k")]
    nodes = [helper.make_node("Sum", ["x", "c", "nc"], ["s"]),
             helper.make_node("Concat", ["s", "k"], ["y"], axis=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))


def _cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "verify_cli.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _last(path):
    return json.loads(Path(path).read_text().splitlines()[-1])


def test_sum_cancellation_real_vs_float32(tmp_path):
    model, data = tmp_path / "sum3.onnx", tmp_path / "d.npz"
    _model(model)
    np.savez(data, x=np.array([[1.1]], np.float32), y=np.array([0]))
    common = ["--data", data, "--domain", "0", "2", "--eps", "0.15", "--method", "crown"]
    real, f32 = tmp_path / "real.jsonl", tmp_path / "f32.jsonl"
    _cli("certify", model, *common, "-o", real, "--guarantee", "real")
    _cli("certify", model, *common, "-o", f32, "--guarantee", "float32")
    assert _last(real)["status"] == "certified"  # true: y0 = x >= 0.95 > 0.5 in reals
    assert _last(f32)["status"] != "certified"  # onnxruntime gives y0 = 0 at x = 0.95
    doctored = tmp_path / "doctored.jsonl"
    doctored.write_text(real.read_text().replace('"guarantee": "real"', '"guarantee": "float32"'))
    r = _cli("check", doctored, "--model", model, "--data", data)
    assert r.returncode != 0, r.stdout + r.stderr
