"""Test helpers for the certification tests: tiny ONNX nets built by hand, and exact oracles.

- :func:`build_model` writes a small net (linf::LinfDist with its canonical function, Gemm, Relu,
  Neg, Add) as an ONNX file that plain onnxruntime runs.
- :func:`exact_logits` evaluates the net on one input with exact rational arithmetic (the float32
  weights read as the exact rationals they are): the "real function" of docs/SOUNDNESS.md.
- :class:`PWL` and :func:`exact_pwl_logits` represent the logits of a net with a 1-D input as exact
  piecewise-linear functions on the domain, from which :func:`exact_robust_radius` computes the
  exact robust radius R = inf{|x' - x| : x' in domain, margin(x') <= 0}.
"""

from __future__ import annotations

import bisect
from fractions import Fraction as F
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from common import linf_spec

OPSET = linf_spec.DEFAULT_OPSET


# ------------------------------------------------------------------ ONNX building


def build_model(layers, in_shape, path, *, metadata=None, batch="N") -> Path:
    """Write an ONNX net. ``layers``: ("linf", W[M,D], B|None), ("gemm", W[M,D], b[M]), ("relu",),
    ("neg",), ("add", c[M]) or ("flatten",). Input ``input`` [batch, *in_shape], output ``logits``
    (``batch`` an int: a fixed batch size)."""
    nodes, inits, x, used = [], [], "input", False
    for i, layer in enumerate(layers):
        kind, out = layer[0], f"v{i}"
        ins = [x]
        for j, arr in enumerate(layer[1:]):
            if arr is not None:
                name = f"p{i}_{j}"
                inits.append(nh.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
                ins.append(name)
        if kind == "linf":
            nodes.append(h.make_node("LinfDist", ins, [out], name=f"n{i}", domain="linf"))
            used = True
        elif kind == "linf_std":  # the same layer written with standard ops (third-party style)
            ax1, ax2 = f"ax1_{i}", f"ax2_{i}"
            inits += [nh.from_array(np.array([1], np.int64), ax1), nh.from_array(np.array([2], np.int64), ax2)]
            nodes += [h.make_node("Unsqueeze", [x, ax1], [f"u{i}"]),
                      h.make_node("Sub", [f"u{i}", ins[1]], [f"s{i}"]),
                      h.make_node("Abs", [f"s{i}"], [f"a{i}"]),
                      h.make_node("ReduceMax", [f"a{i}", ax2], [f"r{i}" if len(ins) > 2 else out], keepdims=0)]
            if len(ins) > 2:
                nodes.append(h.make_node("Add", [f"r{i}", ins[2]], [out]))
        elif kind == "gemm":
            nodes.append(h.make_node("Gemm", ins, [out], name=f"n{i}", transB=1))
        elif kind == "add":
            nodes.append(h.make_node("Add", ins, [out], name=f"n{i}"))
        elif kind == "flatten":
            nodes.append(h.make_node("Flatten", ins, [out], name=f"n{i}", axis=1))
        else:
            nodes.append(h.make_node({"relu": "Relu", "neg": "Neg"}[kind], ins, [out], name=f"n{i}"))
        x = out
    nodes[-1].output[0] = "logits"
    k = _out_dim(layers)
    graph = h.make_graph(
        nodes, "test", [h.make_tensor_value_info("input", T.FLOAT, [batch, *in_shape])],
        [h.make_tensor_value_info("logits", T.FLOAT, [batch, k])], inits)
    opsets = [h.make_opsetid("", OPSET)] + ([h.make_opsetid("linf", 1)] if used else [])
    fns = linf_spec.make_linf_functions(OPSET, ["LinfDist"]) if used else []
    m = h.make_model(graph, opset_imports=opsets, functions=fns, producer_name="test")
    m.ir_version = 9
    if metadata:
        h.set_model_props(m, dict(metadata))
    onnx.checker.check_model(m, full_check=True)
    path = Path(path)
    path.write_bytes(m.SerializeToString())
    return path


def _out_dim(layers) -> int:
    for layer in reversed(layers):
        if layer[0] in ("linf", "linf_std", "gemm"):
            return int(np.asarray(layer[1]).shape[0])
    raise ValueError("no layer with weights")


def ort_logits(path, x: np.ndarray) -> np.ndarray:
    """onnxruntime's float32 logits for a batch (the pinned session of common/runtime.py)."""
    from common.runtime import ort_session

    s = ort_session(path)
    return s.run(None, {"input": np.ascontiguousarray(x, dtype=np.float32)})[0]


def random_linf_net(rng, dims, *, head=None, bias=True):
    """Layers of a pure ℓ∞-dist net with widths ``dims`` (ends in Neg), or with a Gemm head
    (``head`` = number of classes, a ReLU between) when given."""
    layers = []
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        w = rng.normal(0, 0.6, size=(d_out, d_in)).astype(np.float32)
        b = rng.normal(0, 0.2, size=d_out).astype(np.float32) if bias else None
        layers.append(("linf", w, b))
    if head is None:
        layers.append(("neg",))
    else:
        layers.append(("relu",))
        layers.append(("gemm", rng.normal(0, 0.7, size=(head, dims[-1])).astype(np.float32),
                       rng.normal(0, 0.2, size=head).astype(np.float32)))
    return layers


# ------------------------------------------------------------------ exact point evaluation


def _fr(a) -> list:
    return [F(float(v)) for v in np.asarray(a, dtype=np.float32).ravel()]


def exact_logits(layers, x) -> list[F]:
    """Exact rational logits of the real function defined by the float32 weights at input ``x``."""
    v = _fr(x)
    for layer in layers:
        kind = layer[0]
        if kind == "linf":
            w, b = np.asarray(layer[1], np.float32), layer[2]
            bb = _fr(b) if b is not None else [F(0)] * w.shape[0]
            v = [max(abs(xi - wi) for xi, wi in zip(v, _fr(row))) + bj for row, bj in zip(w, bb)]
        elif kind == "gemm":
            w, bb = np.asarray(layer[1], np.float32), _fr(layer[2])
            v = [sum(xi * wi for xi, wi in zip(v, _fr(row))) + bj for row, bj in zip(w, bb)]
        elif kind == "add":
            v = [a + c for a, c in zip(v, _fr(layer[1]))]
        elif kind == "relu":
            v = [max(a, F(0)) for a in v]
        elif kind == "neg":
            v = [-a for a in v]
    return v


def exact_margin(layers, x, label: int) -> F:
    """Exact margin f_label(x) - max_{j != label} f_j(x)."""
    z = exact_logits(layers, x)
    return z[label] - max(zj for j, zj in enumerate(z) if j != label)


# ------------------------------------------------------------------ exact 1-D piecewise-linear


class PWL:
    """A continuous piecewise-linear function on [xs[0], xs[-1]], exact (Fractions)."""

    def __init__(self, xs, vs):
        self.xs, self.vs = list(xs), list(vs)

    @staticmethod
    def const(c, lo, hi) -> "PWL":
        return PWL([lo, hi], [c, c])

    def __call__(self, t) -> F:
        i = bisect.bisect_right(self.xs, t) - 1
        i = min(max(i, 0), len(self.xs) - 2)
        a, b = self.xs[i], self.xs[i + 1]
        return self.vs[i] + (self.vs[i + 1] - self.vs[i]) * (t - a) / (b - a)

    def at(self, xs) -> "PWL":
        return PWL(xs, [self(t) for t in xs])


def _merge(ps) -> list:
    return sorted(set().union(*[p.xs for p in ps]))


def _lin(coefs, ps, c) -> PWL:
    xs = _merge(ps)
    return PWL(xs, [sum(a * p(t) for a, p in zip(coefs, ps)) + c for t in xs])


def _max2(p: PWL, q: PWL) -> PWL:
    xs = _merge([p, q])
    pts = [xs[0]]
    for a, b in zip(xs[:-1], xs[1:]):
        da, db = p(a) - q(a), p(b) - q(b)
        if (da < 0 < db) or (db < 0 < da):
            pts.append(a + (b - a) * da / (da - db))
        pts.append(b)
    return PWL(pts, [max(p(t), q(t)) for t in pts])


def _pmax(ps) -> PWL:
    out = ps[0]
    for p in ps[1:]:
        out = _max2(out, p)
    return out


def exact_pwl_logits(layers, lo, hi) -> list[PWL]:
    """The logits of a net with a 1-D input (D = 1) as exact PWL functions on [lo, hi]."""
    lo, hi = F(lo), F(hi)
    v = [PWL([lo, hi], [lo, hi])]
    for layer in layers:
        kind = layer[0]
        if kind == "linf":
            w, b = np.asarray(layer[1], np.float32), layer[2]
            bb = _fr(b) if b is not None else [F(0)] * w.shape[0]
            out = []
            for row, bj in zip(w, bb):
                terms = []
                for vi, wi in zip(v, _fr(row)):
                    d = _lin([1], [vi], -wi)
                    terms.append(_max2(d, _lin([-1], [d], 0)))
                out.append(_lin([1], [_pmax(terms)], bj))
            v = out
        elif kind == "gemm":
            w, bb = np.asarray(layer[1], np.float32), _fr(layer[2])
            v = [_lin(_fr(row), v, bj) for row, bj in zip(w, bb)]
        elif kind == "add":
            v = [_lin([1], [a], c) for a, c in zip(v, _fr(layer[1]))]
        elif kind == "relu":
            v = [_max2(a, PWL.const(F(0), lo, hi)) for a in v]
        elif kind == "neg":
            v = [_lin([-1], [a], 0) for a in v]
    return v


def exact_margin_pwl(logits: list[PWL], label: int) -> PWL:
    """min_{j != label} (f_label - f_j) as an exact PWL."""
    diffs = [_lin([1, -1], [logits[label], f], 0) for j, f in enumerate(logits) if j != label]
    neg = _pmax([_lin([-1], [d], 0) for d in diffs])
    return _lin([-1], [neg], 0)


def exact_robust_radius(margin: PWL, x0) -> F | None:
    """inf{|t - x0| : t in the domain, margin(t) <= 0}; None (= infinity) if margin > 0 everywhere."""
    x0, best = F(x0), None
    for a, b, va, vb in zip(margin.xs[:-1], margin.xs[1:], margin.vs[:-1], margin.vs[1:]):
        if va > 0 and vb > 0:
            continue
        if va <= 0 and vb <= 0:
            p, q = a, b
        else:
            c = a + (b - a) * va / (va - vb)
            p, q = (a, c) if va <= 0 else (c, b)
        d = F(0) if p <= x0 <= q else min(abs(x0 - p), abs(x0 - q))
        best = d if best is None else min(best, d)
    return best


def exact_range(p: PWL, lo, hi) -> tuple[F, F]:
    """Exact min and max of p over [lo, hi]."""
    lo, hi = F(lo), F(hi)
    pts = [lo, hi] + [t for t in p.xs if lo < t < hi]
    vals = [p(t) for t in pts]
    return min(vals), max(vals)


def mixed_head_net(rng):
    """An ℓ∞-dist trunk (first-layer weights in the data range, centred second layer) and a Gemm
    head whose class varies over [0, 1]^6: gives a mix of certified / not certified samples."""
    return [("linf", rng.random((10, 6)).astype(np.float32), None),
            ("linf", (rng.random((8, 10)) * 0.5).astype(np.float32), np.full(8, -0.6, np.float32)),
            ("gemm", rng.normal(0, 3, (4, 8)).astype(np.float32), rng.normal(0, 0.1, 4).astype(np.float32))]


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests with one torch thread (restored afterwards): on this shared 2-core
    machine torch's thread pool spins under load and makes small kernels 50× slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def labelled_mixed_head(d: Path, seed: int, n: int) -> tuple[Path, np.ndarray, np.ndarray]:
    """A mixed-head net saved as ``d/m.onnx``, ``n`` random inputs and onnxruntime's labels."""
    rng = np.random.default_rng(seed)
    model = build_model(mixed_head_net(rng), [6], d / "m.onnx")
    x = rng.random((n, 6)).astype(np.float32)
    return model, x, np.argmax(ort_logits(model, x), axis=1)


def plant_unsound_relu(monkeypatch) -> None:
    """Replace Relu's linear relaxation by an UNSOUND one (the chord without its intercept:
    relu(z) <= s z instead of s (z - l)), for tests showing their soundness checks can fail."""
    from verify.ops.op_relu import Relu

    good = Relu.relax

    def planted(self, a, ins, out, ctx):
        r = good(self, a, ins, out, ctx)
        r.bias = r.bias * 0.0
        return r

    monkeypatch.setattr(Relu, "relax", planted)
