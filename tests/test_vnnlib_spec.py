"""VNN-LIB 1.0 reader (verify/vnnlib/spec.py): hand-written files, exact numbers, float32 rounding."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from common.errors import PropertyError
from verify.vnnlib.spec import f32_above, f32_below, parse_property

DECL = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + "".join(
    f"(declare-const Y_{j} Real)\n" for j in range(3))
BOX = "(assert (>= X_0 0.0)) (assert (<= X_0 1.0))\n(assert (>= X_1 -1)) (assert (<= X_1 1))\n"


def parse(body: str, decl: str = DECL):
    return parse_property(decl + body)


def test_robustness_style_file_with_comments():
    p = parse("""
; a comment (with parentheses) ; and more
""" + BOX + """
; output: the negation of robustness for label 1
(assert (or
    (and (>= Y_0 Y_1))   ; class 0 wins
    (and (>= Y_2 Y_1))
))
""")
    assert (p.n_x, p.n_y, len(p.cases)) == (2, 3, 1)
    case = p.cases[0]
    assert case.lo == [0, -1] and case.hi == [1, 1]
    assert len(case.disjuncts) == 2
    (a,) = case.disjuncts[0]
    assert dict(a.y) == {0: -1, 1: 1} and a.rhs == 0 and not a.strict and a.x == ()


def test_scientific_notation_negative_numbers_and_linear_terms():
    p = parse("""
(assert (>= X_0 -1.5E+0)) (assert (<= X_0 1e-2))
(assert (>= X_1 (- 0.25))) (assert (<= X_1 .5e1))
(assert (<= (+ Y_0 (* -2 Y_1) (/ Y_2 4)) (- 3 (* 0.5 1e1))))
""")
    c = p.cases[0]
    assert c.lo == [Fraction(-3, 2), Fraction(-1, 4)] and c.hi == [Fraction(1, 100), 5]
    (a,) = c.disjuncts[0]
    assert dict(a.y) == {0: 1, 1: -2, 2: Fraction(1, 4)} and a.rhs == -2


def test_bounds_inside_one_and_are_bounds():
    """The VNN-LIB 2.0 pitfall (bounds written as one (assert (and ...)) read as unbounded) must not
    happen here: they give the same box as separate assertions."""
    one = parse("(assert (and (>= X_0 0.0) (<= X_0 1.0) (>= X_1 -1) (<= X_1 1) (>= Y_0 Y_1)))")
    sep = parse(BOX + "(assert (>= Y_0 Y_1))")
    assert (one.cases[0].lo, one.cases[0].hi) == (sep.cases[0].lo, sep.cases[0].hi) == ([0, -1], [1, 1])


def test_multiple_input_boxes():
    p = parse("""
(assert (or (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1))
            (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1))))
