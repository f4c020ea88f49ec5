"""Linear bound propagation (verify/bounds/): soundness at sampled points (onnxruntime and exact
rational arithmetic), a planted unsound relaxation the check catches, tightness against IBP and a
hand-computed value, and issue 15's must-show 2 (a 9-ReLU-layer net at ε = 0)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from certify_helpers import build_model, ort_logits, plant_unsound_relu, random_linf_net
from verify.bounds import margins
from verify.bounds.spec import margin_lower, spec_lower
from verify.front.model import load_model


def mlp_layers(rng, dims, leaky=False):
    layers = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers.append(("gemm", rng.normal(0, 1.2 / np.sqrt(a), (b, a)).astype(np.float32),
                       rng.normal(0, 0.1, b).astype(np.float32)))
        layers.append(("relu",))
    return layers[:-1]


def spec_rows(rng, n, k, s=6):
    """C [n, s + 2k, k]: ±e_j and random rows."""
    eye = np.eye(k)
    c = np.concatenate([eye, -eye, rng.normal(size=(s, k))])
    return np.broadcast_to(c, (n, *c.shape)).copy()


def box_points(lo, hi, rng, n=200):
    """float32 points [n, N, ...] of each box: corners and uniform points."""
    u = rng.random((n, *lo.shape))
    u[: n // 2] = u[: n // 2] > 0.5
    pts = lo[None].astype(np.float64) + u * (hi.astype(np.float64) - lo)[None]
    return np.clip(pts.astype(np.float32), lo, hi)


def violations(path, m, lo, hi, c, rng, ort=True, low=None) -> int:
    """Spec rows whose bound (``low``, default CROWN's) exceeds C·y at a sampled point
    (onnxruntime's y)."""
    low = spec_lower(m, lo, hi, c, ort=ort) if low is None else low
    assert not np.isnan(low).any()  # NaN = no bound: the check would be vacuous
    pts = box_points(lo, hi, rng)
    y = ort_logits(path, pts.reshape(-1, *lo.shape[1:])).reshape(len(pts), len(lo), -1).astype(np.float64)
    val = np.einsum("pnk,nsk->pns", y, c)  # float64; compare with a relative slack for this sum only
    slack = 1e-12 * np.einsum("pnk,nsk->pns", np.abs(y), np.abs(c))
    return int(np.sum(val + slack < low[None]))


def _exact_mlp(layers, v):
    """Exact rational logits of a Gemm/Relu net at a rational point ``v`` (list of Fractions)."""
    for layer in layers:
        if layer[0] == "gemm":
            w, b = layer[1], layer[2]
            v = [sum(Fraction(float(wi)) * xi for wi, xi in zip(row, v)) + Fraction(float(bj))
                 for row, bj in zip(w, b)]
        else:
            v = [max(a, Fraction(0)) for a in v]
    return v


def _mlp(tmp_path, seed, dims=(6, 12, 12, 12, 4)):
    rng = np.random.default_rng(seed)
    layers = mlp_layers(rng, list(dims))
    path = build_model(layers, [dims[0]], tmp_path / f"mlp{seed}.onnx")
    return rng, layers, path, load_model(path)


@pytest.mark.parametrize("seed", range(4))
def test_mlp_bounds_hold_at_onnxruntime_points(tmp_path, seed):
    rng, _, path, m = _mlp(tmp_path, seed)
    x = rng.random((5, 6)).astype(np.float32)
    for eps in (0.0, 0.02, 0.2):
        lo, hi = margins.input_box(x, eps, (0.0, 1.0))
        c = spec_rows(rng, 5, 4)
        assert violations(path, m, lo, hi, c, rng) == 0


@pytest.mark.parametrize("seed", range(3))
def test_real_guarantee_holds_in_exact_arithmetic(tmp_path, seed):
    rng, layers, path, m = _mlp(tmp_path, seed, (4, 8, 8, 3))
    x = rng.random((3, 4)).astype(np.float32)
    lo, hi = margins.input_box(x, 0.1, (0.0, 1.0))
    c = spec_rows(rng, 3, 3, 2)
    low = spec_lower(m, lo, hi, c, ort=False)
    for _ in range(15):
        t = rng.integers(0, 1001, lo.shape)
        for n in range(3):
            pt = [Fraction(float(a)) + (Fraction(float(b)) - Fraction(float(a))) * Fraction(int(k), 1000)
                  for a, b, k in zip(lo[n], hi[n], t[n])]
            zz = _exact_mlp(layers, pt)
            for s in range(c.shape[1]):
                val = sum(Fraction(float(c[n, s, k])) * zz[k] for k in range(3))
                assert val >= Fraction(float(low[n, s]))


def test_conv_and_linf_nets_are_sound(tmp_path):
    rng = np.random.default_rng(5)
    layers = random_linf_net(rng, [5, 7, 6], head=3)
    path = build_model(layers, [5], tmp_path / "linf.onnx")
    m = load_model(path)
    x = rng.random((4, 5)).astype(np.float32)
    for eps in (0.0, 0.05, 0.3):
        lo, hi = margins.input_box(x, eps, (0.0, 1.0))
        assert violations(path, m, lo, hi, spec_rows(rng, 4, 3), rng) == 0
    cpath = _conv_net(tmp_path / "conv.onnx", rng)
    cm = load_model(cpath)
    xc = rng.random((3, 1, 6, 6)).astype(np.float32)
    for eps in (0.0, 0.05):
        lo, hi = margins.input_box(xc, eps, (0.0, 1.0))
        assert violations(cpath, cm, lo, hi, spec_rows(rng, 3, 3), rng) == 0


def _conv_net(path, rng):
    w1 = rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 4).astype(np.float32)
    w2 = rng.normal(0, 0.3, (3, 4 * 3 * 2)).astype(np.float32)
    nodes = [h.make_node("Conv", ["input", "w1", "b1"], ["c"], strides=[2, 2], pads=[1, 0, 1, 0]),
             h.make_node("Relu", ["c"], ["r"]),
             h.make_node("Flatten", ["r"], ["f"], axis=1),
             h.make_node("Gemm", ["f", "w2"], ["logits"], transB=1)]
    g = h.make_graph(nodes, "conv", [h.make_tensor_value_info("input", T.FLOAT, ["N", 1, 6, 6])],
                     [h.make_tensor_value_info("logits", T.FLOAT, ["N", 3])],
                     [nh.from_array(w1, "w1"), nh.from_array(b1, "b1"), nh.from_array(w2, "w2")])
    mod = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    mod.ir_version = 9
    onnx.save(mod, str(path))
    return path


def test_a_planted_unsound_relaxation_is_caught(tmp_path, monkeypatch):
    """Dropping the chord's intercept (relu(z) <= s z instead of s (z - l)) is unsound: the same
    check that passes above must find violations."""
    rng, _, path, m = _mlp(tmp_path, 1)
    x = rng.random((5, 6)).astype(np.float32)
    lo, hi = margins.input_box(x, 0.2, (0.0, 1.0))
    c = spec_rows(rng, 5, 4)
    assert violations(path, m, lo, hi, c, np.random.default_rng(0)) == 0
    plant_unsound_relu(monkeypatch)
    assert violations(path, m, lo, hi, c, np.random.default_rng(0)) > 0


def test_crown_is_at_least_as_tight_as_ibp(tmp_path):
    rng, _, path, m = _mlp(tmp_path, 2, (10, 20, 20, 20, 5))
    x = rng.random((10, 10)).astype(np.float32)
    y = np.argmax(m.forward(x), 1)
    for eps in (0.01, 0.05):
        lo, hi = margins.input_box(x, eps, (0.0, 1.0))
        ibp = margins.box_margin(*m.interval(lo, hi), y)
        crown = margin_lower(m, lo, hi, y)
        alpha = margin_lower(m, lo, hi, y, alpha_steps=10)
        assert np.all(crown >= ibp) and np.all(alpha >= crown)
        assert np.mean(crown - ibp) > 0.1


def test_two_neuron_example_matches_the_hand_computed_lp_value(tmp_path):
    """out = relu(x1 + x2) + relu(x1 - x2) on [-1, 1]^2: pre-activations in [-2, 2], chord slope
    1/2, so CROWN's (and the triangle LP's) upper bound is max x1 + 2 = 3 (true max 2) and its
    lower bound 0 (exact, lower slopes 0 on ties u = -l)."""
    layers = [("gemm", np.array([[1, 1], [1, -1]], np.float32), np.zeros(2, np.float32)), ("relu",),
              ("gemm", np.array([[1, 1]], np.float32), np.zeros(1, np.float32))]
    path = build_model(layers, [2], tmp_path / "two.onnx")
    m = load_model(path)
    lo, hi = -np.ones((1, 2), np.float32), np.ones((1, 2), np.float32)
    c = np.array([[[1.0], [-1.0]]])
    for ort, tol in ((False, 1e-6), (True, 1e-5)):  # float32 rounding of the boxes; onnxruntime's error
        low = spec_lower(m, lo, hi, c, ort=ort)[0]
        assert -tol < low[0] <= 0.0 and 3.0 <= -low[1] < 3.0 + tol


def _train_deep(n_layers=9, width=48, seed=0):
    import torch

    from common.datasets import load_arrays

    torch.manual_seed(seed)
    x, y = load_arrays("digits", "train")
    xt, yt = torch.from_numpy(x.reshape(len(x), -1)), torch.from_numpy(y)
    mods, d = [], 64
    for _ in range(n_layers):
        mods += [torch.nn.Linear(d, width), torch.nn.ReLU()]
        d = width
    net = torch.nn.Sequential(*mods, torch.nn.Linear(d, 10))
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    for _ in range(60):
        for i in range(0, len(xt), 128):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[i:i + 128]), yt[i:i + 128]).backward()
            opt.step()
    layers = []
    for mod in net:
        if isinstance(mod, torch.nn.Linear):
            layers.append(("gemm", mod.weight.detach().numpy().astype(np.float32), mod.bias.detach().numpy().astype(np.float32)))
        else:
            layers.append(("relu",))
    return layers


