"""Soundness of interval bounds with exact rational arithmetic; the float32 error model of
onnxruntime's transcendental kernels. (Fusion of standard-op ℓ∞-dist layers: test_fuse.py.)"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper as h

from onnx_helpers import make_model, ort_run, pure_linf_net, save
from verify.front.model import load_model

N = h.make_node


def _tiny_net(seed: int, bias_scale: float):
    """Flatten -> LinfDist -> Relu(Gemm) -> Sub(c, .) -> Mul(., c) -> LinfDist -> Neg, random weights."""
    rng = np.random.default_rng(seed)
    d, m1, m2, k = 3, 4, 3, 2
    f = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    inits = {
        "W1": f(m1, d), "B1": (f(m1) * bias_scale).astype(np.float32),
        "G": f(m1, m2), "GB": (f(m2) * bias_scale).astype(np.float32),
        "C": f(m2), "S": f(m2),
        "W2": f(k, m2), "B2": (f(k) * bias_scale).astype(np.float32),
    }
    nodes = [
        N("LinfDist", ["input", "W1", "B1"], ["a"], domain="linf"),
        N("Gemm", ["a", "G", "GB"], ["g"]),
        N("Relu", ["g"], ["r"]),
        N("Sub", ["C", "r"], ["s"]),
        N("Mul", ["s", "S"], ["t"]),
        N("LinfDist", ["t", "W2", "B2"], ["u"], domain="linf"),
        N("Neg", ["u"], ["logits"]),
    ]
    return make_model(nodes, inits, [d], k, linf_ops=["LinfDist"]), inits


def _exact(inits, x):
    """The exact real output of _tiny_net at a rational point x (list of Fractions)."""
    q = lambda a: [[Fraction(float(v)) for v in row] for row in np.atleast_2d(a)]  # noqa: E731
    qv = lambda a: [Fraction(float(v)) for v in a]  # noqa: E731
    a = [max(abs(xi - wi) for xi, wi in zip(x, w)) + b for w, b in zip(q(inits["W1"]), qv(inits["B1"]))]
    G = q(inits["G"])
    g = [sum(a[i] * G[i][j] for i in range(len(a))) + gb for j, gb in enumerate(qv(inits["GB"]))]
    r = [max(v, Fraction(0)) for v in g]
    t = [(c - v) * s for c, v, s in zip(qv(inits["C"]), r, qv(inits["S"]))]
    return [-(max(abs(ti - wi) for ti, wi in zip(t, w)) + b) for w, b in zip(q(inits["W2"]), qv(inits["B2"]))]


@settings(max_examples=int(os.environ.get("LINF_EXACT_EXAMPLES", "25")), deadline=None)
@given(st.integers(0, 10**6), st.sampled_from([1.0, 1e4, 1e7]), st.sampled_from([0.0, 1e-6, 0.05, 1.0]))
def test_interval_contains_exact_rational_values(tmp_path_factory, seed, bias_scale, radius):
    model, inits = _tiny_net(seed, bias_scale)
    p = save(model, tmp_path_factory.mktemp("exact"))
    m = load_model(p)
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(1, 3)).astype(np.float32)
    lo = (c - np.float32(radius)).astype(np.float32)
    hi = (c + np.float32(radius)).astype(np.float32)
    blo, bhi = m.interval(lo, hi)
    for _ in range(6):
        # a random rational point of the box (not a float32 in general), and random corners
        ts = [Fraction(int(v), 1000) for v in rng.integers(0, 1001, 3)]
        x = [Fraction(float(a)) + t * (Fraction(float(b)) - Fraction(float(a))) for a, b, t in zip(lo[0], hi[0], ts)]
        for k, yk in enumerate(_exact(inits, x)):
            assert Fraction(float(blo[0, k])) <= yk <= Fraction(float(bhi[0, k]))
        corner = np.where(rng.random((1, 3)) < 0.5, lo, hi).astype(np.float32)
        yo = ort_run(p, corner)
        assert np.all(blo <= yo) and np.all(yo <= bhi)


def test_point_box_of_pure_net_is_one_ulp_tight(tmp_path):
    rng = np.random.default_rng(3)
    p = save(pure_linf_net(rng), tmp_path)
    m = load_model(p)
    x = rng.random((5, 12), dtype=np.float32)
    lo, hi = m.interval(x, x)
    y = ort_run(p, x)
    assert np.all(lo <= y) and np.all(y <= hi)
    # each of the 3 layers adds at most 2 outward steps (distance, bias) at its own magnitude
    big = max(float(np.abs(b.hi).max()) for b in m.propagate(x, x).values())
    assert np.all(hi - lo <= 6 * np.spacing(np.float32(2 * big)))


@pytest.mark.parametrize("op", ["Tanh", "Sigmoid", "Softmax"])
def test_libm_error_model_covers_onnxruntime(op, tmp_path):
    """The assumption of verify/ops/_elementwise.py: ORT's float32 kernels stay within the margin."""
    rng = np.random.default_rng(0)
    k = 16
    nodes = [N(op, ["input"], ["logits"], **({"axis": -1} if op == "Softmax" else {}))]
    p = save(make_model(nodes, {}, [k], k), tmp_path)
    m = load_model(p)
    mags = 10.0 ** rng.uniform(-45, 2.5, size=(4000, k))
    x = (np.sign(rng.normal(size=mags.shape)) * mags).astype(np.float32)
    x[:50] = 0.0
    x[50:100] = np.float32(1e-45)
    y = ort_run(p, x)
    lo, hi = m.interval(x, x)
    assert np.all(lo <= y) and np.all(y <= hi)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from(["Relu", "Tanh", "Sigmoid"]), st.floats(0.0, 0.5))
