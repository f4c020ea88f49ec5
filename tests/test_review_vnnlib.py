"""Review of the VNN-LIB front-end (verify/vnnlib/): hostile property and witness files.

Each test failed before its fix: a numeral that hangs or raises a traceback, a corrupt or bombing
gzip file, a box-grouping pass quadratic in (inputs × disjuncts), a witness text that crashes the
reader or loses the sign of -0.0."""

from __future__ import annotations

import gzip
import subprocess
import sys
import zlib
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from common.errors import PropertyError
from verify.vnnlib.run import parse_witness
from verify.vnnlib.spec import parse_property, read_property

ROOT = Path(__file__).resolve().parent.parent
DECL = "(declare-const X_0 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)\n"


def bounded(upper: str) -> str:
    return DECL + f"(assert (>= X_0 0)) (assert (<= X_0 {upper})) (assert (<= Y_0 Y_1))"


@pytest.mark.parametrize("numeral", ["1e999999999", "1e-999999999", "-.5E+888888888"], ids=["up", "down", "neg"])
def test_huge_exponent_is_refused_at_once(numeral):
    """Fraction('1e999999999') builds a billion-digit integer: minutes of CPU before --timeout
    even starts counting. Refused with one line instead."""
    with pytest.raises(PropertyError, match="number"):
        parse_property(bounded(numeral))


@pytest.mark.parametrize("numeral", ["1" * 5000, "0." + "1" * 5000, "1" * 4500 + "e-4000"],
                         ids=["integer", "fraction", "exponent"])
def test_numeral_with_thousands_of_digits_is_one_line_error(numeral):
    """Python refuses int('1' * 5000) (ValueError, int_max_str_digits): it escaped as a traceback."""
    with pytest.raises(PropertyError, match="number"):
        parse_property(bounded(numeral))


def test_long_exact_decimal_is_still_read_exactly():
    """The exact decimal of a float64 (hundreds of digits) is a legitimate bound: kept exact."""
    d = format(Decimal(5e-324), "f")  # 2**-1074 exactly: 1074 decimals
    assert len(d) > 1000
    p = parse_property(bounded(d))
    assert p.cases[0].hi == [Fraction(2) ** -1074]


@pytest.mark.parametrize("term", ["(* " + " ".join(["1e2000"] * 1000) + " X_0)",
                                  "(+ " + " ".join(f"(/ X_0 {p})" for p in (2 ** 61 - 1, 2 ** 89 - 1, 2 ** 107 - 1,
                                                                          2 ** 127 - 1) * 1) + " " +
                                  " ".join(f"(/ 1 {3 ** k + 2})" for k in range(1, 3000)) + ")"],
                         ids=["product", "denominators"])
def test_constants_growing_past_any_numeral_are_refused(term):
    """A 9 KB product of 1000 factors 1e10000 hung (a 10-million-digit coefficient); sums over many
    denominators grow the same way. Every computed number is bounded like the numerals."""
    with pytest.raises(PropertyError, match="out of range"):
        parse_property(DECL + f"(assert (>= X_0 0)) (assert (<= {term} 1)) (assert (<= Y_0 Y_1))")


def test_variable_index_with_thousands_of_digits_is_one_line_error():
    with pytest.raises(PropertyError, match="names inputs X_i"):
        parse_property(f"(declare-const X_{'1' * 5000} Real)(declare-const Y_0 Real)")


def test_corrupt_gzip_is_one_line_error(tmp_path):
    """A gzip header followed by garbage raised zlib.error (not OSError): a traceback."""
    bad = tmp_path / "p.vnnlib.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbagegarbage")
    with pytest.raises(PropertyError, match="cannot read"):
        read_property(bad)


