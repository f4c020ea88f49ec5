"""Attack tests: exact ε-box, torch graph parity with onnxruntime, falsification of an undefended
MLP with every witness replayed independently, CLI summary and errors, the MNIST must-show."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from attack_helpers import linf_net_onnx, relu_mlp_onnx, train_relu_mlp
from verify.attack.box import inside_box, linf_box
from verify.attack.pgd import AttackConfig, checkpoints
from verify.attack.runner import attack_arrays
from verify.attack.torch_graph import TorchGraph
from common.datasets import default_data_dir, load_arrays
from verify_cli import app


def _ort_logits(path, x):
    from common.runtime import ort_session

    s = ort_session(path)
    return s.run(None, {s.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})[0]


def _independent_replay(path, x, y, recs, eps, domain=(0.0, 1.0)):
    """Re-check witness records with rationals and a fresh ORT session; returns #confirmed."""
    n = 0
    for r in recs:
        if r["status"] != "falsified":
            continue
        i = r["index"]
        w = np.asarray(r["witness"], np.float64)
        w32 = w.astype(np.float32)
        assert np.array_equal(w32.astype(np.float64), w), "witness values must be exact float32"
        w32 = w32.reshape(x[i].shape)
        fe = Fraction(eps)
        assert all(abs(Fraction(float(a)) - Fraction(float(b))) <= fe for a, b in zip(w32.ravel(), x[i].ravel()))
        assert w32.min() >= domain[0] and w32.max() <= domain[1]
        z = _ort_logits(path, w32[None])[0]
        assert np.delete(z, y[i]).max() > z[y[i]]
        n += 1
    return n


@pytest.fixture(scope="module")
def digits():
    xtr, ytr = load_arrays("digits", "train")
    xte, yte = load_arrays("digits", "test")
    return xtr, ytr, xte, yte


@pytest.fixture(scope="module")
def mlp(tmp_path_factory, digits):
    xtr, ytr, _, _ = digits
    path = tmp_path_factory.mktemp("mlp") / "mlp.onnx"
    return relu_mlp_onnx(path, train_relu_mlp(xtr, ytr, hidden=(64,), epochs=20), (1, 8, 8))


@pytest.fixture(scope="module")
def linf(tmp_path_factory):
    rng = np.random.default_rng(0)
    w = [rng.normal(size=(24, 64)).astype(np.float32) * 0.3 + 0.5, rng.normal(size=(10, 24)).astype(np.float32)]
    path = tmp_path_factory.mktemp("linf") / "linf.onnx"
    return linf_net_onnx(path, w, rng.normal(size=10).astype(np.float32) * 0.1, (1, 8, 8))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1, width=32), min_size=1, max_size=20),
       st.floats(0, 1.5, allow_subnormal=False), st.booleans())
def test_box_is_exactly_inside_ball_and_domain(vals, eps, tight_domain):
    x = np.asarray(vals, np.float32)
    dom = (0.25, 0.75) if tight_domain else (0.0, 1.0)
    x = np.clip(x, *dom).astype(np.float32)
    lo, hi = linf_box(x, eps, dom)
    assert np.all(lo <= x) and np.all(x <= hi)
    assert inside_box(x, lo, eps, dom) and inside_box(x, hi, eps, dom)
    # maximal: one float32 step outwards leaves the ball or the domain (where not pinned at x)
    for b, d in ((lo, -np.inf), (hi, np.inf)):
        out = np.nextafter(b, np.float32(d))
        for k in range(len(x)):
            if b[k] == x[k]:
                continue
            z = b.copy()
            z[k] = out[k]
            assert not inside_box(x, z, eps, dom)


def test_checkpoints_follow_apgd():
    cps = checkpoints(100)
    assert cps[:4] == [22, 41, 57, 70]  # 0.22, 0.41, 0.57, 0.70 (Croce & Hein 2020)
    assert cps == sorted(set(cps)) and cps[-1] <= 100


def test_torch_graph_matches_onnxruntime(mlp, linf, digits):
    x = digits[2][:64]
    for path, exact in ((mlp, False), (linf, True)):
        g = TorchGraph.from_onnx(path)
        z = g.predict_logits(x)
        ref = _ort_logits(path, x)
        if exact:
            assert np.array_equal(z, ref)  # ℓ∞-dist forward is bit-exact
        else:
            np.testing.assert_allclose(z, ref, rtol=1e-5, atol=1e-5)


def test_surrogate_changes_gradient_not_value(linf, digits):
    g = TorchGraph.from_onnx(linf)
    assert g.has_linf_layers
    x = torch.from_numpy(digits[2][:8]).requires_grad_(True)
    outs, grads = [], []
    for p in (math.inf, 8.0):
        g.p_grad = p
        z = g(x)
        (gr,) = torch.autograd.grad(z[:, 0].sum(), x)
        outs.append(z.detach())
        grads.append(gr)
    assert torch.equal(outs[0], outs[1])
    # exact subgradient is one-hot per unit; the smoothed one spreads over more coordinates
    assert (grads[1] != 0).sum() > (grads[0] != 0).sum()
    assert torch.isfinite(grads[1]).all()