def test_random_mlp_boxes_contain_ort(tmp_path_factory, seed, act, eps):
    from onnx_helpers import mlp

    rng = np.random.default_rng(seed)
    p = save(mlp(rng, act=act), tmp_path_factory.mktemp("mlp"))
    m = load_model(p)
    x = rng.random((2, 12), dtype=np.float32)
    lo, hi = (x - np.float32(eps)).astype(np.float32), (x + np.float32(eps)).astype(np.float32)
    blo, bhi = m.interval(lo, hi)
    for _ in range(8):
        xs = np.where(rng.random(x.shape) < 0.5, lo, hi).astype(np.float32)
        y = ort_run(p, xs)
        assert np.all(blo <= y) and np.all(y <= bhi)


def test_boxes_cover_onnxruntime_on_fusable_chains(tmp_path):
    """Conv+BN+Mul+Add and MatMul+Add chains (which onnxruntime's default optimiser would fold into
    one Conv / Gemm with new weights and bias) with large biases: boxes contain the pinned session's
    outputs (graph as written; the default options are not covered, tests/test_ort_config.py)."""
    rng = np.random.default_rng(8)
    inits = {
        "W": rng.normal(size=(3, 2, 3, 3)).astype(np.float32),
        "Bc": (rng.normal(size=3) * 1e4).astype(np.float32),
        "s": rng.normal(size=3).astype(np.float32), "b": (rng.normal(size=3) * 1e4).astype(np.float32),
        "m": (rng.normal(size=3) * 1e3).astype(np.float32), "v": (np.abs(rng.normal(size=3)) + 0.1).astype(np.float32),
        "k": rng.normal(size=(1, 3, 1, 1)).astype(np.float32), "a": (rng.normal(size=(1, 3, 1, 1)) * 1e5).astype(np.float32),
        "M": rng.normal(size=(48, 4)).astype(np.float32), "d": (rng.normal(size=4) * 1e6).astype(np.float32),
    }
    nodes = [
        N("Conv", ["input", "W", "Bc"], ["c"], pads=[1, 1, 1, 1]),
        N("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
        N("Mul", ["n", "k"], ["q"]),
        N("Add", ["q", "a"], ["r"]),
        N("Flatten", ["r"], ["f"]),
        N("MatMul", ["f", "M"], ["g"]),
        N("Add", ["g", "d"], ["logits"]),
    ]
    p = save(make_model(nodes, inits, [2, 4, 4], 4), tmp_path)
    m = load_model(p)
    x = rng.normal(size=(64, 2, 4, 4)).astype(np.float32)
    lo, hi = m.interval(x, x)
    y = ort_run(p, x)
    assert np.all(lo <= y) and np.all(y <= hi)


def test_linfdist_extreme_values_exact_and_enclosed(tmp_path):
    """Subnormals, huge magnitudes, ties and signed zeros: forward bit-identical to onnxruntime,
    boxes enclose it and the exact (rational) value."""
    rng = np.random.default_rng(12)
    vals = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-40, 1.5e-38, 1.0, -1.0, 3e38, -3e38, 1e30, 7.0], np.float32)
    W = rng.choice(vals, size=(5, 4)).astype(np.float32)
    B = rng.choice(vals, size=5).astype(np.float32)
    nodes = [N("LinfDist", ["input", "W", "B"], ["logits"], domain="linf")]
    p = save(make_model(nodes, {"W": W, "B": B}, [4], 5, linf_ops=["LinfDist"]), tmp_path)
    m = load_model(p)
    x = rng.choice(vals, size=(40, 4)).astype(np.float32)
    with np.errstate(over="ignore"):
        y = ort_run(p, x)
    assert np.array_equal(m.forward(x), y)
    lo, hi = m.interval(x, x)
    assert np.all(lo <= y) and np.all(y <= hi)
    for i in range(len(x)):
        for j in range(5):
            exact = max(abs(Fraction(float(a)) - Fraction(float(b))) for a, b in zip(x[i], W[j])) + Fraction(float(B[j]))
            if np.isfinite(lo[i, j]):
                assert Fraction(float(lo[i, j])) <= exact
            if np.isfinite(hi[i, j]):
                assert exact <= Fraction(float(hi[i, j]))


