"""Differential soundness fuzzer (issue 12, must-show 2): random small ONNX graphs over the whole op
registry (tests/fuzz_graphs.py) with random constants, attributes and input boxes.

For each graph the verifier either refuses it at load (ModelError: fine; any other exception is a
failure) or, at sampled points of the box (float32 corners, centre and random points; rational
points for the exact checks), all of these hold (docs/SOUNDNESS.md, "Differential soundness fuzzer"):

1. onnxruntime's output (the pinned session of common/runtime.py, theorem (b)) lies in
   ``VerifiedModel.interval(lo, hi)``;
2. the exact rational output (tests/fuzz_exact.py; graphs with a transcendental op are skipped,
   Sigmoid and Tanh are evaluated to 600 bits) lies in it too (theorem (a));
3. ``VerifiedModel.lipschitz()`` bounds every sampled ratio |f(x) - f(x')|∞ / |x - x'|∞ of the
   exact function (not with Sigmoid/Tanh's 600-bit values), and of onnxruntime's up to the widths
   of the point boxes of x and x' (each point box holds both values, so their distance bounds
   onnxruntime's error);
4. our reading of the model agrees with onnxruntime's: at each sampled x the point box
   ``interval(x, x)`` holds onnxruntime's value and our float32 ``forward(x)``; a model onnxruntime
   refuses to load or run must be refused by the verifier too.

5. the linear bounds (verify/bounds/, CROWN) of C·y for C = [I; -I]: with onnxruntime's error
   (theorem (b)) below onnxruntime's values, in real arithmetic (theorem (a)) below the exact ones.

An interval call that raises ModelError means unknown (certify maps it to ``unknown``) and is
skipped. A NaN from onnxruntime must fall in a box that is [-inf, inf] in that entry: certify
(verify/certify/certifier.py, margins.box_margin) then cannot claim any label for the sample.
"""

from __future__ import annotations

import collections
import itertools
from fractions import Fraction

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from fuzz_exact import TRANSCENDENTAL, Undefined, evaluate
from fuzz_graphs import GENERATORS, graphs
from verify.bounds.spec import spec_lower
from common.errors import ModelError
from verify.front.model import load_model
from verify.ops._op_list import OPS
from common.runtime import ort_logits, ort_session

# default runs: a fixed seed (stable CI) and no example database; the slow run is random
_SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True, database=None)


def sample_points(lo, hi, rng, n_corners=6, n_random=4) -> np.ndarray:
    """float32 points [S, ...] of the box: lo, hi, the centre, random corners and random points."""
    corners = [np.where(rng.random(lo.shape) < 0.5, lo, hi) for _ in range(n_corners)]
    mid = (lo.astype(np.float64) + hi.astype(np.float64)) / 2
    rand = [lo + rng.random(lo.shape) * (hi.astype(np.float64) - lo) for _ in range(n_random)]
    pts = [lo, hi, mid] + corners + rand
    return np.concatenate([np.clip(np.asarray(p, np.float32), lo, hi) for p in pts]).astype(np.float32)


def rational_points(lo, hi, rng, n=3) -> list[np.ndarray]:
    """Random rational (generally not float32) points of the box, as object arrays of Fractions."""
    f = np.vectorize(lambda v: Fraction(float(v)), otypes=[object])
    flo, fhi = f(lo), f(hi)
    return [flo + (fhi - flo) * f(rng.integers(0, 1001, lo.shape) / 1000.0) for _ in range(n)]


def outside(lo, hi, y) -> np.ndarray:
    """Entries of y (float, or Fractions) outside [lo, hi]; a NaN needs the box [-inf, inf]."""
    out = np.zeros(np.shape(y), bool)
    for i, v in np.ndenumerate(y):
        a, b = float(lo[i]), float(hi[i])
        if isinstance(v, (float, np.floating)) and np.isnan(v):
            out[i] = not (a == -np.inf and b == np.inf)
        else:
            out[i] = not (a <= v <= b)
    return out


def _interval(m, lo, hi):
    try:
        return m.interval(lo, hi)
    except ModelError:
        return None  # unknown


def _q(v) -> Fraction:
    return v if isinstance(v, Fraction) else Fraction(float(v))


def _dist(a, b) -> Fraction:
    """‖a - b‖∞ exactly (float or Fraction entries)."""
    return max(abs(_q(u) - _q(v)) for u, v in zip(np.ravel(a), np.ravel(b)))


def _ratio_ok(ya, yb, xa, xb, lip, slack=Fraction(0)) -> bool:
    return _dist(ya, yb) <= Fraction(lip) * _dist(xa, xb) + slack


