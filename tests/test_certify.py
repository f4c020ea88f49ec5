"""verify.certify.certifier / verify.certify.run: methods, statuses, tightness, shards, resume, bad input."""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import pytest

from certify_helpers import build_model, exact_margin, ort_logits, random_linf_net
from certify_helpers import one_torch_thread  # noqa: F401  (module fixture, used through pytestmark)
from verify.certify.certificates import read_records
from verify.certify.certifier import CertifyConfig, certify_batch
from verify.certify.run import parse_shard, run_certify, select_indices
from common.errors import DataError, LinfVerifyError, ModelError
from verify.front.model import load_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pure(tmp_path_factory):
    rng = np.random.default_rng(7)
    layers = [("flatten",)] + random_linf_net(rng, [16, 12, 10, 5])
    path = build_model(layers, [1, 4, 4], tmp_path_factory.mktemp("pure") / "pure.onnx")
    x = rng.random((40, 1, 4, 4)).astype(np.float32)
    y = np.argmax(ort_logits(path, x), axis=1)
    y[::7] = (y[::7] + 1) % 5  # some misclassified samples
    return layers[1:], path, x, y


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    rng = np.random.default_rng(3)
    layers = random_linf_net(rng, [6, 10, 8], head=4)
    path = build_model(layers, [6], tmp_path_factory.mktemp("head") / "head.onnx")
    x = rng.random((30, 6)).astype(np.float32)
    return layers, path, x, np.argmax(ort_logits(path, x), axis=1)


def test_pure_net_radius_is_half_the_exact_margin(pure):
    layers, path, x, y = pure
    model = load_model(path)
    assert model.lipschitz() <= 1 + 1e-9
    for method in ("lipschitz", "ibp", "auto"):
        res = certify_batch(model, x, y, CertifyConfig(0.01, method, bisect_steps=4))
        for k in range(len(y)):
            m = exact_margin(layers, x[k].ravel(), int(y[k]))
            if m <= 0:
                assert res.status[k] == "misclassified" and res.radius[k] == 0
                continue
            assert res.radius[k] >= float(m) / 2 - 1e-5, (method, k)
            assert res.status[k] == ("certified" if float(m) / 2 > 0.01 + 1e-5 else res.status[k])


def test_misclassified_uses_float32_prediction(pure):
    _, path, x, y = pure
    res = certify_batch(load_model(path), x, y, CertifyConfig(0.01))
    ort_pred = np.argmax(ort_logits(path, x), axis=1)
    assert (res.predicted == ort_pred).all()
    mis = [k for k in range(len(y)) if ort_pred[k] != y[k]]
    assert mis and all(res.status[k] == "misclassified" and res.radius[k] == 0 for k in mis)


def test_head_net_ibp_beats_lipschitz_and_bisection_is_proven(head):
    _, path, x, y = head
    model = load_model(path)
    assert model.lipschitz() > 1  # the Gemm head
    # the Lipschitz test proves the real function only (guarantee real) on a model that is no chain
    lip = certify_batch(model, x, y, CertifyConfig(0.02, "lipschitz", guarantee="real"))
    ibp = certify_batch(model, x, y, CertifyConfig(0.02, "ibp", bisect_steps=8, guarantee="real"))
    auto = certify_batch(model, x, y, CertifyConfig(0.02, "auto", bisect_steps=8, guarantee="real"))
    assert (ibp.radius >= lip.radius - 1e-12).mean() > 0.9
    assert (auto.radius >= np.maximum(ibp.radius, lip.radius) - 1e-12).all()
    assert sum(s == "certified" for s in auto.status) >= sum(s == "certified" for s in lip.status)
    for k in range(len(y)):  # every reported radius is proven: re-certify just below it
        r = float(auto.radius[k])
        if r > 0:
            again = certify_batch(model, x[k:k + 1], y[k:k + 1], CertifyConfig(np.nextafter(r, 0), "auto", bisect_steps=0))
            assert again.status[0] == "certified" or again.radius[0] >= np.nextafter(r, 0)


def test_config_validation():
    for bad in (CertifyConfig(-1.0), CertifyConfig(float("nan")), CertifyConfig(0.1, "beta-crown"),
                CertifyConfig(0.1, domain=(1.0, 0.0))):
        with pytest.raises(LinfVerifyError):
            bad.check()


def test_shard_parsing_and_selection():
    assert parse_shard(None) == (0, 1) and parse_shard("1/3") == (1, 3)
    for bad in ("3/2", "1", "a/b", "-1/2", "1/0"):
        with pytest.raises(LinfVerifyError):
            parse_shard(bad)
    idx, n = select_indices(10, 7, (1, 3))
    assert n == 7 and idx.tolist() == [1, 4]
    assert sorted(sum((select_indices(10, None, (i, 3))[0].tolist() for i in range(3)), [])) == list(range(10))


