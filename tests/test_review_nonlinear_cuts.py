"""Review of issue 15's Sigmoid/Tanh/MaxPool relaxations, coef_product and CROWN cut points:
adversarial probes (saturated, subnormal, huge boxes; residual/Concat/Split graphs; α-CROWN; odd
coefficients). Each asserts soundness against onnxruntime (ort=True) and the exact function
(tests/fuzz_exact.py, both guarantees); none failed on the reviewed code (no finding), they pin the
behaviour against regressions."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnx
import pytest
import torch
from fuzz_exact import evaluate
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from test_relax_nonlinear_ops import _gemm, build, points

from common.runtime import ort_logits, ort_session
from verify.bounds.linear import coef_product
from verify.bounds.rounding import U64, gamma
from verify.bounds.spec import spec_lower
from verify.front.model import load_model
from verify.ops._elementwise import libm_error

CENTRES = [0.0, 1e-30, -1e-38, 8.58, -8.58, 17.0, -17.0, 18.5, -18.5, 88.0, -88.0, 104.0, -104.0, 650.0, -650.0, 1e10, -3e38]
RADII = [0.0, 1e-40, 1e-7, 0.5, 9.0]


def _check(path, lo, hi, rng, alpha, n_pts=6) -> list[str]:
    """Violations of spec_lower (ort True/False) at sampled points; NaN rows (no bound) are skipped;
    exact checks only where the exact evaluator is exact or 600-bit near-exact."""
    m, sess, model = load_model(path), ort_session(path), onnx.load(str(path))
    k = m.num_classes
    cm = np.concatenate([np.eye(k), -np.eye(k), rng.normal(size=(2, k))])
    low = {o: spec_lower(m, lo, hi, np.broadcast_to(cm, (len(lo), *cm.shape)).copy(), ort=o, alpha_steps=alpha)
           for o in (True, False)}
    cq = [[Fraction(float(v)) for v in row] for row in cm]
    bad = []

    def cmp(y, n, guarantees, what):
        for s, row in enumerate(cq):
            v = sum(a * b for a, b in zip(row, y))
            for o in guarantees:
                if not np.isnan(low[o][n, s]) and v < Fraction(float(low[o][n, s])):
                    bad.append(f"{what} ort={o} n={n} s={s}: {float(v)} < {low[o][n, s]}")

    for n in range(len(lo)):
        xs = points(rng, lo[n:n + 1], hi[n:n + 1], n_pts)
        for x, y in zip(xs, ort_logits(sess, xs)):
            if np.isfinite(y).all():
                cmp([Fraction(float(v)) for v in y], n, (True,), "onnxruntime")
            yx, inexact, _ = evaluate(model, x[None], exact=True)
            if not inexact:
                cmp(list(np.ravel(yx)), n, (True, False), "exact")
    return bad


def _boxes(centre, width=5):
    lo = np.array([[centre - r * (1 + i) for i in range(width)] for r in RADII], np.float32)
    hi = np.array([[centre + r * (1 + i) for i in range(width)] for r in RADII], np.float32)
    ok = np.isfinite(lo).all(1) & np.isfinite(hi).all(1)
    return lo[ok], hi[ok]


@pytest.mark.parametrize("kind", ["Sigmoid", "Tanh", pytest.param("gemm-Sigmoid", marks=pytest.mark.slow),
                                  pytest.param("gemm-Tanh", marks=pytest.mark.slow)])
def test_sshape_bounds_hold_in_saturated_and_extreme_regions(tmp_path, kind):
    """Boxes centred where float32/float64 sigmoid/tanh saturate (±8.58, ±17, ±18.5, ±88, ±104),
    underflow (subnormal), or beyond (1e10, -3e38); radii 0 to 9; CROWN and α-CROWN."""
    rng = np.random.default_rng(11)
    op = kind.split("-")[-1]
    layers = [(op,)] if "-" not in kind else [_gemm(rng, 5, 4, 30.0), (op,), _gemm(rng, 4, 3)]
    path = build(layers, [5], tmp_path / f"{kind}.onnx")
    bad = []
    for i, c in enumerate(CENTRES):
        lo, hi = _boxes(c)
        bad += _check(path, lo, hi, rng, alpha=3 * (i % 2))
    assert bad == []


def _model(tmp_path, name, nodes, inits):
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["N", 3])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", 3])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    p = tmp_path / f"{name}.onnx"
    onnx.save(m, str(p))
    return p


W = nh.from_array(np.array([[2.0, -1.0, 0.5], [0.3, 1.5, -2.0], [-1.0, 0.7, 1.2]], np.float32), "w")
SP = nh.from_array(np.array([1, 2], np.int64), "sp")
GRAPHS = {  # several pending tensors at a cut: residual Add, x used twice, Concat of a Split
    "residual-tanh": ([h.make_node("Tanh", ["x"], ["t"]), h.make_node("Add", ["t", "x"], ["y"])], []),
    "residual-gemm-sigmoid": ([h.make_node("MatMul", ["x", "w"], ["g"]), h.make_node("Sigmoid", ["g"], ["s"]),
                               h.make_node("MatMul", ["s", "w"], ["g2"]), h.make_node("Sub", ["g2", "g"], ["y"])], [W]),
    "sigmoid-minus-itself": ([h.make_node("Sigmoid", ["x"], ["t"]), h.make_node("Sub", ["t", "t"], ["y"])], []),
    "split-concat": ([h.make_node("Split", ["x", "sp"], ["a", "b"], axis=1), h.make_node("Tanh", ["b"], ["tb"]),
                      h.make_node("Concat", ["tb", "a"], ["y"], axis=1)], [SP]),
}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_cut_points_with_several_pending_tensors(tmp_path, name):
    path = _model(tmp_path, name, *GRAPHS[name])
    rng = np.random.default_rng(4)
    lo = np.array([[-1, -2, 0.5], [-30, 3, -1e-40], [-0.1, -0.1, -0.1], [8.0, -18.0, 17.0]], np.float32)
    hi = lo + np.array([[2, 1, 0.0], [0.0, 0.0, 0.0], [0.2, 0.2, 0.2], [1.0, 1.0, 1.0]], np.float32)
    for alpha in (0, 4):
        assert _check(path, lo, hi, rng, alpha, n_pts=8) == []


def _sess(op):
    g = h.make_graph([h.make_node(op, ["x"], ["y"])], "g", [h.make_tensor_value_info("x", T.FLOAT, ["N"])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N"])])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    return ort_session(m)


@pytest.mark.parametrize("op, f", [("Sigmoid", lambda v: 1 / (1 + np.exp(-v))), ("Tanh", np.tanh)])
def test_onnxruntime_libm_error_model_near_the_region_boundaries(op, f):
    """Every float32 point (step 1 ulp·7) around where onnxruntime's kernels clamp/saturate, and a
    sweep of every 4099th positive bit pattern: |ort − f| ≤ libm_error(f) (measured worst: 0.15 of it)."""
    xs = [np.arange(np.float32(a).view(np.int32), np.float32(a).view(np.int32) + 70000, 7, dtype=np.int32).view(np.float32)
          for a in (8.0, 8.58, 8.9, 9.0, 17.0, 17.9, 18.0, 88.0, 1e-20)]
    sweep = np.arange(0, 0x7F800000, 4099, dtype=np.uint32).view(np.float32)
    x = np.concatenate(xs + [sweep]).astype(np.float32)
    x = np.concatenate([x, -x])
    y = _sess(op).run(None, {"x": x})[0].astype(np.float64)
    with np.errstate(over="ignore"):
        ex = f(x.astype(np.float64))
    assert np.all(np.abs(y - ex) <= libm_error(ex))


def test_coef_product_odd_coefficients_match_the_product():
    """One-hot rows with subnormal, huge, inf and NaN entries, and columns zero in some samples only:
    NaN/inf where the plain product has them, else within the charged bound of the exact value."""
    n, s, d, k = 3, 40, 20, 40
    a = torch.zeros(n, s, d, dtype=torch.float64)
    vals = [5e-324, -1e-310, 1e300, -1e308, float("inf"), float("nan"), 1.0, -3.0]
    for r in range(s):
        a[r % n, r, (7 * r) % d] = vals[r % len(vals)]
    m = torch.randn(k, d, dtype=torch.float64) * 10.0 ** torch.randint(-5, 5, (k, d))
    got, ref = coef_product(a, m), a @ m.T
    assert torch.equal(torch.isnan(got), torch.isnan(ref))
    fin = torch.isfinite(ref) & torch.isfinite(got)
    assert torch.equal(fin, torch.isfinite(ref))
    g = Fraction(gamma(d, U64))
    for i, j, q in torch.nonzero(fin).tolist()[::17]:
        row = [(Fraction(float(x)), Fraction(float(y))) for x, y in zip(a[i, j], m[q])]
        exact = sum(x * y for x, y in row)
        assert abs(Fraction(float(got[i, j, q])) - exact) <= g * sum(abs(x * y) for x, y in row) + d * Fraction(2) ** -1074
    mixed = torch.zeros(n, s, d, dtype=torch.float64)
    mixed[0, :, :4] = torch.randn(s, 4, dtype=torch.float64)  # columns 0-3 non-zero in sample 0 only
    mixed[1:, :, 4] = 1e-320
    torch.testing.assert_close(coef_product(mixed, m), mixed @ m.T, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("second", ["Relu", "Tanh"])
def test_infinite_input_box_keeps_the_cut_bound(tmp_path, second):
    """FINDING: an input box with an infinite bound in front of a Sigmoid/Tanh (whose relaxation then
    falls back to the constants of its finite output box, coefficient 0 on the input) made CROWN
    return NaN (no bound), discarding the finite cut bounds: concretize multiplied the zero
    coefficient by the infinite bound (0·inf = NaN) and a NaN final bound raises. A zero coefficient
    contributes exactly 0 (the term is absent); the bound is now at least the interval bound."""
    rng = np.random.default_rng(0)
    layers = [("Sigmoid",), _gemm(rng, 4, 6), (second,), _gemm(rng, 6, 3)]
    path = build(layers, [4], tmp_path / "m.onnx")
    m = load_model(path)
    lo = np.array([[-np.inf, -1, 0, 2]], np.float32)
    hi = np.array([[np.inf, 1, 0, np.inf]], np.float32)
    ilo, ihi = m.interval(lo, hi)
    c = np.concatenate([np.eye(3), -np.eye(3)])[None]
    ys = ort_logits(ort_session(path), np.array([[-3e38, -1, 0, 2], [1e30, 1, 0, 3e38], [0, 0.5, 0, 7]], np.float32))
    for ort in (True, False):
        for alpha in (0, 3):
            low = spec_lower(m, lo, hi, c, ort=ort, alpha_steps=alpha)[0]
            assert np.all(low >= np.concatenate([ilo[0], -ihi[0]]) - 1e-6), (ort, alpha, low)
            if ort:
                assert np.all(np.concatenate([ys, -ys], 1) >= low)