def check_model(fz, tmp_path, rng_seed: int, stats=None) -> list[str]:
    """Every violation of checks 1-4 for the generated model ``fz`` (empty = sound); ``stats``
    (a Counter, optional) counts what was checked."""
    stats = collections.Counter() if stats is None else stats
    rng = np.random.default_rng(rng_seed)
    path = tmp_path / "fuzz.onnx"
    onnx.save(fz.model, str(path))
    try:
        m = load_model(path)
    except ModelError:
        stats["refused"] += 1
        return []  # refused: fine
    try:
        sess = ort_session(path)
        xs = sample_points(fz.lo, fz.hi, rng)
        ys = ort_logits(sess, xs)
    except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
        return [f"the verifier accepts a model onnxruntime cannot run: {str(e).splitlines()[0][:200]}"]
    bad = []
    box = _interval(m, fz.lo, fz.hi)
    pboxes = [_interval(m, x[None], x[None]) for x in xs]
    fw = m.forward(xs)
    for i, (x, y) in enumerate(zip(xs, ys)):
        if box is not None and outside(*box, y[None]).any():
            bad.append(f"(1) onnxruntime {y.tolist()} at {x.tolist()} outside the box {box[0].tolist()}..{box[1].tolist()}")
        pb = pboxes[i]
        if pb is None:
            continue
        if outside(*pb, y[None]).any():
            bad.append(f"(4) onnxruntime {y.tolist()} at {x.tolist()} outside its point box {pb[0].tolist()}..{pb[1].tolist()}")
        fin = np.isfinite(fw[i])
        if outside(pb[0][0][fin], pb[1][0][fin], fw[i][fin]).any():
            bad.append(f"(4) our forward {fw[i].tolist()} at {x.tolist()} outside its point box {pb[0].tolist()}..{pb[1].tolist()}")
    try:
        lip = m.lipschitz()
    except ModelError:
        lip = np.inf
    stats["loaded"] += 1
    stats["box unknown"] += box is None
    stats["box finite"] += box is not None and bool(np.all(np.isfinite(box[0])) and np.all(np.isfinite(box[1])))
    stats["L finite"] += bool(np.isfinite(lip))
    stats["ort non-finite"] += bool(not np.all(np.isfinite(ys)))
    low = {ort: _crown(m, fz, ort) for ort in (True, False)}
    stats["crown bounded"] += low[True] is not None and bool(np.isfinite(low[True][1]).any())
    bad += _check_crown(low[True], ys, "onnxruntime")
    bad += _check_exact(fz, m, box, xs, lip, rng, stats, low[False])
    if np.isfinite(lip):
        widths = [np.inf if pb is None else float(np.max(pb[1].astype(np.float64) - pb[0])) for pb in pboxes]
        for i, j in itertools.combinations(range(len(xs)), 2):
            w = widths[i] + widths[j]
            if np.isfinite(w) and np.all(np.isfinite(ys[[i, j]])) and not _ratio_ok(ys[i], ys[j], xs[i], xs[j], lip, Fraction(w)):
                bad.append(f"(3) onnxruntime ratio at {xs[i].tolist()}, {xs[j].tolist()} exceeds L = {lip} (+ widths {w})")
    return bad


def _crown(m, fz, ort: bool):
    """(C, lower bounds of C·y) by linear bound propagation over the box, C = [I; -I] (check 5:
    theorem (b) when ``ort``, else (a)); None where it refuses (unknown)."""
    k = m.num_classes
    c = np.concatenate([np.eye(k), -np.eye(k)])[None]
    try:
        return c[0], spec_lower(m, fz.lo, fz.hi, c, ort=ort)[0]
    except ModelError:
        return None


def _check_crown(crown, ys, what) -> list[str]:
    """Check 5: every C·y at the sampled points (floats or Fractions) is >= the linear lower bound
    (NaN bound: no claim; a NaN value where a bound is claimed is a violation)."""
    if crown is None:
        return []
    c, low = crown
    bad = []
    for y in ys:
        for s, row in enumerate(c):
            k = int(np.argmax(np.abs(row)))
            v = np.ravel(y)[k]
            if np.isnan(low[s]) or low[s] == -np.inf:  # no claim
                continue
            if isinstance(v, Fraction) or np.isfinite(v):
                ok = _q(v) * int(row[k]) >= Fraction(float(low[s]))
            else:  # ±inf compares as a float; NaN breaks any claim
                ok = bool(float(v) * row[k] >= low[s])
            if not ok:
                bad.append(f"(5) {what} value {[float(t) for t in np.ravel(y)]} breaks the linear bound {low[s]!r} of row {s}")
    return bad