def _npz(tmp_path, x, y, name="d.npz"):
    p = tmp_path / name
    np.savez(p, x=x, y=y)
    return p


def test_shards_concatenate_to_the_full_run(tmp_path, head):
    _, path, x, y = head
    data = _npz(tmp_path, x, y)
    full = run_certify(path, data, eps=0.02, out=tmp_path / "full.jsonl", batch_size=8)
    parts = []
    for i in range(3):
        s = run_certify(path, data, eps=0.02, out=tmp_path / f"s{i}.jsonl", batch_size=8, shard=f"{i}/3")
        parts += read_records(tmp_path / f"s{i}.jsonl")
    assert sorted(r["index"] for r in parts) == list(range(len(y)))
    by = {r["index"]: r for r in read_records(tmp_path / "full.jsonl")}
    assert all(by[r["index"]]["status"] == r["status"] for r in parts)
    assert full["n"] == len(y) and s["n"] == len(range(2, len(y), 3))


def test_resume_after_interruption_gives_identical_file(tmp_path, head):
    _, path, x, y = head
    data = _npz(tmp_path, x, y)
    ref = tmp_path / "ref.jsonl"
    run_certify(path, data, eps=0.02, out=ref, batch_size=7)
    out = tmp_path / "out.jsonl"
    calls = []

    def boom(done, total):
        calls.append(done)
        if done >= 14:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_certify(path, data, eps=0.02, out=out, batch_size=7, progress=boom)
    partial = tmp_path / "out.jsonl.partial"
    assert not out.exists() and partial.exists()
    with open(partial, "a") as f:  # a torn line from a crash mid-write
        f.write('{"index": 14, "input_sha')
    s = run_certify(path, data, eps=0.02, out=out, batch_size=7)
    assert s["resumed"] == 14 and not partial.exists()
    assert out.read_bytes() == ref.read_bytes()
    with pytest.raises(LinfVerifyError):  # a partial of another eps is refused, not mixed
        partial.write_text(ref.read_text().splitlines()[0] + "\n")
        run_certify(path, data, eps=0.03, out=out, batch_size=7)


def test_bad_inputs_create_no_file(tmp_path, head):
    _, path, x, y = head
    out = tmp_path / "o.jsonl"
    cases = [
        (_npz(tmp_path, x + 2, y, "dom.npz"), DataError, "outside the input domain"),
        (_npz(tmp_path, x[:, :5], y, "shape.npz"), DataError, "expects"),
        (_npz(tmp_path, x, y + 10, "lab.npz"), DataError, "labels"),
    ]
    for data, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            run_certify(path, data, eps=0.1, out=out)
    with pytest.raises(LinfVerifyError, match="shard"):
        run_certify(path, cases[0][0], eps=0.1, out=out, shard="3/2")
    assert list(tmp_path.glob("o.jsonl*")) == []
    # a wider domain makes the same data certifiable
    s = run_certify(path, cases[0][0], eps=0.01, out=out, domain=(0.0, 3.0))
    assert s["n"] == len(y) and out.exists()


def test_eps_zero_certifies_every_correct_sample_with_positive_margin(head):
    layers, path, x, y = head
    res = certify_batch(load_model(path), x, y, CertifyConfig(0.0))
    for k in range(len(y)):
        if exact_margin(layers, x[k], int(y[k])) > F(1, 1000):
            assert res.status[k] == "certified"


def _tightness():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "tightness_certify", Path(__file__).resolve().parent.parent / "benchmarks" / "tightness_certify.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tightness_vs_training_time_evaluation_on_digits(tmp_path):
    """Must-show 2 machinery on a nets model (identity init, untrained) on the offline digits data:
    sound radii ≥ exact margin/2 − 1e-5 and the sound lipschitz method certifies exactly the
    samples of the training-time evaluation (up to threshold-rounding cases, listed)."""
    torch = pytest.importorskip("torch")
    from nets.checkpoint import save_checkpoint
    from nets.models import ModelConfig, build_model

    torch.manual_seed(0)
    net = build_model(ModelConfig(arch="linf", input_shape=(1, 8, 8), depth=3, width=64)).eval()
    save_checkpoint(tmp_path / "ck", net, {"dataset": "digits", "eps_train": 0.1})
    out = _tightness().run(tmp_path / "ck", n=200, eps=0.01)
    assert out["radii_ok"], out["max_radius_deficit_vs_exact_half_margin"]
    assert out["all_disagreements_explained"], out["disagreements"]
    assert out["sound_auto_certified"] >= out["sound_lipschitz_certified"] > 0


