"""Real VNN-COMP 2022 instances (../shared/benchmarks/vnncomp2022): parsing, a sat witness that
replays, published counterexamples checked by the same replay."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from verify.front.model import load_model
from common.runtime import ort_session
from verify.vnnlib.run import replay_text, result_text, run_instance
from verify.vnnlib.spec import read_property

ROOT = Path(__file__).resolve().parent.parent / ".." / "shared" / "benchmarks" / "vnncomp2022"
MNIST = ROOT / "mnist_fc"
OVAL = ROOT / "oval21"

pytestmark = pytest.mark.data


@pytest.fixture(autouse=True)
def _need_data():
    if not (MNIST / "instances.csv").exists() or not (OVAL / "instances.csv").exists():
        pytest.skip("../shared/benchmarks/vnncomp2022 is absent")


def test_oval21_property_parses_to_one_box_and_nine_disjuncts():
    p = read_property(OVAL / "vnnlib" / "cifar_base_kw-img8194-eps0.018300653594771243.vnnlib")
    assert (p.n_x, p.n_y, len(p.cases)) == (3072, 10, 1)
    case = p.cases[0]
    assert len(case.disjuncts) == 9 and all(len(d) == 1 for d in case.disjuncts)
    # "(<= Y_1 Y_0)": label 1 loses to class 0
    assert dict(case.disjuncts[0][0].y) == {0: -1, 1: 1}
    lo, hi = case.outer_box()
    assert (lo < hi).all() and all(Fraction(float(a)) <= q for a, q in zip(lo, case.lo))
    assert load_model(OVAL / "onnx" / "cifar_base_kw.onnx").input_shape == (3, 32, 32)


def test_mnist_fc_sat_instance_gives_a_replaying_witness():
    """α,β-CROWN publishes prop_1_0.03 on the 2-layer net as sat; our witness replays (fixed batch 1)."""
    onnx, prop = MNIST / "onnx" / "mnist-net_256x2.onnx", MNIST / "vnnlib" / "prop_1_0.03.vnnlib"
    res = run_instance(onnx, prop, 60)
    assert res.verdict == "sat"
    p = read_property(prop)
    w = replay_text(ort_session(onnx), p, result_text(res), (784, 1))
    assert w is not None and p.cases[0].contains(w.x)  # inside the box as written, exactly


def test_published_counterexamples_replay_only_in_the_rounded_box():
    """debona's counterexample for the same instance sits at float32(0.03), one float32 above the
    decimal bound the file wrote: it replays in the outward-rounded box (what a proof covers), not
    in the box as written."""
    onnx, prop = MNIST / "onnx" / "mnist-net_256x2.onnx", MNIST / "vnnlib" / "prop_1_0.03.vnnlib"
    ce = ROOT / "counterexamples" / "debona" / "mnist-net_256x2_prop_1_0.03.counterexample"
    if not ce.exists():
        pytest.skip(f"{ce} is absent")
    p, sess = read_property(prop), ort_session(onnx)
    assert replay_text(sess, p, ce.read_text(), (784, 1), outer=True) is not None
    assert replay_text(sess, p, ce.read_text(), (784, 1)) is None


def test_interval_bounds_do_not_prove_a_published_sat_instance():
    onnx = OVAL / "onnx" / "cifar_wide_kw.onnx"
    prop = OVAL / "vnnlib" / "cifar_wide_kw-img1909-eps0.0033986928104575162.vnnlib"
    res = run_instance(onnx, prop, 5, restarts=1, steps=5)
    assert res.verdict != "unsat" and res.proved_cases == 0
    assert np.isfinite(res.seconds)
