"""verify.check: a clean certificate file passes; every kind of tampering is caught."""

from __future__ import annotations

import json

import numpy as np
import pytest

from certify_helpers import build_model, mixed_head_net, ort_logits, random_linf_net
from certify_helpers import one_torch_thread  # noqa: F401  (module fixture, used through pytestmark)
from verify.certify_run import run_certify
from verify.check import run_check
from verify.errors import CertificateError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("check")
    rng = np.random.default_rng(12)
    path = build_model(mixed_head_net(rng), [6], d / "m.onnx")
    x = rng.random((24, 6)).astype(np.float32)
    y = np.argmax(ort_logits(path, x), axis=1)
    y[::5] = (y[::5] + 1) % 4
    np.savez(d / "d.npz", x=x, y=y)
    out = d / "c.jsonl"
    run_certify(path, d / "d.npz", eps=0.03, out=out, batch_size=10)
    return d, path, out


def _lines(out):
    return [json.loads(s) for s in out.read_text().splitlines()]


def _write(d, recs, name="t.jsonl"):
    p = d / name
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return p


def test_clean_file_passes(setup):
    d, path, out = setup
    rep = run_check(out, path, d / "d.npz")
    assert rep["ok"] and rep["n"] == 24
    statuses = {r["status"] for r in _lines(out)}
    assert {"certified", "not_certified", "misclassified"} <= statuses


def _first(recs, status):
    return next(k for k, r in enumerate(recs) if r["status"] == status)


def _tamper(recs, what):
    recs = [dict(r) for r in recs]
    k = _first(recs, "certified")
    n = _first(recs, "not_certified")
    m = _first(recs, "misclassified")
    if what == "status":
        recs[m]["status"], recs[m]["radius"] = "certified", 0.05
    elif what == "radius":
        k = min((j for j, r in enumerate(recs) if r["status"] == "certified"), key=lambda j: recs[j]["radius"])
        assert recs[k]["radius"] < 0.4
        recs[k]["radius"] = recs[k]["radius"] * 1.5 + 0.05
    elif what == "input_hash":
        recs[k]["input_sha256"] = "0" * 64
    elif what == "model_hash":
        recs[k]["model_sha256"] = "1" * 64
    elif what == "label":
        recs[k]["label"] = (recs[k]["label"] + 1) % 4
    elif what == "predicted":
        recs[m]["predicted"] = recs[m]["label"]
    elif what == "duplicate":
        recs.append(dict(recs[k]))
    elif what == "missing":
        del recs[k]
    elif what == "margin":
        recs[k]["margin_lower"] = recs[k]["margin_lower"] + 1.0
    elif what == "downgrade":
        recs[k]["status"], recs[k]["radius"] = "not_certified", 0.0
    elif what == "eps":
        recs[k]["eps"] = recs[k]["radius"] * 3 + 0.5
    elif what == "upgrade":
        recs[n]["status"], recs[n]["radius"] = "certified", recs[n]["eps"]
    elif what == "falsified":
        recs[k]["status"] = "falsified"
    return recs


@pytest.mark.parametrize("what", ["status", "radius", "input_hash", "model_hash", "label", "predicted",
                                  "duplicate", "missing", "margin", "downgrade", "upgrade", "eps", "falsified"])
def test_tampering_is_detected(setup, what):
    d, path, out = setup
    p = _write(d, _tamper(_lines(out), what), f"t_{what}.jsonl")
    with pytest.raises(CertificateError):
        run_check(p, path, d / "d.npz")


def test_other_model_or_data_fails(setup, tmp_path):
    d, path, out = setup
    rng = np.random.default_rng(12)
    other = build_model(random_linf_net(rng, [6, 10, 8], head=4), [6], tmp_path / "o.onnx")
    with pytest.raises(CertificateError, match="model_sha256"):
        run_check(out, other, d / "d.npz")
    with np.load(d / "d.npz") as z:
        x, y = z["x"].copy(), z["y"]
    x[3, 0] = np.float32(0.5) if x[3, 0] != np.float32(0.5) else np.float32(0.25)
    np.savez(tmp_path / "d2.npz", x=x, y=y)
    with pytest.raises(CertificateError, match="input_sha256"):
        run_check(out, path, tmp_path / "d2.npz")