@pytest.mark.slow
@pytest.mark.data
def test_tightness_on_trained_mnist_checkpoint():
    """Must-show 2 on a real trained MNIST model: set LINFVERIFY_MNIST_CKPT to its checkpoint dir."""
    import os

    ck = os.environ.get("LINFVERIFY_MNIST_CKPT")
    if not ck or not os.path.isdir(ck):
        pytest.skip("set LINFVERIFY_MNIST_CKPT to a trained MNIST checkpoint directory")
    from common.datasets import default_data_dir

    if default_data_dir() is None:
        pytest.skip("../shared/data (real MNIST) is absent")
    out = _tightness().run(ck)
    assert out["radii_ok"] and out["all_disagreements_explained"], out


def test_float32_overflow_is_handled_soundly(tmp_path):
    # z0 = 3e38·(x0 + x1) is finite (≥ 5.4e38 > z1 = 0) on the whole ball for the real function,
    # but onnxruntime's float32 Gemm overflows to inf there: its value lies in no finite box, so the
    # interval contract (real AND onnxruntime values inside) cannot be kept. "When unsure: unknown".
    big = np.float32(3e38)
    layers = [("gemm", np.array([[big, big], [0, 0]], np.float32), np.zeros(2, np.float32))]
    path = build_model(layers, [2], tmp_path / "inf.onnx")
    x = np.array([[1.0, 1.0], [0.0, 0.0]], np.float32)
    assert np.isinf(ort_logits(path, x)[0, 0])
    res = certify_batch(load_model(path), x, np.array([0, 0]), CertifyConfig(0.1))
    assert res.status[0] == "unknown" and res.radius[0] == 0
    assert res.status[1] != "certified"  # at 0 the real margin is 0: a tie is not a win


def test_interval_contains_onnxruntime_value_when_a_partial_sum_overflows(tmp_path):
    """Real value 1, but onnxruntime's float32 dot product overflows to ±inf on the way: a finite
    box around 1 (Higham's bound assumes no overflow) would not hold onnxruntime's logit."""
    big = np.float32(3e38)
    rows = np.array([[-big, -big, big, big], [big, big, -big, -big], [0, 0, 0, 0]], np.float32)
    path = build_model([("gemm", rows, np.array([1, 1, 0], np.float32))], [4], tmp_path / "ovf.onnx")
    x = np.ones((1, 4), np.float32)
    z = ort_logits(path, x)
    assert not np.isfinite(z[0, :2]).all()  # the trap is armed: some summation order overflowed
    # two partial sums overflowing with opposite signs give NaN, which no box holds: refused
    # (ModelError, the sample is unknown) rather than bounded by (-inf, inf)
    with pytest.raises(ModelError, match="overflow"):
        load_model(path).interval(x, x)


def test_nan_bounds_give_unknown(head, monkeypatch):
    from verify.certify.certifier import Certifier

    _, path, x, y = head
    c = Certifier(load_model(path), CertifyConfig(0.02, "ibp", bisect_steps=0))
    monkeypatch.setattr(c, "ibp_margin", lambda xb, yb, eps: np.full(len(yb), np.nan))
    res = c.run(x[:4], y[:4])
    assert res.status == ["unknown"] * 4 and (res.radius == 0).all()


def test_refuses_to_certify_under_ftz(head, monkeypatch):
    from verify.bounds import rounding
    from common.errors import ModelError

    _, path, x, y = head
    monkeypatch.setattr(rounding, "flushes_denormals", lambda: True)
    with pytest.raises(ModelError, match="subnormal"):
        certify_batch(load_model(path), x[:2], y[:2], CertifyConfig(0.01, "lipschitz", guarantee="real"))


def test_standard_op_linf_layers_certify_exactly_like_linfdist(tmp_path):
    """Issue 5: a third-party ℓ∞-dist net written with Unsqueeze/Sub/Abs/ReduceMax/Add certifies
    exactly as well as the same net written with linf::LinfDist (same records but the model hash)."""
    rng = np.random.default_rng(21)
    layers = [("linf", rng.random((10, 6)).astype(np.float32), None),
              ("linf", (rng.random((8, 10)) * 0.5).astype(np.float32), rng.normal(0, 0.1, 8).astype(np.float32)),
              ("linf", (rng.random((4, 8)) * 0.5).astype(np.float32), None), ("neg",)]
    ours = build_model(layers, [6], tmp_path / "ours.onnx")
    std = build_model([("linf_std", *lay[1:]) if lay[0] == "linf" else lay for lay in layers], [6],
                      tmp_path / "std.onnx")
    x = rng.random((40, 6)).astype(np.float32)
    y = np.argmax(ort_logits(ours, x), axis=1)
    assert (ort_logits(std, x) == ort_logits(ours, x)).all()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    recs = []
    for m in (ours, std):
        run_certify(m, tmp_path / "d.npz", eps=0.01, out=tmp_path / f"{m.stem}.jsonl")
        recs.append([{k: v for k, v in r.items() if k != "model_sha256"} for r in read_records(tmp_path / f"{m.stem}.jsonl")])
    assert recs[0] == recs[1]
    assert any(r["status"] == "certified" for r in recs[0])
