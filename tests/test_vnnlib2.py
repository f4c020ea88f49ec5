"""VNN-LIB 2.0 through the optional `vnnlib` package (verify/vnnlib/spec2.py): the same Property as
1.0, bounds in one `(assert (and …))` kept, unbounded inputs refused, decimals exact (outward
float32 for proofs), verdicts equal to 1.0's, one-line refusals, the missing-package path."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from common.errors import PropertyError
from common.runtime import ort_logits, ort_session
from tests.test_vnnlib_verdicts import ROOT, net, sample_outputs, vnnlib_text, write
from verify.vnnlib.run import parse_witness, replay_text, result_text, run_instance
from verify.vnnlib.spec import parse_property
from verify.vnnlib.spec2 import INSTALL_HINT

needs_pkg = pytest.mark.skipif(importlib.util.find_spec("vnnlib") is None,
                               reason='the optional vnnlib package is not installed (pip install "linfverify[vnnlib2]")')


def v2_text(lo, hi, condition: str, *, x_shape=(1, 2), n_y=3, one_and=True, dtype="float32", extra="") -> str:
    """A 2.0 file: input X of ``x_shape`` with the box (one `(assert (and …))` or one assert per
    bound), output Y of shape [1, n_y]; ``condition`` uses X_i/Y_j, rewritten to X[0,i]/Y[0,j]."""
    def ix(k):  # flat index -> the 2.0 index text for x_shape
        return ",".join(map(str, np.unravel_index(k, x_shape)))
    bounds = [f"({op} X[{ix(i)}] {v!r})" for i, (a, b) in enumerate(zip(lo, hi)) for op, v in ((">=", a), ("<=", b))]
    box = f"(assert (and {' '.join(bounds)}))\n" if one_and else "".join(f"(assert {t})\n" for t in bounds)
    for k in range(len(lo)):
        condition = condition.replace(f"X_{k}", f"X[{ix(k)}]")
    for j in range(n_y):
        condition = condition.replace(f"Y_{j}", f"Y[0,{j}]")
    return (f"; generated\n(vnnlib-version <2.0>)\n(declare-network net\n"
            f"  (declare-input X {dtype} [{', '.join(map(str, x_shape))}])\n"
            f"  (declare-output Y {dtype} [1, {n_y}])\n{extra})\n{box}(assert {condition})\n")


WIN = "(or (and (>= Y_1 Y_0)) (and (>= Y_2 Y_0)))"


@needs_pkg
@pytest.mark.parametrize("one_and", [True, False])
def test_bounds_in_one_and_come_back_bounded(one_and):
    """One `(assert (and …))` of bounds gives the same single case as one assert per bound: both
    bounds of every input, and the condition (vnnlib.compat.transform splits it into a case with no
    bounds and a case with no condition: it is not used)."""
    p = parse_property(v2_text([0.1, -0.5], [0.3, 0.5], WIN, one_and=one_and))
    assert (p.n_x, p.n_y, p.x_shape, p.y_shape) == (2, 3, (1, 2), (1, 3))
    [case] = p.cases
    assert case.lo == [Fraction("0.1"), Fraction("-0.5")] and case.hi == [Fraction("0.3"), Fraction("0.5")]
    assert len(case.disjuncts) == 2 and all(len(d) == 1 for d in case.disjuncts)
    assert p.cases == parse_property(vnnlib_text([0.1, -0.5], [0.3, 0.5], WIN)).cases


@needs_pkg
@pytest.mark.parametrize("drop", ["(<= X[0,1] 0.5)", "(>= X[0,0] 0.1)"])
def test_an_unbounded_input_is_refused(drop):
    text = v2_text([0.1, -0.5], [0.3, 0.5], WIN).replace(drop, "")
    with pytest.raises(PropertyError, match="has no (upper|lower) bound") as e:
        parse_property(text)
    assert "\n" not in str(e.value)


@needs_pkg
def test_decimals_are_exact_and_rounded_outward():
    """0.1, 0.30000001, -0.001 are not float32 (nor float64): the box is the decimals' rationals;
    the proof box contains them, the witness box lies inside them."""
    lo, hi = ["0.1", "-0.001"], ["0.30000001", "0.7"]
    text = v2_text([0.0, 0.0], [1.0, 1.0], WIN)
    for a, b, s in zip(lo, hi, ("X[0,0]", "X[0,1]")):
        text = text.replace(f"(>= {s} 0.0)", f"(>= {s} {a})").replace(f"(<= {s} 1.0)", f"(<= {s} {b})")
    [case] = parse_property(text).cases
    assert case.lo == [Fraction(v) for v in lo] and case.hi == [Fraction(v) for v in hi]
    (olo, ohi), (ilo, ihi) = case.outer_box(), case.inner_box()
    for k in range(2):
        exact_lo, exact_hi = Fraction(lo[k]), Fraction(hi[k])
        assert Fraction(float(olo[k])) < exact_lo and Fraction(float(ohi[k])) >= exact_hi
        assert Fraction(float(ilo[k])) > exact_lo and Fraction(float(ihi[k])) <= exact_hi
        assert np.nextafter(olo[k], np.float32(np.inf)) == ilo[k]  # neighbours: nothing lost


@needs_pkg
def test_flat_index_is_c_order():
    """X of shape [1, 2, 2]: X[0,i,j] is X_{2i+j}, the model input flattened in C order."""
    lo = [0.0, 0.25, 0.5, 0.75]
    p = parse_property(v2_text(lo, [v + 0.125 for v in lo], WIN, x_shape=(1, 2, 2)))
    assert p.x_shape == (1, 2, 2) and p.cases[0].lo == [Fraction(v) for v in lo]


@needs_pkg
@pytest.mark.parametrize("batch", ["N", 1])
def test_unsat_same_as_1_0(tmp_path, batch):
    m = net(tmp_path, batch=batch, bias0=50.0)
    r1 = run_instance(m, write(tmp_path, vnnlib_text([0.4, 0.4], [0.5, 0.5], WIN)), 30)
    r2 = run_instance(m, write(tmp_path, v2_text([0.4, 0.4], [0.5, 0.5], WIN), "p2.vnnlib"), 30)
    assert (r2.verdict, r2.method, r2.guarantee) == (r1.verdict, r1.method, r1.guarantee) == ("unsat", "interval", "float32")
    _, y = sample_outputs(m, [0.4, 0.4], [0.5, 0.5])
    assert (y[:, 0] > y[:, 1:].max(1)).all()


@needs_pkg
def test_sat_witness_replays_and_matches_1_0(tmp_path):
    m = net(tmp_path)
    lo, hi = [-1.0, -1.0], [1.0, 1.0]
    _, y = sample_outputs(m, lo, hi)
    target = float(np.sort(y[:, 1] - y[:, 0])[-20])
    cond = f"(and (>= (- Y_1 Y_0) {target!r}) (<= X_0 0.9))"
    p1, p2 = vnnlib_text(lo, hi, cond), v2_text(lo, hi, cond)
    assert parse_property(p1).cases == parse_property(p2).cases
    res = run_instance(m, write(tmp_path, p2, "p2.vnnlib"), 30)
    assert res.verdict == run_instance(m, write(tmp_path, p1), 30).verdict == "sat"
    wx, wy = parse_witness(result_text(res), 2, 3)
    out = ort_logits(ort_session(m), wx.astype(np.float32)[None])[0]
    assert np.array_equal(out.astype(np.float64), wy)
    assert all(Fraction(lo[i]) <= Fraction(float(wx[i])) <= Fraction(hi[i]) for i in range(2)) and wx[0] <= 0.9
    assert Fraction(float(out[1])) - Fraction(float(out[0])) >= Fraction(target)
    assert replay_text(ort_session(m), parse_property(p2), result_text(res), (2,)) is not None


BOX2 = "(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 1.0)))\n"
HEAD = "(vnnlib-version <2.0>)\n"
NET = "(declare-network net (declare-input X real [1, 2]) (declare-output Y real [1, 3]))\n"


@needs_pkg
@pytest.mark.parametrize("text, msg", [
    (HEAD + NET + NET.replace("net (", "other (").replace("X ", "X2 ").replace("Y ", "Y2 ") + BOX2
     + "(assert (>= Y[0,0] 0.0))", "2 networks"),
    (HEAD + NET.replace("(declare-output", "(declare-input Z real [1]) (declare-output") + BOX2
     + "(assert (>= Y[0,0] 0.0))", "one input and one output"),
    (HEAD + NET.replace("(declare-output", "(declare-hidden H real [3] \"h\") (declare-output") + BOX2
     + "(assert (>= Y[0,0] 0.0))", "hidden"),
    (HEAD + NET + BOX2 + "(assert (!= Y[0,0] 0.0))", "unsupported expression"),
    (HEAD + NET + BOX2 + "(assert (>= (* Y[0,0] Y[0,1]) 0.0))", "nonlinear"),
    (HEAD + NET.replace("real [1, 3]", "float16 [1, 3]") + BOX2 + "(assert (>= Y[0,0] 0.0))", "element type F16"),
    (HEAD + NET + BOX2 + "(assert (>= Y[0,0] 0))", "VNN-LIB 2.0: line"),
    (HEAD + NET + BOX2 + "(assert (>= Y[0,5] 0.0))", "VNN-LIB 2.0: line"),
    (HEAD + NET + BOX2 + "(assert (>= Y[0,0] 0.0)", "VNN-LIB 2.0"),
    # the package's own parser crashes the process on deep nesting: refused before it is called
    (HEAD + NET + BOX2 + "(assert " + "(and " * 100_000 + "(>= Y[0,0] 0.0)" + ")" * 100_001, "nested deeper"),
    # the package stops at a NUL (what follows would be dropped) and throws C++ errors on huge numbers
    (HEAD + NET + BOX2 + "(assert (>= Y[0,0] 0.0))\x00(assert (>= Y[0,1] 0.0))", "NUL"),
    (HEAD + NET + BOX2 + "(assert (>= Y[0,99999999999999999999999] 0.0))", "cannot read it"),
    (HEAD + NET + BOX2 + "(assert (>= Y[0,0] 9" + "9" * 400 + ".0))", "cannot read it"),
    (HEAD + NET.replace("[1, 2]", "[100000, 100000, 100000]") + BOX2.replace("X[0,", "X[0,0,")
     + "(assert (>= Y[0,0] 0.0))", "1000000000000000 inputs"),
], ids=["networks", "inputs", "hidden", "not-equal", "nonlinear", "float16", "int-literal", "index",
        "unclosed", "deep", "nul", "huge-index", "huge-number", "huge-shape"])
def test_refused_one_line(text, msg):
    with pytest.raises(PropertyError, match=msg) as e:
        parse_property(text)
    assert "\n" not in str(e.value) and len(str(e.value)) < 300


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vnnlib", None)  # `import vnnlib` raises ImportError
    with pytest.raises(PropertyError) as e:
        parse_property(HEAD + NET + BOX2 + "(assert (>= Y[0,0] 0.0))")
    assert INSTALL_HINT in str(e.value) and "\n" not in str(e.value)
    assert parse_property(vnnlib_text([0.0], [1.0], "(>= Y_0 0)", n_y=1)).n_x == 1  # 1.0 needs nothing


def cli(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "verify_cli.py"), "vnnlib", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)


def test_cli_without_the_package_one_line_exit_2(tmp_path):
    shadow = tmp_path / "shadow" / "vnnlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "shadow"), str(ROOT)]))
    m = net(tmp_path)
    p = write(tmp_path, v2_text([0.0, 0.0], [1.0, 1.0], WIN), "p2.vnnlib")
    r = cli(m, p, "--out", tmp_path / "res.txt", "--timeout", "10", env=env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and INSTALL_HINT in r.stderr
    assert not (tmp_path / "res.txt").exists()


@needs_pkg
@pytest.mark.parametrize("x_shape, ok", [((1, 2), True), ((2,), True), ((2, 1), False), ((1, 1, 2), False)])
def test_declared_shapes_checked_against_the_model(tmp_path, x_shape, ok):
    m = net(tmp_path, bias0=50.0)
    p = write(tmp_path, v2_text([0.4, 0.4], [0.5, 0.5], WIN, x_shape=x_shape), "p2.vnnlib")
    r = cli(m, p, "--out", tmp_path / "res.txt", "--timeout", "20")
    if ok:
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "res.txt").read_text() == "unsat\n"
    else:
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "input shape" in r.stderr
        assert not (tmp_path / "res.txt").exists()


@needs_pkg
def test_wrong_output_shape_refused(tmp_path):
    m = net(tmp_path)
    text = v2_text([0.4, 0.4], [0.5, 0.5], "(>= Y_1 Y_0)").replace("[1, 3]", "[1, 1, 3]").replace("Y[0,", "Y[0,0,")
    p = write(tmp_path, text, "p2.vnnlib")
    with pytest.raises(PropertyError, match="output shape"):
        run_instance(m, p, 10)


def test_the_extra_is_declared_and_in_dev():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["vnnlib2"] == ["vnnlib>=1.0.2"] and "vnnlib>=1.0.2" in extras["dev"]
    assert '"linfverify[vnnlib2]"' in INSTALL_HINT
