"""Verdicts of VNN-LIB instances (verify/vnnlib/run.py): unsat only when proved, sat only with a
witness that onnxruntime replays inside the box; the results file; fixed-batch models; the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.attack_helpers import relu_mlp_onnx
from verify.front.model import load_model
from common.runtime import ort_logits, ort_session
from verify.vnnlib.prove import IntervalRung, prove
from verify.vnnlib.run import parse_witness, replay_text, result_text, run_instance
from verify.vnnlib.spec import parse_property

ROOT = Path(__file__).resolve().parent.parent


def vnnlib_text(lo, hi, condition: str, n_y: int = 3) -> str:
    decl = "".join(f"(declare-const X_{i} Real)\n" for i in range(len(lo)))
    decl += "".join(f"(declare-const Y_{j} Real)\n" for j in range(n_y))
    box = "".join(f"(assert (>= X_{i} {a!r}))\n(assert (<= X_{i} {b!r}))\n" for i, (a, b) in enumerate(zip(lo, hi)))
    return decl + box + f"(assert {condition})\n"


def net(tmp_path, seed=0, batch="N", bias0=0.0, name="m.onnx"):
    rng = np.random.default_rng(seed)
    w = [(rng.normal(size=(8, 2)) * 0.5, rng.normal(size=8) * 0.1),
         (rng.normal(size=(3, 8)) * 0.5, np.array([bias0, 0.0, 0.0]))]
    return relu_mlp_onnx(tmp_path / name, w, (2,), batch=batch)


def write(tmp_path, text, name="p.vnnlib"):
    p = tmp_path / name
    p.write_text(text)
    return p


def sample_outputs(model_path, lo, hi, n=4000, seed=1):
    """onnxruntime outputs at random float32 points and the corners of the box."""
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
    x = (lo + rng.random((n, len(lo))) * (hi - lo)).astype(np.float32)
    corners = np.array(np.meshgrid(*zip(lo, hi))).reshape(len(lo), -1).T.astype(np.float32)
    x = np.clip(np.concatenate([x, corners]), lo, hi)
    return x, ort_logits(ort_session(model_path), x)


@pytest.mark.parametrize("batch", ["N", 1])
def test_unsat_when_provable(tmp_path, batch):
    """A large bias makes Y_0 win on the whole box: the interval rung proves it."""
    m = net(tmp_path, batch=batch, bias0=50.0)
    p = write(tmp_path, vnnlib_text([0.4, 0.4], [0.5, 0.5], "(or (and (>= Y_1 Y_0)) (and (>= Y_2 Y_0)))"))
    res = run_instance(m, p, 30)
    assert (res.verdict, res.method, res.guarantee) == ("unsat", "interval", "float32")
    assert result_text(res) == "unsat\n"
    _, y = sample_outputs(m, [0.4, 0.4], [0.5, 0.5])
    assert (y[:, 0] > y[:, 1:].max(1)).all()  # the theorem, seen from onnxruntime


@pytest.mark.parametrize("batch", ["N", 1])
def test_sat_witness_replays_inside_the_box(tmp_path, batch):
    m = net(tmp_path, batch=batch)
    lo, hi = [-1.0, -1.0], [1.0, 1.0]
    x, y = sample_outputs(m, lo, hi)
    target = float(np.sort(y[:, 1] - y[:, 0])[-20])  # reached by some point of the box
    cond = f"(and (>= (- Y_1 Y_0) {target!r}) (<= X_0 0.9))"
    prop = parse_property(vnnlib_text(lo, hi, cond))
    res = run_instance(m, write(tmp_path, vnnlib_text(lo, hi, cond)), 30)
    assert res.verdict == "sat" and res.method == "pgd"
    text = result_text(res)
    assert text.startswith("sat\n((X_0 ") and text.rstrip().endswith(")")
    wx, wy = parse_witness(text, 2, 3)
    assert np.array_equal(wx.astype(np.float32).astype(np.float64), wx)  # printed exactly
    # independent replay: inside the box, onnxruntime's outputs meet the condition exactly
    out = ort_logits(ort_session(m), wx.astype(np.float32)[None])[0]
    assert np.array_equal(out.astype(np.float64), wy)
    assert all(Fraction(lo[i]) <= Fraction(float(wx[i])) <= Fraction(hi[i]) for i in range(2))
    assert Fraction(float(out[1])) - Fraction(float(out[0])) >= Fraction(target) and wx[0] <= 0.9
    assert replay_text(ort_session(m), prop, text, (2,)) is not None


def test_unreachable_condition_is_never_sat(tmp_path):
    """No point of the box reaches Y_1 − Y_0 ≥ (max seen) + 100: never sat (and not provable by
    intervals on a tiny box either way, so unknown or unsat)."""
    m = net(tmp_path)
    lo, hi = [-1.0, -1.0], [1.0, 1.0]
    _, y = sample_outputs(m, lo, hi)
    cond = f"(>= (- Y_1 Y_0) {float(np.max(y[:, 1] - y[:, 0]) + 100)!r})"
    res = run_instance(m, write(tmp_path, vnnlib_text(lo, hi, cond)), 30, restarts=1, steps=20)
    assert res.verdict in ("unsat", "unknown")


def random_instance(tmp_path, seed):
    """A random net (fixed batch 1 for odd seeds), box and two-disjunct linear condition over Y (and
    X for seeds divisible by 4, strict for seeds ≡ 1 mod 4); the thresholds sit far below, just
    below or inside the range sampled in onnxruntime (seed % 3), so all verdicts occur."""
    rng = np.random.default_rng(100 + seed)
    m = net(tmp_path, seed=seed, batch=1 if seed % 2 else "N")
    c = rng.normal(size=(2, 3)).round(3)
    cx = rng.normal(size=(2, 2)).round(3) if seed % 4 == 0 else np.zeros((2, 2))
    lo = rng.uniform(-1, 0.5, 2).round(4)
    hi = (lo + rng.uniform(0.001, 0.3, 2)).round(4)
    x, y = sample_outputs(m, lo, hi, n=1000)
    vals = y.astype(np.float64) @ c.T + x.astype(np.float64) @ cx.T
    spread = vals.max(0) - vals.min(0) + 1e-3
    d = {0: vals.min(0) - spread, 1: vals.min(0) - 0.01 * spread, 2: np.quantile(vals, 0.3, axis=0)}[seed % 3]
    op = "<" if seed % 4 == 1 else "<="
    terms = [f"({op} (+ {' '.join(f'(* {float(v)!r} Y_{j})' for j, v in enumerate(row))} "
             f"{' '.join(f'(* {float(v)!r} X_{i})' for i, v in enumerate(rx))}) {float(b)!r})"
             for row, rx, b in zip(c, cx, d)]
    text = vnnlib_text(lo.tolist(), hi.tolist(), f"(or (and {terms[0]}) (and {terms[1]}))")
    return m, text, x, y


@pytest.mark.parametrize("seed", range(18))
def test_random_properties_verdicts_agree_with_onnxruntime(tmp_path, seed):
    """An unsat is never contradicted by onnxruntime at sampled points of the box (corners
    included); a sat witness always replays (checked inside run_instance and again here)."""
    m, text, x, y = random_instance(tmp_path, seed)
    prop = parse_property(text)
    res = run_instance(m, write(tmp_path, text), 30, restarts=1, steps=30, seed=seed)
    hit = [prop.cases[0].satisfied_by(yy, xx) is not None for xx, yy in zip(x, y)]
    if res.verdict == "unsat":
        assert not any(hit)
    if res.verdict == "sat":
        assert replay_text(ort_session(m), prop, result_text(res), (2,)) is not None
    if any(hit):
        assert res.verdict == "sat"  # a sampled point satisfies it: never unsat, and PGD finds one
    assert res.verdict in ("unsat", "sat", "unknown")


def test_random_properties_reach_every_verdict(tmp_path):
    """The random instances above are not all of one kind: intervals prove the far thresholds."""
    got = set()
    for seed in (0, 1, 2, 3, 5, 6):
        m, text, _, _ = random_instance(tmp_path, seed)
        got.add(run_instance(m, write(tmp_path, text), 30, restarts=1, steps=30, seed=seed).verdict)
    assert {"unsat", "sat"} <= got


class ExactLinearRung:
    """A test rung for a one-Gemm model: the exact minimum of c·(W x + b) over the box, rounded
    down (what a CROWN rung provides on such a model): the real function only (guarantee real)."""

    name, guarantees = "exact-linear", ("real",)

    def __init__(self, w, b):
        self.w, self.b = w, b

    def lower_bounds(self, model, lo, hi, c, deadline=None, guarantee="real"):
        out = []
        for row in c:
            cw = [sum(Fraction(float(row[k])) * Fraction(float(self.w[k, i])) for k in range(len(row)))
                  for i in range(self.w.shape[1])]
            v = sum(Fraction(float(row[k])) * Fraction(float(self.b[k])) for k in range(len(row)))
            v += sum(q * Fraction(float(lo.ravel()[i] if q > 0 else hi.ravel()[i])) for i, q in enumerate(cw))
            out.append(float(np.nextafter(float(v), -np.inf)))
        return np.array(out)


def test_ladder_seam_takes_another_rung(tmp_path):
    """The ladder accepts a rung with lower bounds of C·y over the box (the CROWN seam); the proof
    names it and states the demanded guarantee, and a rung that cannot prove the demanded
    guarantee is not used."""
    w = np.array([[1.0, 1.0], [1.0, -1.0], [0.0, 0.0]], np.float32)
    b = np.array([0.0, 0.0, -0.5], np.float32)
    m = relu_mlp_onnx(tmp_path / "lin.onnx", [(w, b)], (2,))
    model = load_model(m)
    # Y_0 - Y_1 = 2 X_1 ≥ 0.2 on the box: provable exactly; intervals see Y_0 - Y_1 ≥ -0.8
    case = parse_property(vnnlib_text([0.1, 0.1], [0.5, 0.5], "(>= Y_1 Y_0)")).cases[0]
    assert prove(model, case, (IntervalRung(),)) is None
    proof = prove(model, case, (IntervalRung(), ExactLinearRung(w, b)), guarantee="real")
    assert proof is not None and (proof.method, proof.guarantee) == ("exact-linear", "real")
    assert prove(model, case, (IntervalRung(), ExactLinearRung(w, b))) is None  # float32 demanded
    proof = prove(model, case)  # the default ladder's linear rung (CROWN) proves it too, for float32
    assert proof is not None and (proof.method, proof.guarantee) == ("crown", "float32")


def cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "verify_cli.py"), "vnnlib", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_cli_writes_the_results_file_and_json(tmp_path):
    m = net(tmp_path, bias0=50.0, batch=1)
    p = write(tmp_path, vnnlib_text([0.4, 0.4], [0.5, 0.5], "(>= Y_2 Y_0)"))
    r = cli(m, p, "--out", tmp_path / "res.txt", "--timeout", "20", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["verdict"] == "unsat"
    assert (tmp_path / "res.txt").read_text() == "unsat\n"


@pytest.mark.parametrize("case", ["bad-property", "wrong-size", "out-is-input", "bad-timeout"])
def test_cli_bad_input_one_line_exit_2(tmp_path, case):
    m = net(tmp_path)
    good = vnnlib_text([0.0, 0.0], [1.0, 1.0], "(>= Y_2 Y_0)")
    p = write(tmp_path, {"bad-property": good + "(assert (>= Y_0 0)", "wrong-size": good.replace("Y_2", "Y_3")
                         .replace("(declare-const Y_0 Real)", "(declare-const Y_0 Real)(declare-const Y_3 Real)")}
              .get(case, good))
    out = p if case == "out-is-input" else tmp_path / "res.txt"
    before = p.read_bytes()
    r = cli(m, p, "--out", out, "--timeout", "0" if case == "bad-timeout" else "10")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ")
    assert p.read_bytes() == before and not (tmp_path / "res.txt").exists()


def test_model_the_attack_cannot_run_is_unknown_not_an_error(tmp_path, monkeypatch):
    from verify.attack.torch_graph import TorchGraph
    from common.errors import ModelError

    def refuse(*_a, **_k):
        raise ModelError("the attack cannot evaluate op(s) Foo")

    monkeypatch.setattr(TorchGraph, "__init__", refuse)
    m = net(tmp_path)
    res = run_instance(m, write(tmp_path, vnnlib_text([-1.0, -1.0], [1.0, 1.0], "(>= Y_1 Y_0)")), 10)
    assert res.verdict == "unknown" and "Foo" in res.notes[0]
