"""Linear relaxations of the linear ops (issue 15): BatchNormalization, AveragePool,
GlobalAveragePool, ReduceMean, ReduceSum, Concat, Slice, Pad, Gather, Mul and Div by a constant.

Each op sits between a mixing layer (Conv or Gemm, so that the correlations it keeps matter) and a
Gemm head. The CROWN bounds of random spec rows must hold at onnxruntime's outputs at float32 points
of the box (``ort=True``, theorem (b)) and at the exact rational outputs at rational points
(tests/fuzz_exact.py; both settings, theorem (a)), and must beat the interval bound (which shows
the op's ``relax`` is used: without it CROWN concretises over the op's output box). Planted
unsound relaxations (BatchNormalization without its shift, Concat with its parts swapped) are caught.
"""

from __future__ import annotations

import collections
from fractions import Fraction

import numpy as np
import onnx
import pytest
from hypothesis import find, given, seed, settings
from hypothesis import strategies as st
from onnx import helper as h

from fuzz_builder import KNOWN_OPEN
from fuzz_exact import evaluate
from fuzz_graphs import graphs
from onnx_helpers import make_model, save
from test_crown import spec_rows, violations
from test_fuzz_soundness import _SETTINGS, check_model
from verify.bounds import margins
from verify.bounds.linear import dot_lo, t64
from verify.bounds.spec import margin_lower, spec_lower
from verify.front.model import load_model
from verify.ops.op_averagepool import AveragePool
from verify.ops.op_batchnormalization import BatchNormalization
from verify.ops._op_list import OPS as REGISTRY
from verify.ops.op_concat import Concat

C, HW, K = 3, 5, 3  # channels after the Conv, input height/width, classes


def _bn_inits(rng, c):
    """BatchNormalization constants with var + 0.25 a rational square (exact reference)."""
    return {"s": rng.uniform(-2, 2, c).astype(np.float32), "bb": rng.normal(0, 1, c).astype(np.float32),
            "mu": rng.normal(0, 1, c).astype(np.float32),
            "var": np.resize(np.array([0.75, 2.0, 3.75, 0.0, 6.0], np.float32), c)}


def _conv_front(rng):
    """input [1, HW, HW] -> Conv (3x3, pad 1) -> 'c' [C, HW, HW]."""
    inits = {"W": rng.normal(0, 0.6, (C, 1, 3, 3)).astype(np.float32), "B": rng.normal(0, 0.2, C).astype(np.float32)}
    return [h.make_node("Conv", ["input", "W", "B"], ["c"], pads=[1, 1, 1, 1])], inits


def _case(name, rng):
    """(nodes, inits, input shape) of a Conv/Gemm -> op -> Flatten -> Gemm net."""
    nodes, inits = _conv_front(rng)
    i64 = lambda v: np.asarray(v, np.int64)  # noqa: E731
    mid = {
        "BatchNormalization": (h.make_node("BatchNormalization", ["c", "s", "bb", "mu", "var"], ["o"], epsilon=0.25),
                               _bn_inits(rng, C)),
        "AveragePool": (h.make_node("AveragePool", ["c"], ["o"], kernel_shape=[3, 2], strides=[2, 1],
                                    pads=[1, 0, 2, 1], count_include_pad=0), {}),
        "AveragePool_incl": (h.make_node("AveragePool", ["c"], ["o"], kernel_shape=[2, 2], strides=[2, 2],
                                         pads=[1, 1, 0, 1], count_include_pad=1), {}),
        "GlobalAveragePool": (h.make_node("GlobalAveragePool", ["c"], ["o"]), {}),
        "ReduceMean": (h.make_node("ReduceMean", ["c", "ax"], ["o"], keepdims=0), {"ax": i64([1, -1])}),
        "ReduceSum": (h.make_node("ReduceSum", ["c", "ax"], ["o"], keepdims=1), {"ax": i64([2])}),
        "Concat": (h.make_node("Concat", ["c", "c"], ["o"], axis=-1), {}),  # a constant part breaks per-sample
        "Slice": (h.make_node("Slice", ["c", "st", "en", "ax", "sp"], ["o"]),
                  {"st": i64([-1, 0]), "en": i64([0, 9]), "ax": i64([3, 1]), "sp": i64([-2, 2])}),
        "Pad": (h.make_node("Pad", ["c", "pd", "pv"], ["o"], mode="constant"),
                {"pd": i64([0, 1, 0, 2, 0, 0, 1, 1]), "pv": np.float32(-0.75)}),
        "Gather": (h.make_node("Gather", ["c", "gi"], ["o"], axis=2), {"gi": i64([[4, 0], [-1, 2]])}),
        "Mul": (h.make_node("Mul", ["mc", "c"], ["o"]), {"mc": rng.normal(0, 2, (C, 1, HW)).astype(np.float32)}),
        "Div": (h.make_node("Div", ["c", "dc"], ["o"]), {"dc": np.float32([3.0, -0.7, 1.3, 0.1, 7.0])}),
    }[name]
    nodes.append(mid[0])
    inits.update(mid[1])
    return nodes, inits


