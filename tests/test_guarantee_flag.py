"""``--guarantee real | float32`` (issue 15): demanded by certify and vnnlib, stated in the header
and every record, re-proven by check under the recorded guarantee (docs/SOUNDNESS.md, "Guarantees:
real or float32").

The test net makes onnxruntime's float32 rounding matter: a deep ReLU MLP that adds B = 2^16 to two
coordinates and takes it away again layer after layer (exact in the reals, rounded to a 2^-8 grid
by float32), with a real margin 1.5·(x0 − x1) + 0.05 and unstable ReLUs on x0 − x1."""

from __future__ import annotations

import json
from fractions import Fraction as F

import numpy as np
import pytest
from typer.testing import CliRunner

from attack_helpers import relu_mlp_onnx
from certify_helpers import build_model, ort_logits
from certify_helpers import one_torch_thread  # noqa: F401  (module fixture, used through pytestmark)
from test_vnnlib_verdicts import vnnlib_text, write
from verify_cli import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")

B, C, DEPTH, EPS = 2.0**16, 0.05, 4, 0.001


def _layers():
    f = np.float32
    layers = [(np.array([[1, 0], [0, 1], [1, -1], [-1, 1]], f), np.array([B, B, 0, 0], f))]
    plus = True
    for _ in range(DEPTH - 1):
        s = -B if plus else B
        plus = not plus
        layers.append((np.eye(4, dtype=f), np.array([s, s, 0, 0], f)))
    s = -B if plus else 0.0
    layers.append((np.array([[1, 0, 0.5, 0], [0, 1, 0, 0.5]], f), np.array([s + C, s], f)))
    return layers


def exact_min_margin(x, label) -> F:
    """The exact real margin's minimum over the closed ε-ball (∩ [0, 1]²): the B terms cancel in the
    reals, so z0 − z1 = 1.5·(x0 − x1) + C32, monotone in x0 − x1."""
    c = F(float(np.float32(C)))
    lo0, hi0 = max(F(float(x[0])) - F(EPS), F(0)), min(F(float(x[0])) + F(EPS), F(1))
    lo1, hi1 = max(F(float(x[1])) - F(EPS), F(0)), min(F(float(x[1])) + F(EPS), F(1))
    return (F(3, 2) * (lo0 - hi1) + c) if label == 0 else -(F(3, 2) * (hi0 - lo1) + c)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("guarantee")
    model = relu_mlp_onnx(d / "deep.onnx", _layers(), (2,))
    rng = np.random.default_rng(0)
    x = np.stack([0.3 + rng.random(40) * 0.4, np.full(40, 0.5)], 1).astype(np.float32)
    y = np.argmax(ort_logits(model, x), 1)
    np.savez(d / "d.npz", x=x, y=y)
    return d, model, d / "d.npz", x, y


def _lines(path):
    return [json.loads(v) for v in path.read_text().splitlines()]


def _certify(files, tmp_path, guarantee, *extra):
    _, model, data, _, _ = files
    out = tmp_path / f"{guarantee}.jsonl"
    args = ["certify", str(model), "--data", str(data), "--eps", str(EPS), "--out", str(out), "--json"]
    r = runner.invoke(app, args + (["--guarantee", guarantee] if guarantee else []) + list(extra))
    return r, out


def _check(files, certs):
    _, model, data, _, _ = files
    return runner.invoke(app, ["check", str(certs), "--model", str(model), "--data", str(data), "--json"])


