"""Root cause 3 (issue 12): the Lipschitz ball margin of a 1-Lipschitz chain must subtract the
float32 error at x AND the one at x′ (docs/SOUNDNESS.md: m̂ − 2e − 2e′ − 2Lε), never 2·max(e, e′).

Proof the formula encodes: onnxruntime's margin at a float32 x′ of the ball is ≥ the exact margin
at x′ − 2e′ ≥ the exact margin at x − 2Lε − 2e′ ≥ m̂(x) − 2e − 2Lε − 2e′. With large biases e and e′
are large, so 2·max(e, e′) drops a whole e."""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import pytest

from certify_helpers import build_model, ort_logits
from certify_helpers import one_torch_thread  # noqa: F401  (module fixture, used through pytestmark)
from verify.certify.certifier import Certifier, CertifyConfig
from verify.certify.run import run_certify
from verify.certify.check import _Prover, run_check
from verify.bounds.fastpath import ChainBound
from verify.front.model import load_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _big_bias_chain(tmp_path):
    rng = np.random.default_rng(3)
    layers = [("linf", rng.random((8, 5)).astype(np.float32), np.full(8, -3.0e5, np.float32)),
              ("linf", rng.random((4, 8)).astype(np.float32),
               (4.0e5 + rng.random(4) * 0.5).astype(np.float32)), ("neg",)]
    path = build_model(layers, [5], tmp_path / "bigbias.onnx")
    x = rng.random((40, 5)).astype(np.float32)
    y = np.argmax(ort_logits(path, x), axis=1)
    return path, x, y


def _documented(z, e, e2, y, eps) -> list[F]:
    """m̂ − 2e − 2e′ − 2ε exactly (L = 1), per sample."""
    out = []
    for k in range(len(y)):
        zk = [F(float(v)) for v in z[k]]
        m_hat = zk[y[k]] - max(v for j, v in enumerate(zk) if j != y[k])
        out.append(m_hat - 2 * F(float(e[k])) - 2 * F(float(e2[k])) - 2 * F(eps))
    return out


def test_ball_margin_subtracts_both_errors(tmp_path):
    path, x, y = _big_bias_chain(tmp_path)
    model = load_model(path)
    chain = ChainBound.build(model)
    assert chain is not None and model.lipschitz() <= 1.0 + 1e-9
    eps = 0.01
    z, e, e2 = chain.forward_with_error(x, eps)
    assert (e > 1e-3).all()  # large biases: the float32 errors matter
    want = _documented(z, e, e2, y, eps)
    _, _, ball = Certifier(model, CertifyConfig(eps, "lipschitz")).lipschitz_parts(x, y)
    _, ball_check = _Prover(model, path, "float32").m0(x, y, np.full(len(y), eps), (0.0, 1.0))
    for k in range(len(y)):
        assert F(float(ball[k])) <= want[k]
        assert F(float(ball_check[k])) <= want[k]


def test_no_certificate_between_max_and_sum(tmp_path):
    """At an ε where m̂ − 2·max(e, e′) − 2ε > 0 ≥ m̂ − 2(e + e′) − 2ε the sample is not certified."""
    path, x, y = _big_bias_chain(tmp_path)
    chain = ChainBound.build(load_model(path))
    z, e, e2 = chain.forward_with_error(x, 0.0)
    zs = np.sort(z.astype(np.float64), axis=1)
    m_hat = zs[:, -1] - zs[:, -2]
    k = int(np.argmax(m_hat))
    eps = float((m_hat[k] - 2 * e2[k] - e[k]) / 2)  # in the gap (e′ grows only ~u·ε with ε)
    assert eps > 0
    z, e, e2 = chain.forward_with_error(x[k:k + 1], eps)
    assert m_hat[k] - 2 * max(e[0], e2[0]) - 2 * eps > 0 >= _documented(z, e, e2, y[k:k + 1], eps)[0]
    np.savez(tmp_path / "d.npz", x=x[k:k + 1], y=y[k:k + 1])
    out = tmp_path / "c.jsonl"
    s = run_certify(path, tmp_path / "d.npz", eps=eps, out=out, method="lipschitz")
    assert s["certified"] == 0
    assert run_check(out, path, tmp_path / "d.npz")["ok"]


@pytest.mark.parametrize("method", ["auto", "lipschitz"])
def test_false_certificate_with_a_flipping_neighbour(tmp_path, method):
    """A real counterexample to the max-formula: each logit's Sub rounds 2^21 + a to a 0.25 grid,
    so onnxruntime's error jumps from +0.125 to −0.125 between two float32 inputs 1.2e-7 apart
    (e = e′ ≈ 0.125). At x: m̂ = 0.375 > 2·max(e, e′) + 2ε, yet at x′ onnxruntime predicts class 1."""
    f32 = np.float32
    w = np.array([[-2**21, 0], [0, -2**21]], f32)
    b = np.array([-2**21 + 0.5, -2**21 + 0.375], f32)
    path = build_model([("linf", w, b), ("neg",)], [2], tmp_path / "flip.onnx")
    x = np.array([[np.nextafter(f32(0.375), f32(0)), np.nextafter(f32(0.625), f32(1))]], f32)
    x2 = np.array([[np.nextafter(f32(0.375), f32(1)), np.nextafter(f32(0.625), f32(0))]], f32)
    eps = 1e-6
    assert np.abs(x.astype(np.float64) - x2).max() <= eps
    assert np.argmax(ort_logits(path, x), 1)[0] == 0 and np.argmax(ort_logits(path, x2), 1)[0] == 1
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0]))
    out = tmp_path / "c.jsonl"
    s = run_certify(path, tmp_path / "d.npz", eps=eps, out=out, method=method)
    assert s["certified"] == 0 and s["counts"]["not_certified"] == 1
    assert run_check(out, path, tmp_path / "d.npz")["ok"]