def _head(nodes, inits, rng, in_shape, tmp_path, name):
    """Append Flatten -> Gemm to the nodes ending in 'o' (its width learnt from the reference
    interpreter); the saved path and the loaded model."""
    nodes = list(nodes)
    probe = make_model(nodes + [h.make_node("Flatten", ["o"], ["logits"])], inits, in_shape, 1)
    d = evaluate(probe, np.zeros((1, *in_shape), np.float32), exact=False)[0].shape[1]
    inits = dict(inits, W2=rng.normal(0, 1 / np.sqrt(d), (K, d)).astype(np.float32))
    nodes += [h.make_node("Flatten", ["o"], ["f"]), h.make_node("Gemm", ["f", "W2"], ["logits"], transB=1)]
    path = save(make_model(nodes, inits, in_shape, K), tmp_path, f"{name}.onnx")
    return path, load_model(path)


def _net(name, tmp_path, seed=0):
    rng = np.random.default_rng(seed)
    nodes, inits = _case(name, rng)
    return rng, *_head(nodes, inits, rng, [1, HW, HW], tmp_path, name)


def _exact_violations(path, lo, hi, c, low, rng, n=4) -> int:
    """Spec rows whose bound ``low`` exceeds C·y at the exact rational output at rational points."""
    model = onnx.load(str(path))
    f = np.vectorize(lambda v: Fraction(float(v)), otypes=[object])
    bad = 0
    for _ in range(n):
        for i in range(len(lo)):
            t = f(rng.integers(0, 1001, lo.shape[1:]) / 1000.0)
            x = f(lo[i]) + (f(hi[i]) - f(lo[i])) * t
            y, inexact, _ = evaluate(model, x[None], exact=True)
            assert not inexact  # the reference is exact (BatchNormalization: var + eps squares)
            val = np.asarray(c[i], dtype=object) @ y[0]
            bad += int(np.sum([v < Fraction(float(b)) for v, b in zip(val, low[i])]))
    return bad


def _boxes(rng, eps, n=4):
    x = rng.random((n, 1, HW, HW)).astype(np.float32)
    return margins.input_box(x, eps, (0.0, 1.0))


OPS = ["BatchNormalization", "AveragePool", "AveragePool_incl", "GlobalAveragePool", "ReduceMean", "ReduceSum",
       "Concat", "Slice", "Pad", "Gather", "Mul", "Div"]


@pytest.mark.parametrize("name", OPS)
def test_relaxation_is_sound_and_used(tmp_path, name):
    rng, path, m = _net(name, tmp_path)
    for eps in (0.0, 0.05, 0.3):
        lo, hi = _boxes(rng, eps)
        c = spec_rows(rng, len(lo), K, 4)
        assert violations(path, m, lo, hi, c, rng, ort=True) == 0
        for ort in (True, False):
            assert _exact_violations(path, lo, hi, c, spec_lower(m, lo, hi, c, ort=ort), rng) == 0
    lo, hi = _boxes(rng, 0.3)
    c = spec_rows(rng, len(lo), K, 0)
    low = spec_lower(m, lo, hi, c, ort=True)
    ilo, ihi = m.interval(lo, hi)
    ibp = np.concatenate([ilo, -ihi], axis=1).astype(np.float64)
    assert np.all(low >= ibp - 1e-5) and np.mean(low - ibp) > 0.05  # the relaxation is used


def cnn(tmp_path):
    """(rng, path, model) of Conv -> BN -> Relu -> AveragePool -> Flatten -> Gemm (random weights)."""
    rng = np.random.default_rng(1)
    nodes, inits = _conv_front(rng)
    inits.update(_bn_inits(rng, C))
    nodes += [h.make_node("BatchNormalization", ["c", "s", "bb", "mu", "var"], ["b"], epsilon=0.25),
              h.make_node("Relu", ["b"], ["r"]),
              h.make_node("AveragePool", ["r"], ["o"], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1])]
    return rng, *_head(nodes, inits, rng, [1, HW, HW], tmp_path, "cnn")


def test_crown_beats_intervals_on_conv_bn_relu_avgpool(tmp_path, monkeypatch):
    """Conv -> BN -> Relu -> AveragePool -> Flatten -> Gemm: CROWN's margin lower bound is strictly
    higher than the interval margin, and than CROWN's with BN and AveragePool concretised over their
    output boxes (no relaxation), on every sample; sound at onnxruntime's points."""
    rng, path, m = cnn(tmp_path)
    boxes = [_boxes(rng, eps, 8) for eps in (0.01, 0.05)]
    ys = [np.argmax(m.forward((lo + hi) / 2), 1) for lo, hi in boxes]
    bound = {ort: [margin_lower(m, lo, hi, y, ort=ort) for (lo, hi), y in zip(boxes, ys)] for ort in (True, False)}
    for (lo, hi), y, low, real in zip(boxes, ys, bound[True], bound[False]):
        assert np.all(low > margins.box_margin(*m.interval(lo, hi), y)) and np.all(real >= low)
        assert violations(path, m, lo, hi, spec_rows(rng, 8, K), rng) == 0
    for cls in (AveragePool, BatchNormalization):
        monkeypatch.setattr(cls, "relax", lambda self, *a: None)
    for (lo, hi), y, low in zip(boxes, ys, bound[True]):
        assert np.all(low > margin_lower(m, lo, hi, y, ort=True))