@pytest.fixture(scope="module")
def runs(files, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    out = {}
    for g in ("real", "float32", None):  # None: the default
        r, path = _certify(files, tmp, g)
        assert r.exit_code == 0, r.output
        out[g] = (json.loads(r.stdout), path)
    return out


def test_each_guarantee_is_stated_in_summary_header_and_every_record(runs):
    for g, want in (("real", "real"), ("float32", "float32"), (None, "float32")):
        s, path = runs[g]
        lines = _lines(path)
        assert s["guarantee"] == lines[0]["guarantee"] == want
        assert {r["guarantee"] for r in lines[1:]} == {want} and len(lines) == 41


def test_real_certifies_at_least_as_many_and_more_here(runs):
    real, f32 = runs["real"][0], runs["float32"][0]
    assert real["certified"] >= f32["certified"] > 0
    assert real["certified"] > f32["certified"]  # the float32 allowance matters on this net
    recs_r, recs_f = _lines(runs["real"][1])[1:], _lines(runs["float32"][1])[1:]
    for a, b in zip(recs_r, recs_f):  # every float32 proof is a real proof too
        assert b["status"] != "certified" or a["status"] == "certified"
    assert "crown" in {r["method"] for r in recs_r if r["status"] == "certified"}


def test_real_certificates_hold_for_the_exact_function(runs, files):
    """Each `real` record: margin_lower ≤ the exact minimum margin over the ball (computed in
    rationals), and certified ⇒ that minimum is > 0."""
    x = files[3]
    for r in _lines(runs["real"][1])[1:]:
        m = exact_min_margin(x[r["index"]], r["label"])
        if r["margin_lower"] is not None:
            assert F(r["margin_lower"]) <= m
        if r["status"] == "certified":
            assert m > 0


def test_float32_certificates_hold_for_onnxruntime(runs, files):
    """Each `float32` certified record: onnxruntime predicts the label at the ball's corners and at
    random float32 points of it."""
    _, model, _, x, _ = files
    rng = np.random.default_rng(1)
    for r in _lines(runs["float32"][1])[1:]:
        if r["status"] != "certified":
            continue
        x0 = x[r["index"]].astype(np.float64)
        pts = [x0 + EPS * np.array(s) for s in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
        pts += list(x0 + rng.uniform(-EPS, EPS, (64, 2)))
        p = np.clip(np.array(pts), 0, 1).astype(np.float32)
        p = np.clip(p, (x0 - EPS).astype(np.float32), (x0 + EPS).astype(np.float32))
        assert (np.argmax(ort_logits(model, p), 1) == r["label"]).all()


def test_check_passes_on_honest_files(runs, files):
    for g in ("real", "float32"):
        r = _check(files, runs[g][1])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["guarantee"] == g


def test_check_fails_a_file_upgraded_from_real_to_float32(runs, files, tmp_path):
    """A doctored file: the real run's header and every record claim float32. check re-proves each
    record under float32 and fails those only a real proof covers."""
    lines = _lines(runs["real"][1])
    for v in lines:
        v["guarantee"] = "float32"
    bad = tmp_path / "upgraded.jsonl"
    bad.write_text("".join(json.dumps(v) + "\n" for v in lines))
    r = _check(files, bad)
    assert r.exit_code == 1 and "does not re-prove" in r.stderr and "guarantee float32" in r.stderr, r.output
    assert r.stderr.count("\n") == 1


def test_check_fails_a_record_claiming_more_than_its_header(runs, files, tmp_path):
    lines = _lines(runs["real"][1])
    k = next(i for i, v in enumerate(lines) if i and v["status"] == "certified")
    lines[k]["guarantee"] = "float32"
    bad = tmp_path / "one_record.jsonl"
    bad.write_text("".join(json.dumps(v) + "\n" for v in lines))
    r = _check(files, bad)
    assert r.exit_code == 1 and "guarantee" in r.stderr, r.output


@pytest.mark.parametrize("command", ["certify", "vnnlib"])
def test_bad_value_is_one_line_exit_2_and_writes_nothing(files, tmp_path, command):
    _, model, data, _, _ = files
    out = tmp_path / "o.txt"
    if command == "certify":
        args = ["certify", str(model), "--data", str(data), "--eps", "0.01", "--out", str(out)]
    else:
        args = ["vnnlib", str(model), str(write(tmp_path, vnnlib_text([0.4, 0.4], [0.5, 0.5], "(>= Y_1 Y_0)", 2))),
                "--out", str(out)]
    r = runner.invoke(app, args + ["--guarantee", "exact"])
    assert r.exit_code == 2, r.output
    assert r.stderr == "error: --guarantee must be real or float32, got 'exact'\n"
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_lipschitz_method_demanding_float32_on_a_non_chain_is_refused(files, tmp_path):
    r, out = _certify(files, tmp_path, "float32", "--method", "lipschitz")
    assert r.exit_code == 2 and r.stderr.startswith("error: --method lipschitz proves only --guarantee real")
    assert r.stderr.count("\n") == 1 and not out.exists()
    r, out = _certify(files, tmp_path, "real", "--method", "lipschitz")
    assert r.exit_code == 0, r.output


def test_attack_refuses_real_certificates(runs, files, tmp_path):
    """Witnesses are about onnxruntime; a `real` certificate says nothing about it, so the attack's
    soundness alarm and --skip-certified take only float32 runs."""
    _, model, data, _, _ = files
    r = runner.invoke(app, ["attack", str(model), "--data", str(data), "--eps", str(EPS), "--out",
                            str(tmp_path / "w.jsonl"), "--certs", str(runs["real"][1])])
    assert r.exit_code == 2 and "guarantee 'real'" in r.stderr and r.stderr.count("\n") == 1, r.output


@pytest.mark.parametrize("guarantee", ["real", "float32"])
def test_vnnlib_each_guarantee(files, tmp_path, guarantee):
    """A box where only the exact-function bounds prove the property: real → unsat stating real;
    float32 → no proof (no witness exists either: unknown or timeout), never unsat."""
    _, model, _, x, y = files
    k = next(i for i in range(len(y)) if y[i] == 0 and 0.02 < x[i, 0] - x[i, 1] < 0.06)
    lo, hi = (x[k] - EPS).tolist(), (x[k] + EPS).tolist()
    prop = write(tmp_path, vnnlib_text(lo, hi, "(>= Y_1 Y_0)", 2))
    out = tmp_path / "res.txt"
    r = runner.invoke(app, ["vnnlib", str(model), str(prop), "--out", str(out), "--timeout", "5", "--json",
                            "--guarantee", guarantee])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    if guarantee == "real":
        assert (s["verdict"], s["guarantee"]) == ("unsat", "real") and "crown" in s["method"]
        assert out.read_text() == "unsat\n"
    else:
        assert s["verdict"] in ("unknown", "timeout") and s["guarantee"] == ""


def test_chain_fast_path_states_both_theorems_and_real_drops_only_e_prime(tmp_path):
    """Pure ℓ∞-dist nets: the one-forward margin/2 proof subtracts e (ŷ vs f at x) under both
    guarantees and e′ (onnxruntime's error on the ball) only under float32."""
    from verify.bounds import margins
    from verify.bounds.fastpath import ChainBound
    from verify.certify.certifier import Certifier, CertifyConfig
    from verify.front.model import load_model

    rng = np.random.default_rng(3)
    layers = [("linf", rng.normal(0, 1, (6, 5)).astype(np.float32), None),
              ("linf", rng.normal(0, 1, (4, 6)).astype(np.float32), (4.0e5 + rng.random(4) * 0.5).astype(np.float32)),
              ("neg",)]
    path = build_model(layers, [5], tmp_path / "chain.onnx")
    model = load_model(path)
    x = rng.random((30, 5)).astype(np.float32)
    y = np.argmax(ort_logits(path, x), 1)
    eps = 0.01
    z, e, e2 = ChainBound.build(model).forward_with_error(x, eps)
    assert (e2 > 1e-3).all()  # large biases: onnxruntime's error matters
    got = {}
    for g in ("real", "float32"):
        m0, _, ball = Certifier(model, CertifyConfig(eps, "lipschitz", guarantee=g)).lipschitz_parts(x, y)
        got[g] = ball
    m0 = margins.chain_margins(margins.box_margin(z, z, y), e, e2, 1.0, eps)[0]
    assert np.array_equal(got["real"], margins.lipschitz_margin(m0, 1.0, eps))
    assert (got["real"] >= got["float32"] + 2 * e2 * (1 - 1e-9)).all()
