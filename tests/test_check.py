"""verify.certify.check: a clean certificate file passes; every kind of tampering is caught."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from certify_helpers import build_model, mixed_head_net, ort_logits, random_linf_net
from certify_helpers import one_torch_thread  # noqa: F401  (module fixture, used through pytestmark)
from verify.certify.run import run_certify
from verify.certify.check import run_check
from common.errors import CertificateError, LinfVerifyError

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
    _SRC[:] = [out]
    return d, path, out


def _lines(out):
    """The records of a file (its header line dropped; :func:`_write` puts it back)."""
    return [json.loads(s) for s in out.read_text().splitlines()[1:]]


def _header(out):
    return json.loads(out.read_text().splitlines()[0])


def _write(d, recs, name="t.jsonl", header=None, src=None):
    """Write ``recs`` under ``header`` (default: the header of ``src``, else of the module's run)."""
    p = d / name
    head = header if header is not None else _header(src or _SRC[0])
    p.write_text("".join(json.dumps(r) + "\n" for r in [head, *recs]))
    return p


_SRC: list = []  # the module's certificate file (set by the fixture)


def test_clean_file_passes(setup):
    d, path, out = setup
    rep = run_check(out, path, d / "d.npz")
    assert rep["ok"] and rep["n"] == 24 and rep["eps"] == 0.03
    assert rep["coverage"] == f"24 of 24 samples of {rep['data_sha256']}"
    assert sum(rep["counts"].values()) == 24 and set(rep["counts"]) >= {"certified", "unknown", "falsified"}
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
    with pytest.raises(CertificateError, match="data_sha256"):
        run_check(out, path, tmp_path / "d2.npz")


def test_falsified_with_valid_witness_passes(setup, tmp_path):
    """An attack run's witness file (header method pgd): witnesses replay, tampered ones fail."""
    from verify.attack.replay import witness_record
    from verify.certify.certificates import tool_version

    d, path, out = setup
    with np.load(d / "d.npz") as z:
        x, y = z["x"], z["y"]
    pred = np.argmax(ort_logits(path, x), 1)
    eps = 1.0
    recs = [witness_record(index=i, x=x[i], label=int(y[i]), predicted=int(pred[i]), eps=eps,
                           status="misclassified" if pred[i] != y[i] else "unknown", model_sha256=_header(out)["model_sha256"],
                           tool_version=tool_version(), n_total=len(y)) for i in range(len(y))]
    head = dict(_header(out), eps=eps, method="pgd", guarantee="witness")
    rng = np.random.default_rng(0)  # a genuine witness for a correctly classified sample
    for k, r in enumerate(recs):
        if r["status"] != "unknown":
            continue
        i = r["index"]
        cand = rng.random((2000, 6)).astype(np.float32)
        wrong = np.nonzero(np.argmax(ort_logits(path, cand), 1) != y[i])[0]
        if len(wrong):
            recs[k] = witness_record(index=i, x=x[i], label=int(y[i]), predicted=int(pred[i]), eps=eps,
                                     status="falsified", model_sha256=head["model_sha256"], tool_version=tool_version(),
                                     witness=cand[wrong[0]], n_total=len(y))
            break
    else:
        pytest.skip("no witness found for this random model")
    assert run_check(_write(tmp_path, recs, header=head), path, d / "d.npz")["counts"]["falsified"] == 1
    bad = [dict(r) for r in recs]
    bad[k]["witness_sha256"] = "0" * 64
    with pytest.raises(CertificateError, match="witness_sha256"):
        run_check(_write(tmp_path, bad, "badsha.jsonl", header=head), path, d / "d.npz")
    bad[k]["witness"] = x[recs[k]["index"]].tolist()
    bad[k]["witness_sha256"] = hashlib.sha256(x[recs[k]["index"]].tobytes()).hexdigest()
    with pytest.raises(CertificateError, match="witness"):
        run_check(_write(tmp_path, bad, "bad.jsonl", header=head), path, d / "d.npz")
    bad = [dict(r) for r in recs]  # an attack file cannot claim robustness
    j = next(j for j, r in enumerate(bad) if r["status"] == "unknown")
    bad[j]["status"] = "certified"
    with pytest.raises(CertificateError, match="disagrees with the header"):
        run_check(_write(tmp_path, bad, "cert.jsonl", header=head), path, d / "d.npz")


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
        run_check(_write(tmp_path, recs, src=tmp_path / "auto.jsonl"), path, tmp_path / "d.npz")


@pytest.mark.parametrize("guarantee", ["real", "float32"])
@pytest.mark.parametrize("method", ["lipschitz", "ibp", "crown", "alpha-crown"])
def test_every_method_passes_check_on_head_net(setup, tmp_path, method, guarantee):
    d, path, _ = setup
    out = tmp_path / f"{method}.jsonl"
    if method == "lipschitz" and guarantee == "float32":  # L bounds the real function only
        with pytest.raises(LinfVerifyError, match="--guarantee real"):
            run_certify(path, d / "d.npz", eps=0.02, out=out, method=method, guarantee=guarantee)
        assert not out.exists() and not out.with_name(out.name + ".partial").exists()
        return
    s = run_certify(path, d / "d.npz", eps=0.02, out=out, method=method, bisect_steps=5, guarantee=guarantee)
    assert s["certified"] > 0 and s["guarantee"] == guarantee
    assert run_check(out, path, d / "d.npz")["ok"]