def test_falsified_with_valid_witness_passes(setup, tmp_path):
    d, path, out = setup
    recs = _lines(out)
    with np.load(d / "d.npz") as z:
        x, y = z["x"], z["y"]
    # a genuine witness for a correctly classified sample: search the ball of a large eps
    rng = np.random.default_rng(0)
    for k, r in enumerate(recs):
        if r["status"] != "not_certified" and r["status"] != "certified":
            continue
        i, eps = r["index"], 1.0
        cand = rng.random((2000, 6)).astype(np.float32)
        cand = cand[np.all(np.abs(cand.astype(np.float64) - x[i]) <= eps, axis=1)]
        wrong = np.nonzero(np.argmax(ort_logits(path, cand), 1) != y[i])[0]
        if len(wrong):
            recs[k].update(status="falsified", eps=eps, radius=0.0, witness=cand[wrong[0]].tolist(),
                           method="pgd", margin_lower=None)
            break
    else:
        pytest.skip("no witness found for this random model")
    run_check(_write(tmp_path, recs), path, d / "d.npz")
    import hashlib

    good = np.asarray(recs[k]["witness"], np.float32)
    recs[k]["witness_sha256"] = hashlib.sha256(good.tobytes()).hexdigest()
    run_check(_write(tmp_path, recs, "sha.jsonl"), path, d / "d.npz")
    recs[k]["witness_sha256"] = "0" * 64
    with pytest.raises(CertificateError, match="witness_sha256"):
        run_check(_write(tmp_path, recs, "badsha.jsonl"), path, d / "d.npz")
    recs[k]["witness"] = (np.asarray(recs[k]["witness"]) * 0 + x[recs[k]["index"]]).tolist()
    with pytest.raises(CertificateError, match="witness"):
        run_check(_write(tmp_path, recs, "bad.jsonl"), path, d / "d.npz")


def test_pure_chain_lipschitz_certificates_pass_check(tmp_path):
    rng = np.random.default_rng(5)
    layers = [("linf", rng.random((10, 6)).astype(np.float32), None),
              ("linf", (rng.random((8, 10)) * 0.5).astype(np.float32), None),
              ("linf", (rng.random((4, 8)) * 0.5).astype(np.float32), None), ("neg",)]
    path = build_model(layers, [6], tmp_path / "pure.onnx")
    x = rng.random((30, 6)).astype(np.float32)
    y = np.argmax(ort_logits(path, x), axis=1)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    for method in ("auto", "lipschitz", "ibp"):
        out = tmp_path / f"{method}.jsonl"
        s = run_certify(path, tmp_path / "d.npz", eps=0.01, out=out, method=method)
        assert 0 < s["certified"] < 30
        assert run_check(out, path, tmp_path / "d.npz")["ok"]
    recs = _lines(tmp_path / "auto.jsonl")
    assert {r["method"] for r in recs if r["status"] == "certified"} >= {"lipschitz"}
    k = min((j for j, r in enumerate(recs) if r["status"] == "certified"), key=lambda j: recs[j]["radius"])
    recs[k]["radius"] = recs[k]["radius"] * 3
    with pytest.raises(CertificateError, match="radius"):
        run_check(_write(tmp_path, recs), path, tmp_path / "d.npz")


@pytest.mark.parametrize("method", ["lipschitz", "ibp"])
def test_every_method_passes_check_on_head_net(setup, tmp_path, method):
    d, path, _ = setup
    out = tmp_path / f"{method}.jsonl"
    s = run_certify(path, d / "d.npz", eps=0.02, out=out, method=method, bisect_steps=5)
    assert s["certified"] > 0
    assert run_check(out, path, d / "d.npz")["ok"]