def _layer(kind, rng, d, i):
    """(nodes, inits, new width, float64 reference) of one random layer on [N, d] named by i."""
    x, y = f"t{i}", f"t{i + 1}"
    f = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    c = f(d)
    q = lambda a: np.asarray(a, np.float64)  # noqa: E731
    if kind == "linf":
        W, B = f(4, d), f(4)
        return [N("LinfDist", [x, f"W{i}", f"B{i}"], [y], domain="linf")], {f"W{i}": W, f"B{i}": B}, 4, \
            lambda v: np.abs(v[:, None, :] - q(W)[None]).max(-1) + q(B)
    if kind == "gemm":
        W, B = f(d, 3), f(3)
        return [N("Gemm", [x, f"W{i}", f"B{i}"], [y])], {f"W{i}": W, f"B{i}": B}, 3, lambda v: v @ q(W) + q(B)
    unary = {"relu": ("Relu", lambda v: np.maximum(v, 0)), "tanh": ("Tanh", np.tanh),
             "sigmoid": ("Sigmoid", lambda v: 1 / (1 + np.exp(-v))), "neg": ("Neg", lambda v: -v),
             "abs": ("Abs", np.abs)}
    if kind in unary:
        op, fn = unary[kind]
        return [N(op, [x], [y])], {}, d, fn
    if kind == "softmax":
        return [N("Softmax", [x], [y], axis=-1)], {}, d, \
            lambda v: np.exp(v - v.max(-1, keepdims=True)) / np.exp(v - v.max(-1, keepdims=True)).sum(-1, keepdims=True)
    if kind == "divc":
        c = (np.sign(c) * (np.abs(c) + 0.25)).astype(np.float32)
    ops = {"addc": ("Add", lambda v: v + q(c)), "mulc": ("Mul", lambda v: v * q(c)),
           "subc": ("Sub", lambda v: q(c) - v), "divc": ("Div", lambda v: v / q(c)),
           "maxc": ("Max", lambda v: np.maximum(v, q(c)))}
    op, fn = ops[kind]
    ins = [f"c{i}", x] if kind == "subc" else [x, f"c{i}"]
    return [N(op, ins, [y])], {f"c{i}": c}, d, fn


@settings(max_examples=int(os.environ.get("LINF_CHAIN_EXAMPLES", "20")), deadline=None)
@given(st.integers(0, 10**6),
       st.lists(st.sampled_from(["linf", "gemm", "relu", "tanh", "sigmoid", "neg", "abs", "softmax", "addc",
                                 "mulc", "subc", "divc", "maxc"]), min_size=1, max_size=5),
       st.sampled_from([0.0, 1e-3, 0.1, 1.0]))
def test_random_op_chains_are_sound(tmp_path_factory, seed, kinds, eps):
    """Random chains of ops: ORT (float32) and the float64 reference at corner and interior points of
    the box lie in the interval; the Lipschitz bound dominates observed ratios."""
    rng = np.random.default_rng(seed)
    d, nodes, inits, refs = 5, [N("Identity", ["input"], ["t0"])], {}, []
    for i, kind in enumerate(kinds):
        nd, ni, d, ref = _layer(kind, rng, d, i)
        nodes += nd
        inits.update(ni)
        refs.append(ref)
    nodes.append(N("Identity", [f"t{len(kinds)}"], ["logits"]))
    p = save(make_model(nodes, inits, [5], d, linf_ops=["LinfDist"]), tmp_path_factory.mktemp("chain"))
    m = load_model(p)

    def ref64(v):
        for r in refs:
            v = r(v)
        return v

    x = rng.normal(size=(2, 5)).astype(np.float32)
    lo, hi = (x - np.float32(eps)).astype(np.float32), (x + np.float32(eps)).astype(np.float32)
    blo, bhi = m.interval(lo, hi)
    pts = [np.where(rng.random(x.shape) < 0.5, lo, hi).astype(np.float32) for _ in range(6)]
    pts += [np.clip((lo + rng.random(x.shape) * (hi - lo)).astype(np.float32), lo, hi) for _ in range(6)]
    yo = ort_run(p, np.concatenate(pts)).reshape(len(pts), *blo.shape)
    assert np.all(blo <= yo) and np.all(yo <= bhi)
    for pt in pts:
        y64 = ref64(pt.astype(np.float64))
        assert np.all(blo <= y64) and np.all(y64 <= bhi)
    L = m.lipschitz()
    a, b = x.astype(np.float64), x.astype(np.float64) + rng.normal(size=x.shape) * 1e-3
    ratio = np.abs(ref64(a) - ref64(b)).max() / np.abs(a - b).max()
    assert ratio <= L * (1 + 1e-9) + 1e-12