@pytest.mark.parametrize("p", [6.0, 7.0, 6.5, 16.0])  # odd/even integer power paths and exp/log path
def test_surrogate_gradient_matches_lp_autograd(p):
    from verify.ops._linf_torch import linf_dist

    torch.manual_seed(0)
    x = torch.rand(3, 7, dtype=torch.float64, requires_grad=True)
    w = torch.rand(4, 7, dtype=torch.float64)
    gy = torch.randn(3, 4, dtype=torch.float64)
    (g1,) = torch.autograd.grad((linf_dist(x, w, p) * gy).sum(), x)
    ref = ((x[:, None] - w[None]).abs() ** p).sum(-1) ** (1 / p)
    (g2,) = torch.autograd.grad((ref * gy).sum(), x)
    torch.testing.assert_close(g1, g2)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 70), st.integers(1, 300), st.integers(-3, 3),
       st.booleans(), st.sampled_from([torch.float32, torch.float64]), st.integers(0, 2**31 - 1))
def test_exact_linf_dist_is_bit_identical_to_broadcast_form(b, m, d, mag, ties, dtype, seed):
    """The forward used by the attack (torch.cdist p=inf) equals max_d |x_d − w_d| bit for bit."""
    from verify.ops._linf_torch import _broadcast_linf_dist, exact_linf_dist, linf_dist

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=gen, dtype=dtype) * 10.0**mag
    w = torch.randn(m, d, generator=gen, dtype=dtype) * 10.0**mag
    if ties:  # coarse grid: many equal distances and equal coordinates
        x, w = (x * 4).round() / 4, (w * 4).round() / 4
    ref = _broadcast_linf_dist(x, w)
    assert torch.equal(exact_linf_dist(x, w), ref)
    assert torch.equal(linf_dist(x.requires_grad_(True), w, 16.0), ref)  # surrogate's forward


def test_exact_linf_dist_non_finite_inputs_propagate():
    from verify.ops._linf_torch import exact_linf_dist

    x = torch.tensor([[0.0, float("nan")], [1.0, 2.0]])
    w = torch.tensor([[0.0, 0.0], [float("inf"), 0.0]])
    y = exact_linf_dist(x, w)
    assert torch.isnan(y[0]).all() and y[1, 0] == 2.0 and y[1, 1] == float("inf")


def test_exact_subgradient_matches_amax_autograd():
    from verify.ops._linf_torch import linf_dist

    torch.manual_seed(0)
    x = torch.rand(5, 9, dtype=torch.float64, requires_grad=True)
    w = torch.rand(4, 9, dtype=torch.float64)
    gy = torch.randn(5, 4, dtype=torch.float64)
    (g1,) = torch.autograd.grad((linf_dist(x, w) * gy).sum(), x)
    (g2,) = torch.autograd.grad(((x[:, None] - w[None]).abs().amax(-1) * gy).sum(), x)
    torch.testing.assert_close(g1, g2)


def test_attack_falsifies_undefended_mlp_and_witnesses_replay(mlp, digits):
    _, _, x, y = digits
    x, y = x[:150], y[:150]
    res = attack_arrays(mlp, x, y, 0.3, AttackConfig(steps=50))
    s = res.summary()
    correct = int(np.sum(res.predicted == y))
    assert s["falsified"] >= 0.99 * correct
    recs = res.records(x)
    assert _independent_replay(mlp, x, y, recs, 0.3) == s["falsified"]


def test_attack_eps_zero_falsifies_nothing(mlp, digits):
    _, _, x, y = digits
    res = attack_arrays(mlp, x[:20], y[:20], 0.0)
    assert res.summary()["falsified"] == 0