def _check_exact(fz, m, box, xs, lip, rng, stats, crown=None) -> list[str]:
    """Checks 2 and 3 on the exact rational function (graphs without transcendental ops), and
    check 5 (the real-arithmetic linear bound ``crown``) at the same points."""
    if any(op in TRANSCENDENTAL for op in fz.ops):
        return []
    pts = [x[None] for x in xs[:6]] + rational_points(fz.lo, fz.hi, rng)
    vals = []
    for x in pts:
        try:
            y, inexact, near = evaluate(fz.model, x, exact=True)
        except Undefined:
            continue
        if inexact:  # a transcendental value (e.g. Pow with exponent 0.5): no exact reference
            continue
        vals.append((x, y))
        stats["near-exact checked"] += near
        lip = np.inf if near else lip  # 600-bit Sigmoid/Tanh values: no ratio check
    stats["exact checked"] += bool(vals)
    bad = _check_crown(crown, [y for _, y in vals], "exact")
    for x, y in vals:
        if box is not None and outside(*box, y).any():
            bad.append(f"(2) exact {[float(v) for v in y.ravel()]} at {[float(v) for v in np.ravel(x)]} outside the box")
    if np.isfinite(lip):
        for (xa, ya), (xb, yb) in itertools.combinations(vals, 2):
            if not _ratio_ok(ya, yb, xa, xb, lip):
                bad.append(f"(3) exact ratio at {[float(v) for v in np.ravel(xa)]}, {[float(v) for v in np.ravel(xb)]} exceeds L = {lip}")
    return bad


def _assert_sound(fz, tmp_path, rng_seed):
    bad = check_model(fz, tmp_path, rng_seed)
    assert not bad, "\n".join(bad[:8])


def test_a_planted_unsound_relaxation_is_caught(tmp_path_factory, monkeypatch):
    """Check 5 is not vacuous: a Relu relaxation without the chord's intercept (relu(z) <= s z
    instead of s (z - l)) is found unsound on some random graph starting with Relu."""
    from hypothesis import find

    from certify_helpers import plant_unsound_relu

    plant_unsound_relu(monkeypatch)
    d = tmp_path_factory.mktemp("planted")
    found = find(graphs(first="Relu", max_ops=3), lambda fz: any("(5)" in v for v in check_model(fz, d, 0)),
                 settings=settings(max_examples=300, **_SETTINGS))
    assert "Relu" in found.ops


def test_check_5_reads_a_minus_inf_bound_as_no_claim():
    """A linear bound of -inf (e.g. onnxruntime's error charge overflowed at a box at FLT_MAX, found
    by the slow run) claims nothing; the check crashed converting it to a Fraction."""
    c = np.array([[1.0], [-1.0]])
    assert _check_crown((c, np.array([-np.inf, -np.inf])), [np.array([[3.4028235e38]], np.float32)], "x") == []
    assert _check_crown((c, np.array([-np.inf, 0.0])), [np.array([[1.0]], np.float32)], "x") != []


def test_generator_covers_the_whole_registry():
    assert set(GENERATORS) == {t for _, t in OPS}


@pytest.mark.parametrize("op", sorted({t for _, t in OPS}))
@settings(max_examples=2, **_SETTINGS)
@seed(12)
@given(data=st.data(), rng_seed=st.integers(0, 2**32 - 1))
def test_every_op_is_generated_and_sound(tmp_path_factory, op, data, rng_seed):
    fz = data.draw(graphs(first=op, max_ops=3))
    assert op in fz.ops
    _assert_sound(fz, tmp_path_factory.mktemp("fuzz"), rng_seed)


@settings(max_examples=100, **_SETTINGS)
@seed(12)
@given(fz=graphs(max_ops=6), rng_seed=st.integers(0, 2**32 - 1))
def test_random_graphs_are_sound(tmp_path_factory, fz, rng_seed):
    _assert_sound(fz, tmp_path_factory.mktemp("fuzz"), rng_seed)


@pytest.mark.slow
@settings(max_examples=2000, derandomize=False, **_SETTINGS)
@given(fz=graphs(max_ops=6), rng_seed=st.integers(0, 2**32 - 1))
def test_random_graphs_are_sound_slow(tmp_path_factory, fz, rng_seed):
    """The large budget (2,000 graphs of up to 6 ops)."""
    _assert_sound(fz, tmp_path_factory.mktemp("fuzz"), rng_seed)

