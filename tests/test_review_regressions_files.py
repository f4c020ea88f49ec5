"""Regressions of the adversarial review of issue 12 (/work/notes/review r3, r4, r5, r6, r10, r11):
model-local function attribute defaults (a false certificate), witnesses and samples a hair
outside the domain, certify's resume trusting a doctored OUT.partial, tracebacks on hostile
certificate lines, and `attack --certs` of another model writing its output before failing."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from onnx import AttributeProto as AP
from onnx import TensorProto as T
from onnx import helper as H
from onnx import numpy_helper as nh
from typer.testing import CliRunner

from certify_helpers import one_torch_thread  # noqa: F401  (module fixture, used through pytestmark)
from verify.certify.certifier import check_inputs
from verify.certify.check import run_check
from common.errors import CertificateError, DataError, ModelError
from verify.front.model import load_model
from common.runtime import ort_logits, ort_session
from verify_cli import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _one_line_error(r, code):
    assert r.exit_code == code, (r.exit_code, r.output)
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit))
    assert r.stderr.startswith("error:") and r.stderr.count("\n") == 1, r.stderr


def _gemm(path, w):
    g = H.make_graph([H.make_node("Gemm", ["x", "W"], ["y"], transB=1)], "g",
                     [H.make_tensor_value_info("x", T.FLOAT, [None, 2])],
                     [H.make_tensor_value_info("y", T.FLOAT, [None, 2])],
                     [nh.from_array(np.array(w, np.float32), "W")])
    onnx.save(H.make_model(g, opset_imports=[H.make_opsetid("", 17)]), str(path))
    return path


def _cli(*args):
    return runner.invoke(app, [str(a) for a in args])


# ---------------------------------------------------------------- r5: function attribute defaults

def _act_model(path, *, default=None, declared=("al",), call_attrs=({},), ref="al"):
    """x - c -> foo::MyAct (LeakyRelu, alpha a reference to the function attribute ``ref``) per call
    site in ``call_attrs`` (chained) -> - d."""
    body = H.make_node("LeakyRelu", ["a"], ["b"])
    body.attribute.append(AP(name="alpha", ref_attr_name=ref, type=AP.FLOAT))
    f = H.make_function("foo", "MyAct", ["a"], ["b"], [body], [H.make_opsetid("", 17)],
                        attributes=list(declared))
    if default is not None:
        f.attribute_proto.append(H.make_attribute("al", default))
    nodes, cur = [H.make_node("Sub", ["x", "c"], ["s0"])], "s0"
    for k, attrs in enumerate(call_attrs):
        nodes.append(H.make_node("MyAct", [cur], [f"h{k}"], domain="foo", **attrs))
        cur = f"h{k}"
    nodes.append(H.make_node("Sub", [cur, "d"], ["logits"]))
    g = H.make_graph(nodes, "g", [H.make_tensor_value_info("x", T.FLOAT, [None, 2])],
                     [H.make_tensor_value_info("logits", T.FLOAT, [None, 2])],
                     [nh.from_array(np.array([0.5, 0.0], np.float32), "c"),
                      nh.from_array(np.array([0.0, 0.1], np.float32), "d")])
    m = H.make_model(g, opset_imports=[H.make_opsetid("", 17), H.make_opsetid("foo", 1)], functions=[f])
    onnx.save(m, str(path))
    return path


def test_function_with_attribute_default_is_refused(tmp_path):
    # r5: onnxruntime runs alpha 5 (the function's default), the inliner alpha 0.01: refused
    p = _act_model(tmp_path / "m.onnx", default=5.0)
    z = ort_logits(ort_session(p), np.array([[0.475, 0.0]], np.float32))
    assert np.argmax(z[0]) == 1  # what onnxruntime runs: class 1 inside the ball certify claimed
    with pytest.raises(ModelError, match="default attribute"):
        load_model(p)
    p2 = _act_model(tmp_path / "m2.onnx", default=5.0, call_attrs=({"al": 2.0},))
    with pytest.raises(ModelError, match="default attribute"):
        load_model(p2)


def test_function_reference_unbound_or_undeclared_is_refused(tmp_path):
    with pytest.raises(ModelError, match="unset"):
        load_model(_act_model(tmp_path / "u.onnx", call_attrs=({"al": 2.0}, {})))
    with pytest.raises(ModelError, match="undeclared"):
        load_model(_act_model(tmp_path / "d.onnx", declared=(), call_attrs=({"al": 2.0},)))


def test_function_reference_bound_at_every_call_matches_onnxruntime(tmp_path):
    p = _act_model(tmp_path / "b.onnx", call_attrs=({"al": 5.0}, {"al": 0.25}))
    model = load_model(p)
    x = np.random.default_rng(0).uniform(-2, 2, (64, 2)).astype(np.float32)
    np.testing.assert_array_equal(model.forward(x), ort_logits(ort_session(p), x))


# ---------------------------------------------------------------- r6: exact domain comparisons

def test_witness_a_hair_below_the_domain_fails_check(tmp_path):
    c = np.array([np.nextafter(np.float32(0.9), np.float32(2)), 1.0], np.float32)
    g = H.make_graph([H.make_node("Sub", ["x", "c"], ["y"])], "g",
                     [H.make_tensor_value_info("x", T.FLOAT, [None, 2])],
                     [H.make_tensor_value_info("y", T.FLOAT, [None, 2])], [nh.from_array(c, "c")])
    onnx.save(H.make_model(g, opset_imports=[H.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    np.savez(tmp_path / "d.npz", x=np.array([[0.95, 1.0]], np.float32), y=np.array([0]))
    r = _cli("attack", tmp_path / "m.onnx", "--data", tmp_path / "d.npz", "--eps", "0.06", "--domain", "0.9",
             "1.0", "--out", tmp_path / "a.jsonl", "--steps", "2", "--targets", "0")
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    rec = json.loads(lines[1])
    w = np.array([[np.float32(0.9), 1.0]], np.float32)  # 0.89999998 < 0.9
    rec.update(status="falsified", witness=[float(v) for v in w.ravel()],
               witness_sha256=hashlib.sha256(w.tobytes()).hexdigest())
    (tmp_path / "f.jsonl").write_text(lines[0] + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(CertificateError, match="outside the domain"):
        run_check(tmp_path / "f.jsonl", tmp_path / "m.onnx", tmp_path / "d.npz")


def test_sample_a_hair_outside_the_domain_is_refused(tmp_path):
    model = load_model(_gemm(tmp_path / "m.onnx", [[1, -1], [-1, 1]]))
    below = np.array([[np.float32(0.9), 0.95]], np.float32)
    with pytest.raises(DataError, match="outside the input domain"):
        check_inputs(below, np.array([0]), model, (0.9, 1.0))
    above = np.array([[0.95, np.float32(0.1)]], np.float32)  # 0.100000001 > 0.1
    with pytest.raises(DataError, match="outside the input domain"):
        check_inputs(above, np.array([0]), model, (0.0, 0.1))
    check_inputs(np.array([[np.float32(0.9), 1.0]], np.float32), np.array([0]), model, (0.8999999761581421, 1.0))


# ---------------------------------------------------------------- r4: resume re-proves kept records

def test_resume_recomputes_a_doctored_partial_record(tmp_path):
    m = _gemm(tmp_path / "m.onnx", [[1, -1], [-1, 1]])
    np.savez(tmp_path / "d.npz", x=np.array([[0.6, 0.4], [0.2, 0.9]], np.float32), y=np.array([0, 1]))
    args = ["certify", m, "--data", tmp_path / "d.npz", "--eps", "0.3", "--batch-size", "1", "--json"]
    r = _cli(*args, "--out", tmp_path / "honest.jsonl")
    honest = json.loads(r.stdout)["counts"]
    lines = (tmp_path / "honest.jsonl").read_text().splitlines()
    rec = json.loads(lines[1])
    assert rec["status"] != "certified"
    rec.update(status="certified", radius=0.3, margin_lower=0.1)
    (tmp_path / "c.jsonl.partial").write_text(lines[0] + "\n" + json.dumps(rec) + "\n")
    r = _cli(*args, "--out", tmp_path / "c.jsonl")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["counts"] == honest
    assert (tmp_path / "c.jsonl").read_bytes() == (tmp_path / "honest.jsonl").read_bytes()
    run_check(tmp_path / "c.jsonl", m, tmp_path / "d.npz")


# ---------------------------------------------------------------- r3, r10: hostile certificate lines

@pytest.fixture(scope="module")
def gemm_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    m = _gemm(d / "m.onnx", [[1, -1], [-1, 1]])
    np.savez(d / "d.npz", x=np.array([[0.6, 0.4], [0.2, 0.9]], np.float32), y=np.array([0, 1]))
    r = _cli("attack", m, "--data", d / "d.npz", "--eps", "0.3", "--out", d / "a.jsonl")
    assert r.exit_code == 0, r.output
    r = _cli("certify", m, "--data", d / "d.npz", "--eps", "0.3", "--batch-size", "1", "--out", d / "c.jsonl")
    assert r.exit_code == 0, r.output
    return d, m


def _hostile(d):
    a = (d / "a.jsonl").read_text().splitlines()
    c = (d / "c.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in a[1:]]
    k = next(i for i, r in enumerate(recs) if r["status"] == "falsified")
    big = [dict(r) for r in recs]
    big[k]["witness"] = [10**400] + big[k]["witness"][1:]
    big[k].pop("witness_sha256", None)
    out = {"witness_big_int": [a[0]] + [json.dumps(r) for r in big],
           "record_deep": [a[0], "[" * 100000 + "]" * 100000],
           "record_deep_dict": [a[0], '{"a": ' * 100000 + "1" + "}" * 100000],
           "header_deep": ["[" * 100000 + "]" * 100000] + a[1:],
           "nan": [c[0], c[1].replace('"margin_lower": ', '"margin_lower": NaN, "x": ')] + c[2:],
           "float_overflow": [c[0], json.dumps({**json.loads(c[1]), "radius": 0.5}).replace("0.5", "1e400")] + c[2:],
           "unicode_shard": [c[0], json.dumps({**json.loads(c[1]), "shard": "0/\u00b2"})] + c[2:]}
    for field in ("radius", "margin_lower", "eps", "index", "label"):
        out[f"huge_{field}"] = [c[0], json.dumps({**json.loads(c[1]), field: 10**400})] + c[2:]
    hdr = json.loads(c[0])
    out["header_huge_eps"] = [json.dumps({**hdr, "eps": 10**400})] + c[1:]
    out["header_huge_n_data"] = [json.dumps({**hdr, "n_data": 10**400})] + c[1:]
    return out


def test_hostile_lines_are_one_line_errors(gemm_files):
    d, m = gemm_files
    for name, lines in _hostile(d).items():
        p = d / f"{name}.jsonl"
        p.write_text("\n".join(lines) + "\n")
        with pytest.raises(CertificateError):
            run_check(p, m, d / "d.npz")
        r = _cli("check", p, "--model", m, "--data", d / "d.npz")
        _one_line_error(r, 1)


def test_resume_with_a_hostile_partial_is_a_one_line_error(gemm_files, tmp_path):
    d, m = gemm_files
    c = (d / "c.jsonl").read_text().splitlines()
    rec = {**json.loads(c[1]), "radius": 10**400}
    (tmp_path / "r.jsonl.partial").write_text(c[0] + "\n" + json.dumps(rec) + "\n" + c[2] + "\n")
    r = _cli("certify", m, "--data", d / "d.npz", "--eps", "0.3", "--batch-size", "1", "--out", tmp_path / "r.jsonl")
    _one_line_error(r, 1)


# ---------------------------------------------------------------- r11: attack --certs validated first

def test_attack_certs_of_another_run_refused_before_any_write(tmp_path):
    robust = _gemm(tmp_path / "robust.onnx", [[10, -10], [-10, 10]])
    fragile = _gemm(tmp_path / "fragile.onnx", [[1, 0], [0, 1]])
    np.savez(tmp_path / "d.npz", x=np.array([[0.9, 0.1]], np.float32), y=np.array([0]))
    np.savez(tmp_path / "d2.npz", x=np.array([[0.6, 0.4], [0.7, 0.2]], np.float32), y=np.array([0, 0]))
    base = ["--data", tmp_path / "d.npz", "--eps", "0.3"]
    assert _cli("certify", robust, *base, "--out", tmp_path / "c.jsonl").exit_code == 0
    assert _cli("certify", robust, *base, "--out", tmp_path / "c_dom.jsonl", "--domain", "0", "2").exit_code == 0
    assert _cli("certify", robust, "--data", tmp_path / "d.npz", "--eps", "0.1", "--out", tmp_path / "c_eps.jsonl").exit_code == 0
    w = tmp_path / "w.jsonl"
    cases = [(fragile, base, "c.jsonl", ["--skip-certified"], "another model"),
             (fragile, base, "c.jsonl", [], "another model"),
             (robust, ["--data", tmp_path / "d2.npz", "--eps", "0.3"], "c.jsonl", [], "another data"),
             (robust, base, "c_dom.jsonl", [], "domain"),
             (robust, base, "c_eps.jsonl", ["--skip-certified"], "skip nothing")]
    for model, args, certs, extra, why in cases:
        r = _cli("attack", model, *args, "--out", w, "--steps", "2", "--targets", "0",
                 "--certs", tmp_path / certs, *extra)
        _one_line_error(r, 2)
        assert why in r.stderr, r.stderr
        assert not w.exists()
    r = _cli("attack", robust, *base, "--out", w, "--steps", "2", "--targets", "0",
             "--certs", tmp_path / "c.jsonl", "--skip-certified", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["skipped_certified"] == 1