def test_cli_attack_json_and_check_accepts_witnesses(mlp, tmp_path):
    out = tmp_path / "w.jsonl"
    r = CliRunner().invoke(app, ["attack", str(mlp), "--data", "digits", "--eps", "0.2", "--out", str(out),
                                 "--limit", "40", "--steps", "30", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    for k in ("n", "clean_accuracy", "robust_accuracy", "falsified"):
        assert k in s
    assert s["n"] == 40 and s["falsified"] > 0
    lines = out.read_text().splitlines()
    assert len(lines) == 41 and json.loads(lines[0])["method"] == "pgd"  # the run's header, 40 records
    # the verifier's independent `check` re-verifies every witness record
    r2 = CliRunner().invoke(app, ["check", str(out), "--model", str(mlp), "--data", "digits"])
    assert r2.exit_code == 0, r2.output


@pytest.mark.parametrize("args,needle", [
    (["--eps", "-0.1"], "eps"),
    (["--eps", "0.1", "--steps", "0"], "steps"),
    (["--eps", "0.1", "--surrogate", "maybe"], "surrogate"),
])
def test_cli_attack_bad_input_one_line_no_output(mlp, tmp_path, args, needle):
    out = tmp_path / "w.jsonl"
    r = CliRunner().invoke(app, ["attack", str(mlp), "--data", "digits", "--out", str(out), "--limit", "5", *args])
    assert r.exit_code == 2
    assert needle in r.output and "Traceback" not in r.output
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cli_attack_missing_model(tmp_path):
    r = CliRunner().invoke(app, ["attack", str(tmp_path / "nope.onnx"), "--data", "digits", "--eps", "0.1",
                                 "--out", str(tmp_path / "w.jsonl")])
    assert r.exit_code != 0 and "Traceback" not in r.output


@pytest.mark.data
def test_mnist_relu_mlp_eps_03_falsifies_99_percent(tmp_path):
    root = default_data_dir()
    if root is None or not (root / "mnist").is_dir():
        pytest.skip("../shared/data/mnist is absent (real MNIST needed)")
    xtr, ytr = load_arrays("mnist", "train", root)
    xte, yte = load_arrays("mnist", "test", root)
    weights = train_relu_mlp(xtr[:20000], ytr[:20000], hidden=(128,), epochs=1, lr=1e-3, batch=128)
    path = relu_mlp_onnx(tmp_path / "mnist_mlp.onnx", weights, (1, 28, 28))
    x, y = xte[:500], yte[:500]
    res = attack_arrays(path, x, y, 0.3, AttackConfig(steps=50))
    correct = int(np.sum(res.predicted == y))
    assert correct >= 400  # the MLP did learn
    s = res.summary()
    assert s["falsified"] >= 0.99 * correct, s
    assert _independent_replay(path, x, y, res.records(x), 0.3) == s["falsified"]


def _std_op_linf_onnx(path, w, b):
    """A third-party ℓ∞-dist layer in standard ops: ReduceMax(Abs(Sub(Unsqueeze(x), W))) + b, Neg."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper

    nodes = [
        h.make_node("Flatten", ["input"], ["f"], axis=1),
        h.make_node("Unsqueeze", ["f", "ax1"], ["u"]),
        h.make_node("Sub", ["u", "W"], ["d"]),
        h.make_node("Abs", ["d"], ["a"]),
        h.make_node("ReduceMax", ["a", "ax2"], ["r"], keepdims=0),
        h.make_node("Add", ["r", "B"], ["y"]),
        h.make_node("Neg", ["y"], ["logits"]),
    ]
    inits = [numpy_helper.from_array(np.asarray(w, np.float32), "W"), numpy_helper.from_array(np.asarray(b, np.float32), "B"),
             numpy_helper.from_array(np.array([1], np.int64), "ax1"), numpy_helper.from_array(np.array([2], np.int64), "ax2")]
    g = h.make_graph(nodes, "std", [h.make_tensor_value_info("input", T.FLOAT, ["N", 1, 8, 8])],
                     [h.make_tensor_value_info("logits", T.FLOAT, ["N", w.shape[0]])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 18)])
    m.ir_version = 9
    onnx.save(m, str(path))
    return path


def test_standard_op_linf_layer_gets_surrogate_and_exact_forward(tmp_path, digits):
    rng = np.random.default_rng(3)
    path = _std_op_linf_onnx(tmp_path / "std.onnx", rng.random((10, 64)).astype(np.float32),
                             rng.normal(size=10).astype(np.float32) * 0.1)
    g = TorchGraph.from_onnx(path)
    assert g.has_linf_layers  # ReduceMax over Abs is recognised
    x = digits[2][:16]
    assert np.array_equal(g.predict_logits(x), _ort_logits(path, x))
    xt = torch.from_numpy(x).requires_grad_(True)
    nz = []
    for p in (math.inf, 8.0):
        g.p_grad = p
        (gr,) = torch.autograd.grad(g(xt)[:, 0].sum(), xt)
        nz.append(int((gr != 0).sum()))
    assert nz[1] > nz[0]


def test_exported_conv_net_parity(tmp_path, digits):
    from export import export_model
    from nets.models import ModelConfig, build_model

    torch.manual_seed(0)
    net = build_model(ModelConfig(arch="conv-linf-mlp", input_shape=(1, 8, 8), depth=1, width=16, hidden=8,
                                  conv_channels=(4, 6), conv_strides=(1, 2))).eval()
    path = tmp_path / "conv.onnx"
    export_model(net, path, dataset="digits")
    g = TorchGraph.from_onnx(path)
    x = digits[2][:16]
    np.testing.assert_allclose(g.predict_logits(x), _ort_logits(path, x), rtol=1e-5, atol=1e-5)
    res = attack_arrays(path, x, digits[3][:16], 0.1, AttackConfig(steps=10, n_target_classes=1))
    assert len(res.records(x)) == 16
