"""Proving a VNN-LIB case ``unsat``: no input of the box meets the output condition.

A case is proved when, for every disjunct (a conjunction of atoms ``c·(y, x) ≤ r``), some atom is
violated at every point of the box: a sound lower bound of ``c·(y, x)`` over the box exceeds ``r``
(or reaches it, for a strict ``<``). The bound is split exactly into
- the input part ``c_x·x``: its exact minimum over the (outward-rounded, float32) box, in rationals;
- the output part ``c_y·y``: the best lower bound any *rung* of the method ladder gives.

A rung (:class:`Rung`) bounds the output part: given the model, the float32 box and the float64
matrix ``C`` [m, K], it returns float64 lower bounds [m] of ``C·f(x)`` over the box (NaN or −inf
where it has none) that hold under the demanded guarantee (verify/guarantee.py: ``real`` or
``float32``; a rung names the guarantees it can prove in ``guarantees`` and is skipped for any
other). The file's coefficients are exact
rationals: ``c = c64 + δ`` with ``c64`` the float64 nearest, and ``δ·y`` is bounded exactly over the
interval rung's output box, so a rung only ever sees float64 matrices. Rungs run cheapest first and
the ladder stops at the first that proves the case: :class:`IntervalRung`, then linear bound
propagation (:class:`CrownRung`: CROWN, then α-CROWN with optimised slopes within the instance's
deadline, verify/bounds/spec.py); nonnegative combinations of a disjunct's atoms are a row of ``C``
like any other (λᵀC, λᵀr).

Guarantees (docs/SOUNDNESS.md): ``VerifiedModel.interval`` encloses (a) the exact real outputs of
the stored weights for every real input in the box and (b) the float32 outputs of onnxruntime (the
pinned session) for every float32 input in it; the box is the property's box rounded outwards, so
the interval rung proves both ``real`` and ``float32`` with the same bounds. The CROWN rung runs
with ``ort`` = (guarantee is ``float32``): under ``real`` it uses the tighter exact-function bounds.
A proof states the guarantee demanded of it, which every rung it used proved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol

import numpy as np

from common.errors import ModelError
from verify.guarantee import DEFAULT, FLOAT32, REAL, with_ort
from verify.vnnlib.cases import Atom, Case, to_float

__all__ = ["Rung", "IntervalRung", "Proof", "prove", "LADDER"]


class Rung(Protocol):
    """One method of the ladder (see the module docstring)."""

    name: str
    guarantees: tuple[str, ...]

    def lower_bounds(self, model, lo: np.ndarray, hi: np.ndarray, c: np.ndarray, deadline=None,
                     guarantee: str = DEFAULT) -> np.ndarray:
        """float64 [m]: lower bounds of ``c @ f(x)`` for x in [lo, hi] (float32 [1, ...]), sound under
        ``guarantee`` (one of ``guarantees``); ``deadline`` (time.monotonic(), or None) is when the
        rung should give up (NaN rows)."""


@dataclass
class Proof:
    """Every disjunct of the case is refuted; ``method`` names the rungs used, ``guarantee`` what
    they proved (the demanded one)."""

    method: str
    guarantee: str
    refuted_by: list[int] = field(default_factory=list)  # per disjunct: the index of a violated atom


class IntervalRung:
    """Interval bound propagation of the box (``VerifiedModel.interval``), then the exact minimum
    of ``c·y`` over the output box (in rationals, rounded down to float64)."""

    name = "interval"
    guarantees = (REAL, FLOAT32)  # the same box encloses both readings

    def lower_bounds(self, model, lo, hi, c, deadline=None, guarantee=DEFAULT):
        ylo, yhi = output_box(model, lo, hi)
        if ylo is None:
            return np.full(len(c), np.nan)
        return np.array([_down(_box_min(_pairs(row), ylo, yhi)) for row in c])


class CrownRung:
    """Linear bound propagation (verify/bounds/spec.py ``spec_ladder``): CROWN, then α-CROWN on the
    rows CROWN leaves unproved, within the deadline. Under ``float32`` the linear bounds carry
    onnxruntime's float32 error (``ort=True``, docs/SOUNDNESS.md, "Linear bounds"); under ``real``
    they bound the exact function only (``ort=False``, tighter)."""

    name = "crown"
    guarantees = (REAL, FLOAT32)

    def lower_bounds(self, model, lo, hi, c, deadline=None, guarantee=DEFAULT):
        import time

        from verify.bounds.spec import spec_ladder

        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return np.full(len(c), np.nan)
        low, _ = spec_ladder(model, lo, hi, np.asarray(c, np.float64)[None], None, ort=with_ort(guarantee),
                             timeout=left)
        return low[0]


LADDER = (IntervalRung(), CrownRung())


def output_box(model, lo, hi):
    """(ylo, yhi) float64 [K] enclosing the outputs over the box, or (None, None) if unknown."""
    try:
        ylo, yhi = model.interval(lo, hi)
    except ModelError:
        return None, None
    ylo, yhi = ylo[0].astype(np.float64), yhi[0].astype(np.float64)
    if not (np.isfinite(ylo).all() and np.isfinite(yhi).all()):
        return None, None
    return ylo, yhi


def prove(model, case: Case, ladder=LADDER, deadline: float | None = None,
          guarantee: str = DEFAULT) -> Proof | None:
    """A proof under ``guarantee`` that no input of ``case``'s box meets its condition, or None (see
    module docstring); only the rungs that can prove ``guarantee`` run; they stop at ``deadline``
    (time.monotonic())."""
    with_ort(guarantee)  # validates the name
    lo32, hi32 = case.outer_box()
    if not (np.isfinite(lo32).all() and np.isfinite(hi32).all()):
        return None
    shape = (1,) + tuple(model.input_shape)
    lo, hi = lo32.reshape(shape), hi32.reshape(shape)
    atoms = list(dict.fromkeys(a for conj in case.disjuncts for a in conj))
    if not case.disjuncts:
        return Proof("empty", guarantee)
    ylo, yhi = output_box(model, lo, hi)
    if ylo is None:
        return None
    k = len(ylo)
    c_exact = [_dense(a.y, k) for a in atoms]
    # the float64 nearest each coefficient (0 beyond the float64 range: the residual carries it all)
    c64 = np.array([[_near(v) for v in row] for row in c_exact], np.float64).reshape(len(atoms), k)
    # exact parts every rung shares: the input part and the rounding residual of c
    fixed = [_box_min(a.x, lo32, hi32) + _box_min(_pairs([q - Fraction(f) for q, f in zip(row, r64)]), ylo, yhi)
             for a, row, r64 in zip(atoms, c_exact, c64)]
    best: list[Fraction | None] = [None] * len(atoms)
    source: list[Rung | None] = [None] * len(atoms)  # the rung that gave best[i]
    for rung in (r for r in ladder if guarantee in r.guarantees):
        lb = rung.lower_bounds(model, lo, hi, c64, deadline, guarantee)
        for i, v in enumerate(lb):
            if np.isfinite(v):
                total = Fraction(float(v)) + fixed[i]
                if best[i] is None or total > best[i]:
                    best[i], source[i] = total, rung
        refuted = _refutations(case, atoms, best)
        if refuted is not None:
            index = {a: i for i, a in enumerate(atoms)}
            used = list(dict.fromkeys(source[index[conj[j]]] for conj, j in zip(case.disjuncts, refuted)))
            return Proof("+".join(r.name for r in used), guarantee, refuted)
    return None


def _refutations(case: Case, atoms: list[Atom], best) -> list[int] | None:
    index = {a: i for i, a in enumerate(atoms)}
    out = []
    for conj in case.disjuncts:
        hit = next((j for j, a in enumerate(conj) if _violated(a, best[index[a]])), None)
        if hit is None:
            return None
        out.append(hit)
    return out


def _violated(a: Atom, lower: Fraction | None) -> bool:
    """True when ``lower`` ≤ c·(y, x) everywhere proves ``c·(y, x) ≤ r`` (or ``<``) false everywhere."""
    return lower is not None and (lower >= a.rhs if a.strict else lower > a.rhs)


def _dense(pairs, n: int) -> list[Fraction]:
    row = [Fraction(0)] * n
    for i, c in pairs:
        row[i] = c
    return row


def _pairs(row) -> list[tuple[int, Fraction]]:
    """(index, coefficient) of the nonzero entries of a dense row (exact: floats become Fractions)."""
    return [(i, Fraction(c)) for i, c in enumerate(row) if c != 0]


def _box_min(pairs, lo, hi) -> Fraction:
    """Exact minimum of ``Σ c·v_i`` over lo ≤ v ≤ hi for (i, c) in ``pairs`` (floats taken exactly)."""
    total = Fraction(0)
    for i, c in pairs:
        total += c * Fraction(float(lo[i] if c > 0 else hi[i]))
    return total


def _near(q: Fraction) -> float:
    f = to_float(q)
    return f if np.isfinite(f) else 0.0


def _down(q: Fraction) -> float:
    """The largest float64 ≤ q (−inf below the float64 range)."""
    f = to_float(q)
    if not np.isfinite(f):
        return -np.inf if f < 0 else float(np.finfo(np.float64).max)
    return float(np.nextafter(f, -np.inf)) if Fraction(f) > q else f
