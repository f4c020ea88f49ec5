"""Linear relaxations of Sigmoid, Tanh, MaxPool and GlobalMaxPool (verify/bounds/sshape.py,
verify/bounds/maxpool.py): soundness at random points of random boxes, evaluated exactly
(tests/fuzz_exact.py: rationals, Sigmoid/Tanh to 600 bits) and by onnxruntime, under both guarantees
(``ort`` False: theorem (a); True: (a) and (b)); the float64 function error assumption; CROWN
tighter than intervals; planted unsound relaxations that these checks catch."""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import onnx
import pytest
import torch
from fuzz_exact import evaluate
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from common.runtime import ort_logits, ort_session
from verify.bounds import maxpool, sshape
from verify.bounds.spec import spec_lower
from verify.front.model import load_model

OPSET = 17
POOL = {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1], "dilations": [1, 2]}


def build(layers, in_shape, path):
    """An ONNX net: ("gemm", W [M, D], b), ("conv", W, b, attrs), ("maxpool", attrs), ("gmp",),
    ("flatten",) or a unary op type ("Tanh", "Sigmoid", "Relu"); input [N, *in_shape]."""
    nodes, inits, x = [], [], "input"
    for i, (kind, *args) in enumerate(layers):
        out, ins = f"v{i}", [x]
        for j, arr in enumerate(a for a in args if isinstance(a, np.ndarray)):
            inits.append(nh.from_array(arr.astype(np.float32), f"p{i}_{j}"))
            ins.append(f"p{i}_{j}")
        attrs = next((a for a in args if isinstance(a, dict)), {})
        op = {"gemm": "Gemm", "conv": "Conv", "maxpool": "MaxPool", "gmp": "GlobalMaxPool",
              "flatten": "Flatten"}.get(kind, kind)
        nodes.append(h.make_node(op, ins, [out], name=f"n{i}", **({"transB": 1} if kind == "gemm" else attrs)))
        x = out
    nodes[-1].output[0] = "logits"
    probe = onnx.helper.make_graph(nodes, "t", [h.make_tensor_value_info("input", T.FLOAT, ["N", *in_shape])],
                                   [h.make_tensor_value_info("logits", T.FLOAT, None)], inits)
    model = h.make_model(probe, opset_imports=[h.make_opsetid("", OPSET)])
    model.ir_version = 8
    k = ort_logits(ort_session(model), np.zeros((1, *in_shape), np.float32)).shape[1]
    model.graph.output[0].CopyFrom(h.make_tensor_value_info("logits", T.FLOAT, ["N", k]))
    onnx.save(model, str(path))
    return path


def _gemm(rng, d, m, s=1.0):
    return ("gemm", rng.normal(0, s / np.sqrt(d), (m, d)), rng.normal(0, 0.3, m))


def _conv(rng, c_in, c_out, attrs):
    return ("conv", rng.normal(0, 0.6, (c_out, c_in, 3, 3)), rng.normal(0, 0.2, c_out), attrs)