def _plant(monkeypatch, cls, spoil):
    """Replace ``cls.relax`` by ``spoil(op, a, ins, relaxed)`` of its result (an unsound step)."""
    good = cls.relax

    def planted(self, a, ins, out, ctx):
        r = good(self, a, ins, out, ctx)
        return None if r is None else spoil(self, a, ins, r)

    monkeypatch.setattr(cls, "relax", planted)


def _no_shift(op, a, ins, r):
    """BN's step with its shift t = B − c·mean taken out of the bias (its error charge kept)."""
    cc, b, mean = op._params(ins[0].lo.dim())
    r.bias = r.bias - dot_lo(a, t64(np.broadcast_to(b - cc * mean, ins[0].lo.shape)))
    return r


def test_planted_batchnorm_without_shift_is_caught(tmp_path, monkeypatch):
    """BN's relaxation with its shift t = B − c·mean dropped from the bias is unsound: caught at
    onnxruntime's points and at exact ones."""
    rng, path, m = _net("BatchNormalization", tmp_path)
    lo, hi = _boxes(rng, 0.05)
    c = spec_rows(rng, len(lo), K, 4)
    assert violations(path, m, lo, hi, c, rng) == 0
    _plant(monkeypatch, BatchNormalization, _no_shift)
    low = spec_lower(m, lo, hi, c, ort=False)
    assert violations(path, m, lo, hi, c, rng) > 0
    assert _exact_violations(path, lo, hi, c, low, rng) > 0


def test_planted_concat_with_swapped_parts_is_caught(tmp_path, monkeypatch):
    """Concat's relaxation giving each input the other's coefficients (same shapes) is unsound."""
    rng = np.random.default_rng(2)
    nodes, inits = _conv_front(rng)
    inits["W1"] = rng.normal(0, 0.6, (C, 1, 3, 3)).astype(np.float32)
    nodes += [h.make_node("Conv", ["input", "W1"], ["d"], pads=[1, 1, 1, 1]),
              h.make_node("Concat", ["c", "d"], ["o"], axis=1)]
    path, m = _head(nodes, inits, rng, [1, HW, HW], tmp_path, "cat")
    lo, hi = _boxes(rng, 0.05)
    c = spec_rows(rng, len(lo), K, 4)
    assert violations(path, m, lo, hi, c, rng) == 0

    def swap(op, a, ins, r):
        r.parts = {0: r.parts[1], 1: r.parts[0]}
        return r

    _plant(monkeypatch, Concat, swap)
    assert violations(path, m, lo, hi, c, rng) > 0


FUZZED = ["BatchNormalization", "AveragePool", "GlobalAveragePool", "ReduceMean", "ReduceSum", "Concat", "Slice",
          "Pad", "Gather", "Expand", "Mul", "Div"]


def _count_relaxed(monkeypatch, op_type: str) -> collections.Counter:
    """A counter of the back-substitution steps the op's ``relax`` takes (returns not None)."""
    calls: collections.Counter = collections.Counter()
    cls = REGISTRY[("", op_type)]
    good = cls.relax

    def counted(self, a, ins, out, ctx):
        r = good(self, a, ins, out, ctx)
        calls["taken"] += r is not None
        return r

    monkeypatch.setattr(cls, "relax", counted)
    return calls


@pytest.mark.parametrize("op", FUZZED)
def test_fuzzed_graphs_through_the_relaxation_are_sound(tmp_path, monkeypatch, op):
    """The soundness fuzzer (checks 1-5, tests/test_fuzz_soundness.py) on random graphs starting with
    the op, without NaN/inf constants (most of those are refused at load): the op's relaxation is
    taken and every check holds."""
    calls = _count_relaxed(monkeypatch, op)

    @settings(max_examples=12, **_SETTINGS)
    @seed(16)
    @given(fz=graphs(first=op, max_ops=3, avoid=KNOWN_OPEN), rng_seed=st.integers(0, 2**32 - 1))
    def sound(fz, rng_seed):
        bad = check_model(fz, tmp_path, rng_seed)
        assert not bad, "\n".join(bad[:8])

    sound()
    assert calls["taken"] > 0


def test_the_fuzzer_catches_a_planted_batchnorm_without_shift(tmp_path, monkeypatch):
    """Check 5 of the fuzzer finds BN's relaxation without its shift unsound on some random graph."""
    _plant(monkeypatch, BatchNormalization, _no_shift)
    found = find(graphs(first="BatchNormalization", max_ops=2, avoid=KNOWN_OPEN),
                 lambda fz: any("(5)" in v for v in check_model(fz, tmp_path, 0)),
                 settings=settings(max_examples=300, **_SETTINGS))
    assert "BatchNormalization" in found.ops