(assert (or (and (<= Y_0 0)) (and (>= Y_2 Y_1) (<= Y_2 7))))
""")
    assert len(p.cases) == 2
    assert [c.lo[0] for c in p.cases] == [0, 2] and [c.hi[0] for c in p.cases] == [1, 3]
    assert all(len(c.disjuncts) == 2 for c in p.cases)
    assert [len(d) for d in p.cases[1].disjuncts] == [1, 2]


def test_strict_equal_and_mixed_input_output_atoms():
    p = parse(BOX + "(assert (< Y_0 X_1)) (assert (= Y_1 (+ X_0 X_1)))")
    (conj,) = p.cases[0].disjuncts
    assert len(conj) == 3 and conj[0].strict and dict(conj[0].x) == {1: -1}
    y = np.array([0.0, 0.5, 0.0], np.float32)
    assert p.cases[0].satisfied_by(y, np.array([0.25, 0.25], np.float32)) == 0
    assert p.cases[0].satisfied_by(y, np.array([0.25, 0.0], np.float32)) is None  # 0 < 0 is false


def test_empty_box_and_false_assertion_give_no_case():
    assert parse("(assert (>= X_0 2)) (assert (<= X_0 1)) (assert (>= X_1 0)) (assert (<= X_1 0))"
                 "(assert (>= Y_0 0))").cases == []
    assert parse(BOX + "(assert (<= 1 0))").cases == []
    assert len(parse(BOX + "(assert (<= 0 1)) (assert (>= Y_0 0))").cases) == 1


def test_rounding_outward_and_inward_to_float32():
    """0.1 is no float32: the proof box takes the float32 just outside, the witness box just inside."""
    p = parse("(assert (>= X_0 0.1)) (assert (<= X_0 0.3)) (assert (> X_1 0)) (assert (< X_1 1e-50))"
              "(assert (>= Y_0 0))")
    c = p.cases[0]
    (lo, hi), (ilo, ihi) = c.outer_box(), c.inner_box()
    tenth, three = Fraction(1, 10), Fraction(3, 10)
    assert Fraction(float(lo[0])) < tenth < Fraction(float(ilo[0])) and np.nextafter(lo[0], np.float32(1)) == ilo[0]
    assert Fraction(float(ihi[0])) < three < Fraction(float(hi[0])) and np.nextafter(ihi[0], np.float32(1)) == hi[0]
    # a strict box with no float32 inside: the witness box is empty, the proof box still covers it
    assert ilo[1] > ihi[1] and lo[1] == 0 and hi[1] > 0
    assert c.contains(np.array([ilo[0], 0.0])) is False  # X_1 > 0 strictly
    assert c.contains(np.array([lo[0], 1e-60])) is False  # below 0.1


@pytest.mark.parametrize("text", ["0.1", "1e-45", "3.4028235e38", "-2.5", "1e39", "123456789.123"])
def test_f32_below_above_are_the_neighbours(text):
    v = Fraction(text)
    lo, hi = f32_below(v), f32_above(v)
    assert lo.dtype == hi.dtype == np.float32
    q = (lambda f: Fraction(float(f)) if np.isfinite(f) else float(f))
    assert q(lo) <= v <= q(hi)
    with np.errstate(over="ignore"):
        assert lo == hi or np.nextafter(lo, np.float32(np.inf)) == hi


@pytest.mark.parametrize("body, msg", [
    ("(assert (>= X_0 0)) (assert (>= X_1 0)) (assert (<= X_1 1)) (assert (>= Y_0 0))", "X_0 has no upper bound"),
    ("(assert (<= X_0 1)) (assert (>= Y_0 0))", "X_0 has no lower bound"),
    (BOX + "(assert (>= Y_0 Z))", "undeclared variable"),
    (BOX + "(assert (>= (* Y_0 Y_1) 0))", "nonlinear"),
    (BOX + "(assert (>= Y_0 0)", "never closed"),
    (BOX + "(assert (>= Y_0 0)))", "unbalanced"),
    (BOX + '(assert (>= Y_0 "a"))', "strings"),
    (BOX + "(assert (not (>= Y_0 0)))", "unsupported formula"),
    (BOX + "(assert (>= Y_0 nan))", "undeclared variable"),
    (BOX + "(declare-fun f () Real)", "unsupported command"),
    ("(vnnlib-version <2.0>)" + BOX, "VNN-LIB 2.0"),
])
def test_bad_files_one_line_errors(body, msg):
    with pytest.raises(PropertyError, match=msg) as e:
        parse(body)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("decl, msg", [
    ("(declare-const X_0 Real) (declare-const X_0 Real) (declare-const Y_0 Real)", "declared twice"),
    ("(declare-const X_1 Real) (declare-const Y_0 Real)", "X_0 is not declared"),
    ("(declare-const X_0 Int) (declare-const Y_0 Real)", "declare-const NAME Real"),
    ("(declare-const input Real) (declare-const Y_0 Real)", "names inputs X_i"),
    ("(declare-const X_0 Real)", "no output variable"),
])
def test_bad_declarations(decl, msg):
    with pytest.raises(PropertyError, match=msg):
        parse_property(decl + "(assert (>= X_0 0)) (assert (<= X_0 1))")


def test_read_property_plain_gzip_and_unreadable(tmp_path):
    import gzip

    from verify.vnnlib.spec import read_property

    text = DECL + BOX + "(assert (>= Y_0 Y_1))"
    (tmp_path / "p.vnnlib").write_text(text)
    (tmp_path / "p.vnnlib.gz").write_bytes(gzip.compress(text.encode()))
    a, b = read_property(tmp_path / "p.vnnlib"), read_property(tmp_path / "p.vnnlib.gz")
    assert a.cases[0].lo == b.cases[0].lo and len(b.cases[0].disjuncts) == 1
    (tmp_path / "bad.vnnlib.gz").write_bytes(b"not gzip")
    (tmp_path / "latin.vnnlib").write_bytes(b"\xff\xfe")
    for name, msg in (("missing.vnnlib", "cannot read"), ("bad.vnnlib.gz", "cannot read"), ("latin.vnnlib", "UTF-8")):
        with pytest.raises(PropertyError, match=msg):
            read_property(tmp_path / name)