def test_gzip_bomb_is_refused_without_inflating_it(tmp_path, monkeypatch):
    """The size limit was checked after decompressing everything: a small .gz inflating past it
    took all of its size in memory first. Now decompression stops at the limit."""
    import verify.vnnlib.spec as spec

    monkeypatch.setattr(spec, "MAX_BYTES", 1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = c.compress(b" " * (64 << 20)) + c.flush()  # 64 MiB of spaces in ~64 KiB
    (tmp_path / "bomb.vnnlib.gz").write_bytes(bomb)
    seen = []
    real = gzip.GzipFile.read

    def spy(self, size=-1):
        out = real(self, size)
        seen.append(len(out))
        return out

    monkeypatch.setattr(gzip.GzipFile, "read", spy)
    monkeypatch.setattr(gzip, "decompress", lambda *_a, **_k: pytest.fail("whole-file decompress"))
    with pytest.raises(PropertyError, match="larger than"):
        read_property(tmp_path / "bomb.vnnlib.gz")
    assert sum(seen) <= (1 << 20) + 1


def test_many_inputs_times_many_disjuncts_parse_in_linear_work():
    """An image property (thousands of inputs) with an ``or`` over the other classes (hundreds of
    disjuncts, tinyimagenet/vggnet16 style) copied, compared and hashed the whole box once per
    disjunct: minutes for vggnet16. Counted in Fraction comparisons, not in seconds."""
    n, k = 3000, 60
    parts = [f"(declare-const X_{i} Real)\n" for i in range(n)] + [f"(declare-const Y_{j} Real)\n" for j in range(k)]
    parts += [f"(assert (>= X_{i} 0.1234))\n(assert (<= X_{i} 0.5678))\n" for i in range(n)]
    parts.append("(assert (or " + " ".join(f"(and (>= Y_{j} Y_0))" for j in range(1, k)) + "))\n")
    calls = [0]
    real_hash, real_lt, real_gt = Fraction.__hash__, Fraction.__lt__, Fraction.__gt__

    def count(f):
        def g(*a):
            calls[0] += 1
            return f(*a)
        return g

    mp = pytest.MonkeyPatch()
    for name, f in (("__hash__", real_hash), ("__lt__", real_lt), ("__gt__", real_gt)):
        mp.setattr(Fraction, name, count(f))
    try:
        p = parse_property("".join(parts))
    finally:
        mp.undo()
    assert len(p.cases) == 1 and len(p.cases[0].disjuncts) == k - 1
    assert calls[0] < 20 * (n + k)  # was ~ 6 n k


def test_box_grouping_semantics_kept():
    """Per-disjunct input bounds still split into boxes, tighten the common box, drop empty ones and
    refuse an input left unbounded in some box."""
    d2 = "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)\n"
    p = parse_property(d2 + "(assert (>= X_0 0)) (assert (<= X_0 1)) (assert (>= X_1 0))"
                       "(assert (or (and (<= X_1 0.5) (<= Y_0 0)) (and (<= X_1 2) (< X_0 0.25) (<= Y_0 1))"
                       " (and (<= X_1 0.5) (>= Y_0 3)) (and (> X_0 1) (<= X_1 1) (<= Y_0 7))))")
    got = sorted((c.lo, c.hi, c.lo_strict, c.hi_strict, len(c.disjuncts)) for c in p.cases)
    assert got == [([0, 0], [Fraction(1, 4), 2], [False, False], [True, False], 1),
                   ([0, 0], [1, Fraction(1, 2)], [False, False], [False, False], 2)]
    with pytest.raises(PropertyError, match="X_1 has no upper bound"):
        parse_property(d2 + "(assert (>= X_0 0)) (assert (<= X_0 1)) (assert (>= X_1 0))"
                       "(assert (or (and (<= X_1 0.5) (<= Y_0 0)) (and (<= X_0 0.5) (<= Y_0 1))))")
    with pytest.raises(PropertyError, match="X_1 has no lower bound"):
        parse_property(d2 + "(assert (>= X_0 0)) (assert (<= X_0 1))"
                       "(assert (or (and (<= X_1 0.5) (>= X_1 0) (<= Y_0 0)) (and (<= X_1 0.5) (<= Y_0 1))))")
    # a box empty by a disjunct's own bounds is dropped before its unbounded inputs matter
    p = parse_property(d2 + "(assert (>= X_0 0)) (assert (<= X_0 1))"
                       "(assert (or (and (> X_0 1) (<= Y_0 0)) (and (>= X_1 0) (<= X_1 1) (<= Y_0 1))))")
    assert len(p.cases) == 1 and p.cases[0].hi == [1, 1]


@pytest.mark.parametrize("text", ["sat", "sat\n", "unsat", ""])
def test_witness_text_without_body_is_one_line_error(text):
    """``sat`` alone (no newline) raised IndexError from parse_witness (and replay_text, which the
    benchmark runs on published counterexample files)."""
    with pytest.raises(PropertyError):
        parse_witness(text, 1, 1)


def test_witness_keeps_the_sign_of_zero():
    """The results file prints -0.0 for a negative-zero input; reading it back gave +0.0, so the
    re-replay of "what is written" ran at another point than the one printed."""
    x, y = parse_witness("sat\n((X_0 -0.0)\n(Y_0 -0.0))\n", 1, 1)
    assert np.signbit(x[0]) and np.signbit(y[0])


def test_cli_numeral_errors_are_one_line_exit_2(tmp_path):
    from tests.test_vnnlib_verdicts import net

    m = net(tmp_path)
    d = "".join(f"(declare-const X_{i} Real)" for i in range(2)) + "".join(f"(declare-const Y_{j} Real)" for j in range(3))
    p = tmp_path / "p.vnnlib"
    p.write_text(d + "(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))(assert (<= X_1 " + "1" * 5000 + "))"
                 "(assert (>= Y_0 1e999999999))")
    r = subprocess.run([sys.executable, str(ROOT / "verify_cli.py"), "vnnlib", str(m), str(p), "--out",
                        str(tmp_path / "r.txt")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2, r.stderr[-500:]
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ")
    assert not (tmp_path / "r.txt").exists()


@pytest.mark.parametrize("cond, allowed", [
    ("(>= (* 1e400 Y_1) (* 1e400 Y_0))", {"sat"}),            # Y_1 ≥ Y_0 somewhere: the point of the test below
    ("(>= Y_0 -1e400)", {"sat"}),                            # always true
    ("(<= Y_0 -1e400)", {"unsat"}),                          # never true
    ("(<= (* 1e400 Y_0) (* 1e-400 Y_1))", {"unsat", "unknown"}),
    ("(<= (* 1e308 Y_0) 0)", {"unsat"}),                     # Y_0 ≈ 50: 1e308·Y_0 is beyond float64
    ("(>= (* 1e-400 Y_0) (* 1e-400 Y_1))", {"sat"}),           # Y_0 ≥ Y_1, written tiny
])
def test_coefficients_beyond_float64_are_decided_not_crashed(tmp_path, cond, allowed):
    """A coefficient or bound beyond float64 (1e400) raised OverflowError in the prover's float64
    matrix and the search's goal; a finite coefficient times an output beyond float64 (1e308 · 50)
    overflowed the rounding of the interval bound. They are exact rationals like any other."""
    from common.runtime import ort_session
    from tests.test_vnnlib_verdicts import net, vnnlib_text, write
    from verify.vnnlib.run import replay_text, result_text, run_instance

    m = net(tmp_path, bias0=50.0)
    lo, hi = [0.4, 0.4], [0.5, 0.5]
    if "Y_1) (* 1e400 Y_0)" in cond:  # flip the bias so Y_1 ≥ Y_0 holds on the box
        m = net(tmp_path, bias0=-50.0, name="neg.onnx")
    text = vnnlib_text(lo, hi, cond)
    res = run_instance(m, write(tmp_path, text), 20, restarts=1, steps=20)
    assert res.verdict in allowed
    if res.verdict == "sat":
        assert replay_text(ort_session(m), parse_property(text), result_text(res), (2,)) is not None