def _frac(a):
    return np.vectorize(lambda v: Fraction(float(v)), otypes=[object])(np.asarray(a))


def _pad_obj(x, pads, value):
    n, c, hh, ww = x.shape
    out = np.full((n, c, hh + pads[0] + pads[2], ww + pads[1] + pads[3]), value, dtype=object)
    out[:, :, pads[0]:pads[0] + hh, pads[1]:pads[1] + ww] = x
    return out


def _windows(x, k):
    n, c, hh, ww = x.shape
    for i in range(hh - k + 1):
        for j in range(ww - k + 1):
            yield i, j, x[:, :, i:i + k, j:j + k]


def _exact_conv_net(x, p):
    """Exact rational evaluation of _conv_net's graph (object arrays of Fractions)."""
    xp = _pad_obj(x, [1, 0, 0, 1], Fraction(0))
    W, B = _frac(p["Wl"]), _frac(p["Bl"])
    h1 = np.empty((x.shape[0], 2, 4, 4), dtype=object)
    for i, j, win in _windows(xp, 2):
        for m in range(2):
            h1[:, m, i, j] = [max(abs(v) for v in (win[n] - W[m]).reshape(-1)) + B[m] for n in range(len(x))]
    h2 = np.empty((x.shape[0], 2, 3, 3), dtype=object)
    for i, j, win in _windows(h1, 2):
        h2[:, :, i, j] = [[max(win[n, c].reshape(-1)) for c in range(2)] for n in range(len(x))]
    Wc, bc = _frac(p["Wc"]), _frac(p["bc"])
    h3 = np.empty((x.shape[0], 2, 2, 2), dtype=object)
    for i, j, win in _windows(h2, 2):
        for m in range(2):
            h3[:, m, i, j] = [sum((win[n] * Wc[m]).reshape(-1)) + bc[m] for n in range(len(x))]
    ones = _pad_obj(np.full((1, 1, 2, 2), Fraction(1), dtype=object), [1, 1, 0, 0], Fraction(0))
    h4p = _pad_obj(h3, [1, 1, 0, 0], Fraction(0))
    h4 = np.empty((x.shape[0], 2, 2, 2), dtype=object)
    for (i, j, win), (_, _, cnt) in zip(_windows(h4p, 2), _windows(ones, 2)):
        h4[:, :, i, j] = [[sum(win[n, c].reshape(-1)) / sum(cnt[0, 0].reshape(-1)) for c in range(2)]
                          for n in range(len(x))]
    return h4.reshape(len(x), -1)


def _conv_net(rng):
    p = {"Wl": rng.normal(size=(2, 1, 2, 2)).astype(np.float32), "Bl": rng.normal(size=2).astype(np.float32),
         "Wc": rng.normal(size=(2, 2, 2, 2)).astype(np.float32), "bc": (rng.normal(size=2) * 100).astype(np.float32)}
    nodes = [
        N("LinfDistConv", ["input", "Wl", "Bl"], ["a"], domain="linf", pads=[1, 0, 0, 1]),
        N("MaxPool", ["a"], ["b"], kernel_shape=[2, 2]),
        N("Conv", ["b", "Wc", "bc"], ["c"]),
        N("AveragePool", ["c"], ["d"], kernel_shape=[2, 2], pads=[1, 1, 0, 0]),
        N("Flatten", ["d"], ["logits"]),
    ]
    return make_model(nodes, p, [1, 4, 4], 8, linf_ops=["LinfDistConv"]), p


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from([0.0, 1e-4, 0.1]))
def test_conv_net_interval_contains_exact_rational_values(tmp_path_factory, seed, eps):
    rng = np.random.default_rng(seed)
    model, params = _conv_net(rng)
    p = save(model, tmp_path_factory.mktemp("conv"))
    m = load_model(p)
    x = rng.random((1, 1, 4, 4), dtype=np.float32)
    lo, hi = (x - np.float32(eps)).astype(np.float32), (x + np.float32(eps)).astype(np.float32)
    blo, bhi = m.interval(lo, hi)
    for _ in range(3):
        t = np.vectorize(lambda v: Fraction(int(v), 997), otypes=[object])(rng.integers(0, 998, x.shape))
        xq = _frac(lo) + t * (_frac(hi) - _frac(lo))
        y = _exact_conv_net(xq, params)
        assert all(Fraction(float(a)) <= v <= Fraction(float(b)) for a, b, v in zip(blo.reshape(-1), bhi.reshape(-1), y.reshape(-1)))
    yo = ort_run(p, np.where(rng.random(x.shape) < 0.5, lo, hi).astype(np.float32))
    assert np.all(blo <= yo) and np.all(yo <= bhi)
