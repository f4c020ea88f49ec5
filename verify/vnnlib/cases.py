"""The parsed form of a VNN-LIB property (verify/vnnlib/spec.py reads the files): :class:`Atom`
(one linear inequality ``c·(y, x) ≤ r``, ``<`` when strict), :class:`Case` (an input box and a
disjunction of conjunctions of atoms), :class:`Property`, the float32 roundings of exact bounds,
and :func:`build_cases`, which turns the asserted 1.0 s-expressions into cases (disjunctive normal
form, terms with the same box grouped). VNN-LIB 2.0 (verify/vnnlib/spec2.py) is rewritten into the
same s-expressions and goes through :func:`build_cases` too."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from common.errors import PropertyError
from verify.vnnlib.sexpr import number

MAX_TERMS = 100_000  # disjunctive normal form terms (products of disjunctions grow fast)
MAX_BITS = 2**17  # numerator and denominator of any number computed from the file's numerals
_VAR = re.compile(r"([XY])_(0|[1-9]\d{0,8})")  # indices below 10**9


@dataclass(frozen=True)
class Atom:
    """``Σ y_coef[j]·Y_j + Σ x_coef[i]·X_i ≤ rhs`` (``<`` when ``strict``); coefficients exact."""

    y: tuple[tuple[int, Fraction], ...]
    x: tuple[tuple[int, Fraction], ...]
    rhs: Fraction
    strict: bool

    def holds(self, y_vals, x_vals) -> bool:
        """Exact truth at float values (converted to rationals without rounding)."""
        s = sum((c * Fraction(float(y_vals[j])) for j, c in self.y), Fraction(0))
        s += sum((c * Fraction(float(x_vals[i])) for i, c in self.x), Fraction(0))
        return s < self.rhs if self.strict else s <= self.rhs


@dataclass
class Case:
    """One input box (exact bounds, each possibly strict) and its output condition: the disjunction
    of ``disjuncts``, each a conjunction of :class:`Atom`."""

    lo: list[Fraction]
    hi: list[Fraction]
    lo_strict: list[bool]
    hi_strict: list[bool]
    disjuncts: list[list[Atom]]

    def outer_box(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 (lo, hi) containing the box: each bound rounded outwards (strictness dropped)."""
        return (np.array([f32_below(v) for v in self.lo], np.float32),
                np.array([f32_above(v) for v in self.hi], np.float32))

    def inner_box(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 (lo, hi) inside the box, strict bounds respected; lo > hi somewhere when the
        box holds no float32 point."""
        lo = np.array([_inside(v, s, up=True) for v, s in zip(self.lo, self.lo_strict)], np.float32)
        hi = np.array([_inside(v, s, up=False) for v, s in zip(self.hi, self.hi_strict)], np.float32)
        return lo, hi

    def contains(self, x, outer: bool = False) -> bool:
        """Exact test that the float values ``x`` (flat) satisfy every bound of the box as written;
        ``outer``: lie in :meth:`outer_box` instead (the set a proof covers, a superset)."""
        if outer:
            lo, hi = self.outer_box()
            x = np.asarray(x, np.float64).ravel()
            return bool(np.isfinite(x).all() and (x >= lo).all() and (x <= hi).all())
        for v, lo, hi, ls, hs in zip(np.asarray(x, np.float64).ravel(), self.lo, self.hi,
                                     self.lo_strict, self.hi_strict):
            q = Fraction(float(v)) if np.isfinite(v) else None
            if q is None or q < lo or q > hi or (ls and q == lo) or (hs and q == hi):
                return False
        return True

    def satisfied_by(self, y, x) -> int | None:
        """Index of a disjunct that the outputs ``y`` and inputs ``x`` satisfy exactly, or None."""
        y = np.asarray(y, np.float64).ravel()
        x = np.asarray(x, np.float64).ravel()
        if not (np.isfinite(y).all() and np.isfinite(x).all()):
            return None
        for k, conj in enumerate(self.disjuncts):
            if all(a.holds(y, x) for a in conj):
                return k
        return None


@dataclass
class Property:
    """A parsed property: ``n_x`` inputs, ``n_y`` outputs, and the cases (an input satisfies the
    property iff it lies in some case's box and meets that case's condition)."""

    n_x: int
    n_y: int
    cases: list[Case]
    x_shape: tuple | None = None  # VNN-LIB 2.0: the declared input/output shapes (1.0: None)
    y_shape: tuple | None = None


def f32_below(v: Fraction) -> np.float32:
    """The largest float32 ≤ v (−inf below the float32 range)."""
    f = _f32(v)
    with np.errstate(over="ignore"):
        return np.nextafter(f, np.float32(-np.inf)) if _q(f) > v else f


def f32_above(v: Fraction) -> np.float32:
    """The smallest float32 ≥ v (+inf above the float32 range)."""
    f = _f32(v)
    with np.errstate(over="ignore"):
        return np.nextafter(f, np.float32(np.inf)) if _q(f) < v else f


def to_float(v: Fraction) -> float:
    """The float64 nearest v; ±inf beyond the float64 range (``float(v)`` raises there)."""
    try:
        return float(v)
    except OverflowError:
        return np.inf if v > 0 else -np.inf


def _f32(v: Fraction) -> np.float32:
    """A float32 neighbour of v (round to float64, then to float32: at most one ulp off)."""
    with np.errstate(over="ignore"):
        return np.float32(to_float(v))


def _q(f) -> Fraction | float:
    """The exact value of a float (±inf kept as a float, which compares correctly with Fractions)."""
    return Fraction(float(f)) if np.isfinite(f) else float(f)


def _inside(v: Fraction, strict: bool, up: bool) -> np.float32:
    f = f32_above(v) if up else f32_below(v)
    if strict and _q(f) == v:
        f = np.nextafter(f, np.float32(np.inf if up else -np.inf))
    return f


def build_cases(formulas: list, n_x: int, n_y: int) -> list["Case"]:
    """The cases of the conjunction of ``formulas`` (1.0 s-expressions over X_0… and Y_0…)."""
    names = dict.fromkeys([f"X_{i}" for i in range(n_x)] + [f"Y_{j}" for j in range(n_y)])
    return _cases([_dnf(f, names) for f in formulas], n_x)


def _declare(form, names) -> None:
    if len(form) != 3 or form[2] != "Real" or not isinstance(form[1], str):
        raise PropertyError(f"expected (declare-const NAME Real), got {_show(form)}")
    if not _VAR.fullmatch(form[1]):
        raise PropertyError(f"variable {form[1]!r}: VNN-LIB 1.0 names inputs X_i and outputs Y_j")
    if form[1] in names:
        raise PropertyError(f"variable {form[1]} is declared twice")
    names[form[1]] = None


def _count(names, kind: str) -> int:
    idx = sorted(int(n[2:]) for n in names if n[0] == kind)
    if idx != list(range(len(idx))):
        missing = min(set(range(len(idx))) - set(idx))
        raise PropertyError(f"{kind}_{missing} is not declared but {kind}_{idx[-1]} is")
    return len(idx)


def _show(form) -> str:
    s = form if isinstance(form, str) else "(" + " ".join(_show(f) for f in form) + ")"
    return s if len(s) <= 60 else s[:57] + "..."


def _term(t, names) -> tuple[dict[str, Fraction], Fraction]:
    """A linear term: (coefficients by variable name, constant)."""
    v = number(t)
    if v is not None:
        return {}, v
    if isinstance(t, str):
        if t not in names:
            raise PropertyError(f"undeclared variable {t!r}")
        return {t: Fraction(1)}, Fraction(0)
    if not t or not isinstance(t[0], str):
        raise PropertyError(f"expected a linear term, got {_show(t)}")
    args = [_term(a, names) for a in t[1:]]
    op = t[0]
    if op == "+" and args:
        out = _lin_sum(args, [1] * len(args), t)
    elif op == "-" and args:
        out = _lin_sum(args, [-1] if len(args) == 1 else [1] + [-1] * (len(args) - 1), t)
    elif op == "*" and args:
        out = ({}, Fraction(1))
        for a in args:
            if out[0] and a[0]:
                raise PropertyError(f"nonlinear product {_show(t)}")
            lin, k = (out, a[1]) if not a[0] else (a, out[1])
            out = _sized(({n: c * k for n, c in lin[0].items()}, lin[1] * k), t)
    elif op == "/" and len(args) == 2 and not args[1][0] and args[1][1] != 0:
        k = args[1][1]
        out = {n: c / k for n, c in args[0][0].items()}, args[0][1] / k
    else:
        raise PropertyError(f"unsupported term {_show(t)}")
    return _sized(out, t)


def _sized(lin, t):
    """``lin`` unless one of its exact numbers outgrew :data:`MAX_BITS` (products of constants and
    sums over many denominators grow without bound, and every later step with them slows down)."""
    for q in (*lin[0].values(), lin[1]):
        if max(q.numerator.bit_length(), q.denominator.bit_length()) > MAX_BITS:
            raise PropertyError(f"the term {_show(t)} has a number out of range (more than {MAX_BITS} bits)")
    return lin


def _lin_sum(args, signs, t="a comparison"):
    """Σ sign·arg of linear terms; the sizes are checked after every addition (:func:`_sized`)."""
    coef: dict[str, Fraction] = {}
    const = Fraction(0)
    for (lin, c), s in zip(args, signs):
        for n, v in lin.items():
            coef[n] = coef.get(n, Fraction(0)) + s * v
        const += s * c
        _sized(({n: coef[n] for n in lin}, const), t)
    return coef, const


def _atom(lhs, rhs, strict: bool) -> Atom | bool:
    """lhs ≤ rhs (< when strict) as an Atom; True/False when no variable is left."""
    coef, const = _lin_sum([lhs, rhs], [1, -1])
    coef = {n: c for n, c in coef.items() if c != 0}
    if not coef:
        return const < 0 if strict else const <= 0
    ys = tuple(sorted((int(n[2:]), c) for n, c in coef.items() if n[0] == "Y"))
    xs = tuple(sorted((int(n[2:]), c) for n, c in coef.items() if n[0] == "X"))
    return Atom(ys, xs, -const, strict)


def _dnf(f, names) -> list[list[Atom]]:
    """The formula as a list of conjunctions (an empty list is false, [[]] is true)."""
    if not isinstance(f, list) or not f or not isinstance(f[0], str):
        raise PropertyError(f"expected a formula, got {_show(f)}")
    op, args = f[0], f[1:]
    if op == "and":
        out = [[]]
        for a in args:
            out = _product(out, _dnf(a, names))
        return out
    if op == "or":
        out = [t for a in args for t in _dnf(a, names)]
        if len(out) > MAX_TERMS:
            raise PropertyError(f"the property has more than {MAX_TERMS} disjuncts")
        return out
    if op in ("<=", ">=", "<", ">", "=") and len(args) == 2:
        a, b = (_term(t, names) for t in args)
        if op in (">=", ">"):
            a, b = b, a
        atoms = [_atom(a, b, op in ("<", ">"))] if op != "=" else [_atom(a, b, False), _atom(b, a, False)]
        if any(t is False for t in atoms):
            return []
        return [[t for t in atoms if t is not True]]
    raise PropertyError(f"unsupported formula {_show(f)}")


def _product(a: list[list[Atom]], b: list[list[Atom]]) -> list[list[Atom]]:
    if len(a) * len(b) > MAX_TERMS:
        raise PropertyError(f"the property has more than {MAX_TERMS} disjuncts")
    return [s + t for s, t in itertools.product(a, b)]


def _cases(dnfs: list[list[list[Atom]]], n_x: int) -> list[Case]:
    """Group the terms of the conjunction of ``dnfs`` by input box (module docstring). The common
    box is built once; each term only records the inputs its own atoms bound (a property over
    150k inputs with an ``or`` of 999 output conditions does not copy the box 999 times)."""
    if any(not d for d in dnfs):
        return []  # an assertion is false: no input satisfies the property
    common = [a for d in dnfs if len(d) == 1 for a in d[0]]
    split = [d for d in dnfs if len(d) > 1]
    base = _Box(n_x)
    base_cond = base.add_all(common)
    if base.empty():
        return []
    total = 1
    for d in split:
        total *= len(d)
        if total > MAX_TERMS:
            raise PropertyError(f"the property has more than {MAX_TERMS} disjuncts")
    groups: dict[tuple, Case] = {}
    for combo in itertools.product(*split):
        box = _Box(n_x, base)
        cond = base_cond + box.add_all([a for t in combo for a in t])
        if box.empty():
            continue
        key = box.key()
        if key not in groups:
            groups[key] = Case(*box.full(), [])
        groups[key].disjuncts.append(cond)
    return list(groups.values())


_FREE = (None, None, False, False)  # (lo, hi, lo strict, hi strict) of an input no atom bounds


class _Box:
    """Exact bounds of the inputs collected from single-variable atoms: for each input it bounds,
    ``(lo, hi, lo_strict, hi_strict)``; the others are those of ``parent`` (or unbounded)."""

    def __init__(self, n: int, parent: "_Box | None" = None):
        self.n, self.parent = n, parent
        self.own: dict[int, tuple] = {}

    def get(self, i: int) -> tuple:
        if i in self.own:
            return self.own[i]
        return self.parent.get(i) if self.parent is not None else _FREE

    def add_all(self, atoms: list[Atom]) -> list[Atom]:
        """Tighten the box by the single-input atoms; return the other atoms (the condition)."""
        rest = []
        for a in atoms:
            if a.y or len(a.x) != 1:
                rest.append(a)
                continue
            i, c = a.x[0]
            v = a.rhs / c
            lo, hi, ls, hs = self.get(i)
            if c > 0 and (hi is None or v < hi or (v == hi and a.strict)):
                self.own[i] = (lo, v, ls, a.strict)
            elif c < 0 and (lo is None or v > lo or (v == lo and a.strict)):
                self.own[i] = (v, hi, a.strict, hs)
        return rest

    def empty(self) -> bool:
        """Some input bounded here has no value (the parent's own inputs are not looked at)."""
        return any(lo is not None and hi is not None and (lo > hi or (lo == hi and (ls or hs)))
                   for lo, hi, ls, hs in self.own.values())

    def key(self) -> tuple:
        """What tells this box from its parent's: the inputs whose bounds differ."""
        return tuple(sorted((i, b) for i, b in self.own.items()
                            if self.parent is None or b != self.parent.get(i)))

    def full(self) -> tuple[list, list, list, list]:
        """(lo, hi, lo_strict, hi_strict) of every input; PropertyError when one is unbounded."""
        rows = [self.get(i) for i in range(self.n)]
        for i, (lo, hi, _, _) in enumerate(rows):
            if lo is None or hi is None:
                side = "lower" if lo is None else "upper"
                raise PropertyError(f"input X_{i} has no {side} bound: unbounded inputs are not supported")
        return tuple(list(col) for col in zip(*rows)) if rows else ([], [], [], [])