def test_must_show_2_deep_net_float32_margin_at_eps_0(tmp_path):
    """Issue 15, must-show 2: 9 ReLU layers, ε = 0, guarantee (a)+(b): the margin lower bound is
    within 10 % of onnxruntime's margin for >= 95 % of the correctly classified samples."""
    from common.datasets import load_arrays

    layers = _train_deep()
    assert sum(1 for v in layers if v[0] == "relu") >= 9
    path = build_model([("flatten",)] + layers, [1, 8, 8], tmp_path / "deep.onnx")
    m = load_model(path)
    x, y = load_arrays("digits", "test")
    z = ort_logits(path, x).astype(np.float64)
    ok = np.argmax(z, 1) == y
    assert ok.mean() > 0.6  # a trained classifier (digits, 9 x 48 ReLU, a few seconds of Adam)
    x, y, z = x[ok], y[ok], z[ok]
    zz = z.copy()
    zz[np.arange(len(y)), y] = -np.inf
    ort_margin = z[np.arange(len(y)), y] - zz.max(1)
    low = margin_lower(m, x, x, y, ort=True)
    assert np.all(low <= ort_margin)
    close = low >= 0.9 * ort_margin
    assert close.mean() >= 0.95, (close.mean(), np.median(low / ort_margin))


def test_auto_ladder_proves_more_with_crown_and_check_reproves_it(tmp_path):
    """certify auto on a ReLU MLP: CROWN proves samples interval bounds cannot; the records name
    the rung; check re-proves them, and a CROWN-provable sample downgraded to not_certified fails."""
    import json

    from verify.certify.run import run_certify
    from verify.certify.check import run_check
    from common.errors import CertificateError

    rng, _, path, m = _mlp(tmp_path, 3, (10, 24, 24, 24, 4))
    x = rng.random((20, 10)).astype(np.float32)
    y = np.argmax(m.forward(x), 1)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    s_ibp = run_certify(path, tmp_path / "d.npz", eps=0.01, out=tmp_path / "ibp.jsonl", method="ibp")
    out = tmp_path / "auto.jsonl"
    s = run_certify(path, tmp_path / "d.npz", eps=0.01, out=out)
    assert s["certified"] > s_ibp["certified"]
    lines = [json.loads(v) for v in out.read_text().splitlines()]
    recs = [r for r in lines if "index" in r]
    assert "crown" in {r["method"] for r in recs if r["status"] == "certified"}
    assert run_check(out, path, tmp_path / "d.npz")["ok"]
    k = next(j for j, r in enumerate(recs) if r["method"] == "crown" and r["status"] == "certified")
    recs[k]["status"], recs[k]["radius"] = "not_certified", 0.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in [v for v in lines if "index" not in v] + recs) + "\n")
    with pytest.raises(CertificateError):
        run_check(bad, path, tmp_path / "d.npz")