def net(kind, rng, tmp_path):
    """(path, input shape) of a small net of each kind."""
    pad = {"pads": [1, 1, 1, 1]}
    layers, shape = {
        "tanh-sigmoid": ([_gemm(rng, 4, 8, 2.0), ("Tanh",), _gemm(rng, 8, 6, 2.0), ("Sigmoid",), _gemm(rng, 6, 3)],
                         [4]),
        "sigmoid": ([("Sigmoid",)], [5]),
        "tanh": ([("Tanh",)], [5]),
        "conv-relu-maxpool": ([_conv(rng, 1, 3, pad), ("Relu",), ("maxpool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
                               ("flatten",), _gemm(rng, 27, 3)], [1, 6, 6]),
        "maxpool-dilated": ([("maxpool", POOL), ("flatten",), _gemm(rng, 18, 3)], [2, 5, 4]),
        "conv-tanh-gmp": ([_conv(rng, 2, 3, pad), ("Tanh",), ("gmp",), ("flatten",), _gemm(rng, 3, 2)], [2, 4, 3]),
    }[kind]
    return build(layers, shape, tmp_path / f"{kind}.onnx"), shape


def random_boxes(rng, shape, n, eps=None):
    """n boxes [lo, hi] (float32): random centres, radii from 0 (a point) to 3."""
    c = rng.normal(0, 1.5, (n, *shape))
    r = np.asarray(eps if eps is not None else rng.choice([0.0, 1e-3, 0.05, 0.3, 1.0, 3.0], n), np.float64)
    r = r.reshape(-1, *[1] * len(shape)) * rng.random((n, *shape))
    return (c - r).astype(np.float32), (c + r).astype(np.float32)


def points(rng, lo, hi, n):
    """n float32 points of the box lo/hi [1, ...]: corners, the centre and uniform points."""
    u = rng.random((n, *lo.shape[1:]))
    u[: n // 3] = u[: n // 3] > 0.5
    u[n // 3] = 0.5
    return np.clip((lo + u * (hi.astype(np.float64) - lo)).astype(np.float32), lo, hi)


def rationals(rng, lo, hi, n):
    f = np.vectorize(lambda v: Fraction(float(v)), otypes=[object])
    return [f(lo) + (f(hi) - f(lo)) * f(rng.integers(0, 1001, lo.shape) / 1000.0) for _ in range(n)]


def violations(path, lo, hi, rng, n_pts=24, n_rat=3) -> list[str]:
    """Every spec row whose CROWN bound (ort True and False) exceeds C·y at a sampled point: y from
    onnxruntime (against ort=True) and exactly (against both). C = [I; -I; 3 random rows]."""
    m = load_model(path)
    k = m.num_classes
    rng_c = np.concatenate([np.eye(k), -np.eye(k), rng.normal(size=(3, k))])
    c = np.broadcast_to(rng_c, (len(lo), *rng_c.shape)).copy()
    low = {o: spec_lower(m, lo, hi, c, ort=o) for o in (True, False)}
    assert not np.isnan(low[True]).any() and not np.isnan(low[False]).any()
    cq = [[Fraction(float(v)) for v in row] for row in rng_c]
    sess, bad = ort_session(path), []

    def check(y, n, what, guarantees):
        vals = [sum(a * b for a, b in zip(row, y)) for row in cq]
        for o in guarantees:
            for s, v in enumerate(vals):
                if v < Fraction(float(low[o][n, s])):
                    bad.append(f"{what} sample {n} row {s} ort={o}: {float(v)} < {low[o][n, s]}")

    for n in range(len(lo)):
        xs = points(rng, lo[n:n + 1], hi[n:n + 1], n_pts)
        for x, y in zip(xs, ort_logits(sess, xs)):
            check([Fraction(float(v)) for v in y], n, "onnxruntime", (True,))
        for x in [p[None] for p in xs[:4]] + rationals(rng, lo[n:n + 1], hi[n:n + 1], n_rat):
            y, inexact, _ = evaluate(onnx.load(str(path)), x, exact=True)
            assert not inexact
            check(list(np.ravel(y)), n, "exact", (True, False))
    return bad


KINDS = ["tanh-sigmoid", "sigmoid", "tanh", "conv-relu-maxpool", "maxpool-dilated", "conv-tanh-gmp"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(2))
def test_bounds_hold_exactly_and_in_onnxruntime(tmp_path, kind, seed):
    rng = np.random.default_rng(seed)
    path, shape = net(kind, rng, tmp_path)
    lo, hi = random_boxes(rng, shape, 6)
    assert violations(path, lo, hi, rng) == []


@pytest.mark.parametrize("sh, fn", [(sshape.SIGMOID, lambda t: 1 / (1 + mpmath.exp(-t))), (sshape.TANH, mpmath.tanh)])
def test_lines_enclose_the_function_on_hard_boxes(sh, fn):
    """The two lines of each box hold at its ends and at points inside (300-bit values): boxes
    around the inflection, one-sided, points, tiny (subnormal) and huge (saturated) ones."""
    rng = np.random.default_rng(5)
    c = np.concatenate([rng.normal(0, 3, 150), [0.0, 1e-300, -1e-300, 40.0, -40.0, 700.0, -800.0, 3e38, -3e38]])
    r = np.concatenate([np.abs(rng.normal(0, 2, 150)) * (rng.random(150) < 0.85),
                        [1e-45, 5e-324, 0.0, 1.0, 30.0, 1e3, 0.0, 1e38, 0.0]])
    lo, hi = torch.tensor(c - r), torch.tensor(c + r)
    kl, ql, ku, qu = sshape.lines(sh, lo, hi)
    assert torch.isfinite(kl).all() and torch.isfinite(ku).all()
    with mpmath.workprec(300):
        for i in range(len(c)):
            a, b = mpmath.mpf(float(lo[i])), mpmath.mpf(float(hi[i]))
            for t in [0, 1e-9, 0.3, 0.5, 0.77, 1 - 1e-9, 1]:
                z = a + (b - a) * t
                f = fn(z)
                assert float(kl[i]) * z + float(ql[i]) <= f <= float(ku[i]) * z + float(qu[i]), (i, float(z))


@pytest.mark.parametrize("sh, fn", [(sshape.SIGMOID, lambda t: 1 / (1 + mpmath.exp(-t))), (sshape.TANH, mpmath.tanh)])
def test_float64_function_error_assumption(sh, fn):
    """The float64 torch function is within FN_REL·|f̃| + FN_ABS of the 300-bit value (the
    assumption of verify/bounds/sshape.py), with 2^10 times to spare, across magnitudes."""
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.normal(0, 4, 2000), 10.0 ** rng.uniform(-320, 2.9, 2000) * rng.choice([-1, 1], 2000),
                        [0.0, -0.0, 5e-324, -745.2, 709.8, 36.7, -36.7, 19.06, 1e308, -1e308]])
    v = sh.f64(torch.tensor(x)).numpy()
    with mpmath.workprec(300):
        for xi, vi in zip(x, v):
            err = abs(mpmath.mpf(float(vi)) - fn(mpmath.mpf(float(xi))))
            assert err * 2**10 <= sshape.FN_REL * abs(vi) + sshape.FN_ABS, (xi, vi)


def _widths(m, lo, hi, ort):
    k = m.num_classes
    c = np.concatenate([np.eye(k), -np.eye(k)])[None].repeat(len(lo), 0)
    low = spec_lower(m, lo, hi, c, ort=ort)
    return -low[:, k:] - low[:, :k]


@pytest.mark.parametrize("kind", ["tanh-sigmoid", "conv-relu-maxpool", "maxpool-dilated"])
def test_crown_is_strictly_tighter_than_intervals(tmp_path, kind):
    """Every output's CROWN range (ort True and False) is narrower than its interval range. (Not
    asserted for conv-tanh-gmp: one GlobalMaxPool right after one Tanh is already tight by
    intervals on the tightened boxes, and CROWN is a few % looser there.)"""
    rng = np.random.default_rng(3)
    path, shape = net(kind, rng, tmp_path)
    m = load_model(path)
    lo, hi = random_boxes(rng, shape, 4, eps=[0.1] * 4)
    ilo, ihi = m.interval(lo, hi)
    ibp = ihi.astype(np.float64) - ilo
    for ort in (True, False):
        w = _widths(m, lo, hi, ort)
        assert np.all(w < ibp), (kind, ort, w, ibp)


def _planted_intercept(sh, k, l, u):
    """UNSOUND: the tangent at the midpoint's intercept, f(m) − k m, whatever the region."""
    mid = (l + u) / 2
    return sh.f64(mid) - k * mid


def _planted_dominant(a, x, idx):
    """UNSOUND MaxPool: the lower rule used as an upper bound too (y <= x_i*, i* = argmax l)."""
    neg = a.clamp(max=0)
    r = good_window_max(a.clamp(min=0), x, idx)
    r2 = good_window_max(-neg, x, idx)
    r.parts[0] = r.parts[0] - r2.parts[0]
    return r


good_window_max = maxpool.window_max_relax


@pytest.mark.parametrize("plant, kind", [
    ("intercept", "tanh-sigmoid"), ("no-ort-margin", "sigmoid"), ("no-ort-margin", "tanh"),
    ("dominant", "maxpool-dilated"),
])
def test_planted_unsound_relaxations_are_caught(tmp_path, monkeypatch, plant, kind):
    """The checks above are not vacuous: a tangent intercept without the convex-piece check, the
    relaxation without onnxruntime's libm error, a MaxPool upper bound that pretends one input
    dominates: each is caught at some sampled point."""
    if plant == "intercept":
        monkeypatch.setattr(sshape, "upper_intercept", _planted_intercept)
    elif plant == "no-ort-margin":
        monkeypatch.setattr(sshape, "libm_error", lambda v: v * 0.0)
    else:
        monkeypatch.setattr(maxpool, "window_max_relax", _planted_dominant)
        from verify.ops import op_maxpool
        monkeypatch.setattr(op_maxpool, "window_max_relax", _planted_dominant)
    found = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        path, shape = net(kind, rng, tmp_path)
        lo, hi = random_boxes(rng, shape, 6, eps=[0.0] * 3 + [0.3, 1.0, 3.0])
        found += violations(path, lo, hi, rng, n_rat=1)
        if found:
            break
    assert found
