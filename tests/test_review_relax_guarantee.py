"""Review of issue 15's linear relaxations and ``--guarantee``: float64 coefficients that UNDERFLOW.

A rounded float64 product or quotient is within u·|result| of the exact value only while the result is
normal; below 2^-1022 its error is up to 2^-1075 absolute, however small the result (a coefficient
0.49·2^-1074 rounds to 0: a relative error of 100 %). Two places charged only the relative part:

- ``linear.dot_lo`` (so every ``concretize``): its charge γ_m·dot_up(...) scaled the m·2^-1074 term of
  underflowing products by γ_m, i.e. dropped it: Σ 2^-1074·0.51 over 1000 terms is computed as
  1000·2^-1074 where the exact sum is 510·2^-1074, and the "lower bound" was 999·2^-1074;
- ``linear.affine_bias`` (Gemm, MatMul, Conv, AveragePool, ReduceMean/ReduceSum, GlobalAveragePool)
  and ``linear.rescaled_err`` (Relu, LeakyRelu, ℓ∞-dist chords, coefficient sums): A_in = fl64(Lᵀ A)
  charged γ·|L|ᵀ|A| only.

Spec rows with such coefficients come straight from a VNN-LIB property (``(* 2.42e-321 Y_0)``): the
CROWN rung proved ``unsat`` a property that holds at the centre of the box, under either guarantee.
Each test fails on the code before the fix (bound above the exact value)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from onnx import helper as h

from onnx_helpers import make_model, save
from verify.bounds.linear import dot_lo
from verify.bounds.spec import spec_lower
from verify.front.model import load_model
from verify.vnnlib.run import run_instance

T = 2.0**-1074  # the smallest float64 subnormal
P = 1000  # inputs


def test_dot_lo_charges_underflowing_products():
    a = torch.full((1, 1, P), T, dtype=torch.float64)
    v = torch.full((1, P), 0.51, dtype=torch.float64)
    exact = P * Fraction(T) * Fraction(0.51)
    assert Fraction(float(dot_lo(a, v)[0, 0])) <= exact


def _models():
    w = np.full((1, P), np.float32(1.0 / P), np.float32)
    return {
        "ReduceMean": ([h.make_node("ReduceMean", ["input", "ax"], ["logits"], keepdims=1)],
                       {"ax": np.array([1], np.int64)}),
        "Gemm": ([h.make_node("Gemm", ["input", "W"], ["logits"], transB=1)], {"W": w}),
        "MatMul": ([h.make_node("MatMul", ["input", "W"], ["logits"])], {"W": w.T.copy()}),
        "ReduceSum": ([h.make_node("Mul", ["input", "k"], ["s"]),
                       h.make_node("ReduceSum", ["s", "ax"], ["logits"], keepdims=1)],
                      {"k": np.float32(1.0 / P), "ax": np.array([1], np.int64)}),
        "Relu": ([h.make_node("Relu", ["input"], ["r"]), h.make_node("Gemm", ["r", "W"], ["logits"], transB=1)],
                 {"W": w}),
    }


def _exact(name, inits, x):
    """The exact real output (one logit) at the point x (float32 [1, P])."""
    xs = [Fraction(float(v)) for v in x[0]]
    if name == "ReduceMean":
        return sum(xs) / P
    k = Fraction(float(inits["W"][0, 0] if "W" in inits else inits["k"]))
    return sum(k * max(v, Fraction(0)) for v in xs)


@pytest.mark.parametrize("name", ["ReduceMean", "Gemm", "MatMul", "ReduceSum", "Relu"])
@pytest.mark.parametrize("ort", [False, True])
def test_crown_charges_coefficients_that_underflow(tmp_path, name, ort):
    """C = ±490·2^-1074 on y = mean-like(x) at x = 1: every input coefficient ±0.49·2^-1074 rounds to 0,
    so without an absolute charge the bound of −490·2^-1074·y was about −10·2^-1074."""
    nodes, inits = _models()[name]
    path = save(make_model(nodes, inits, [P], 1), tmp_path, f"{name}.onnx")
    m = load_model(path)
    x = np.ones((1, P), np.float32)
    c = np.array([[[490 * T], [-490 * T]]])
    low = spec_lower(m, x, x, c, ort=ort)[0]
    y = _exact(name, inits, x)
    for row, bound in zip(c[0, :, 0], low):
        assert Fraction(float(bound)) <= Fraction(float(row)) * y


@pytest.mark.parametrize("guarantee", ["real", "float32"])
def test_vnnlib_does_not_prove_a_property_that_holds_at_the_centre(tmp_path, guarantee):
    """Y_0 = mean(X) = 1 on the point box X = 1: −2.42e-321·Y_0 ≤ −2e-321 holds there (sat), so no
    guarantee may answer unsat."""
    nodes, inits = _models()["ReduceMean"]
    path = save(make_model(nodes, inits, [P], 1), tmp_path, "mean.onnx")
    lines = [f"(declare-const X_{i} Real)" for i in range(P)] + ["(declare-const Y_0 Real)"]
    lines += [f"(assert (<= X_{i} 1.0))\n(assert (>= X_{i} 1.0))" for i in range(P)]
    lines.append("(assert (<= (* -2.42e-321 Y_0) -2e-321))")
    prop = tmp_path / "p.vnnlib"
    prop.write_text("\n".join(lines) + "\n")
    res = run_instance(path, prop, 60.0, guarantee=guarantee)
    assert res.verdict != "unsat"


def test_relu_chord_coefficient_that_underflows_is_charged(tmp_path):
    """ReduceSum(Relu(x)) on x ∈ [−3, 1]: the chord coefficient −2^-1074·s (s ≈ 1/4) rounds to 0 at
    every unstable input, so linear.rescaled_err's relative charge alone bounded −2^-1074·y by
    about 0 where the exact value at x = 1 is −1000·2^-1074."""
    nodes = [h.make_node("Relu", ["input"], ["r"]), h.make_node("ReduceSum", ["r", "ax"], ["logits"], keepdims=1)]
    path = save(make_model(nodes, {"ax": np.array([1], np.int64)}, [P], 1), tmp_path, "relu.onnx")
    m = load_model(path)
    lo, hi = np.full((1, P), -3.0, np.float32), np.ones((1, P), np.float32)
    for ort in (False, True):
        low = spec_lower(m, lo, hi, np.array([[[-T]]]), ort=ort)[0, 0]
        assert Fraction(float(low)) <= -P * Fraction(T)