def test_linf_dist_relaxation_is_sound_and_beats_intervals(tmp_path):
    """Pure ℓ∞-dist nets (LinfDist ... Neg): the one-coordinate lower line and the single-candidate
    upper chord hold at onnxruntime's points, never lose to IBP, and prove a margin IBP cannot."""
    rng = np.random.default_rng(1)
    path = build_model(random_linf_net(rng, [8, 12, 10, 6]), [8], tmp_path / "linf.onnx")
    m = load_model(path)
    x = rng.random((6, 8)).astype(np.float32)
    y = np.argmax(m.forward(x), 1)
    better = 0
    for eps in (0.02, 0.1, 0.3):
        lo, hi = margins.input_box(x, eps, (0.0, 1.0))
        assert violations(path, m, lo, hi, spec_rows(rng, 6, 6), rng) == 0
        ibp = margins.box_margin(*m.interval(lo, hi), y)
        crown = margin_lower(m, lo, hi, y)
        assert np.all(crown >= ibp - 1e-5)  # equal up to the error terms where nothing is gained
        better += int(np.sum((crown > 0) & (ibp <= 0)))
    assert better > 0


def test_spec_lower_subtracts_d_and_checks_the_box(tmp_path):
    """The vnnlib entry point: lower bounds of C·y − d (d rounded in), per sample and row."""
    from common.errors import ModelError

    rng, _, path, m = _mlp(tmp_path, 4)
    x = rng.random((3, 6)).astype(np.float32)
    lo, hi = margins.input_box(x, 0.05, (0.0, 1.0))
    c = spec_rows(rng, 3, 4)
    d = rng.normal(size=c.shape[:2])
    base = spec_lower(m, lo, hi, c)
    shifted = spec_lower(m, lo, hi, c, d)
    assert np.all(shifted <= base - d) and np.allclose(shifted, base - d, atol=1e-12)
    with pytest.raises(ModelError):
        spec_lower(m, hi, lo, c)


def test_spec_ladder_keeps_the_better_sound_rung(tmp_path):
    from verify.bounds.spec import spec_ladder

    rng, _, path, m = _mlp(tmp_path, 2, (10, 20, 20, 20, 5))
    x = rng.random((6, 10)).astype(np.float32)
    lo, hi = margins.input_box(x, 0.05, (0.0, 1.0))
    c = spec_rows(rng, 6, 5)
    low, method = spec_ladder(m, lo, hi, c)
    crown = spec_lower(m, lo, hi, c)
    assert set(method) <= {"crown", "alpha-crown"} and len(method) == 6
    assert np.all(low.min(axis=1) >= crown.min(axis=1))
    assert violations(path, m, lo, hi, c, rng, low=low) == 0


def test_alpha_crown_when_no_slope_reaches_the_output(tmp_path):
    """Relu slopes cut off from the output by an op without a relaxation (ReduceMax, bounded by its
    interval; the regression was found with ReduceMean, which has one since): α-CROWN has nothing to
    optimise and must return the CROWN bound, not raise (found on a dynamo-exported CNN: "element 0
    of tensors does not require grad")."""
    from onnx_helpers import make_model, save

    rng = np.random.default_rng(3)
    inits = {"W": rng.normal(size=(4, 6)).astype(np.float32), "B": rng.normal(size=4).astype(np.float32),
             "axes": np.array([2], np.int64)}
    nodes = [
        h.make_node("Relu", ["input"], ["r"]),
        h.make_node("ReduceMax", ["r", "axes"], ["m"], keepdims=0),
        h.make_node("Gemm", ["m", "W", "B"], ["logits"], transB=1),
    ]
    m = load_model(save(make_model(nodes, inits, [6, 3], 4), tmp_path))
    x = rng.normal(size=(2, 6, 3)).astype(np.float32)
    c = np.zeros((2, 1, 4))
    c[:, 0, 0], c[:, 0, 1] = 1.0, -1.0
    crown = spec_lower(m, x - 0.1, x + 0.1, c)
    alpha = spec_lower(m, x - 0.1, x + 0.1, c, alpha_steps=5)
    assert np.all(np.isfinite(alpha)) and np.all(alpha >= crown)
    y = ort_logits(save(make_model(nodes, inits, [6, 3], 4), tmp_path, "again.onnx"), x)
    assert np.all(alpha[:, 0] <= (y[:, 0] - y[:, 1]))
