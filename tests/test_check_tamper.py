"""Issue 12 #10: ``check`` reads a certificate file as ONE self-describing run and cannot be fooled.

Each tampering class below passed the per-record ``check`` of before (eps, domain and method taken
from each record, coverage only from the fields the records chose to carry); each fails now. The
untouched output passes, with eps, coverage and per-status counts in the summary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from certify_helpers import build_model, mixed_head_net, ort_logits
from certify_helpers import one_torch_thread  # noqa: F401  (module fixture, used through pytestmark)
from verify.certify.certifier import Certifier, CertifyConfig
from verify.certify.run import run_certify
from verify.certify.check import run_check
from common.errors import CertificateError
from verify.front.model import load_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")
EPS = 0.03


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("tamper")
    rng = np.random.default_rng(12)
    path = build_model(mixed_head_net(rng), [6], d / "m.onnx")
    x = np.concatenate([rng.random((24, 6)), np.linspace(0.05, 0.95, 16)[:, None] * np.ones((1, 6))])
    x = x.astype(np.float32)
    y = np.argmax(ort_logits(path, x), axis=1)
    y[:24:5] = (y[:24:5] + 1) % 4
    np.savez(d / "d.npz", x=x, y=y)
    out = d / "c.jsonl"
    run_certify(path, d / "d.npz", eps=EPS, out=out, batch_size=10)
    lines = [json.loads(s) for s in out.read_text().splitlines()]
    assert {"certified", "not_certified", "misclassified"} <= {r["status"] for r in lines[1:]}
    return d, path, x, lines


def _check(run, lines, name):
    d, path, _, _ = run
    p = d / f"{name}.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run_check(p, path, d / "d.npz")


def _idx(lines, status):
    return [k for k, r in enumerate(lines) if k and r.get("status") == status]


def test_untouched_output_passes(run):
    _, _, x, lines = run
    rep = _check(run, lines, "clean")
    assert rep["eps"] == EPS and rep["n"] == len(x) == rep["n_data"]
    assert rep["coverage"] == f"{len(x)} of {len(x)} samples of {rep['data_sha256']}"
    assert rep["counts"] == {s: sum(r["status"] == s for r in lines[1:]) for s in rep["counts"]}
    assert rep["guarantee"] == lines[0]["guarantee"] == "float32"  # the default demand


def test_not_certified_rewritten_as_certified_at_a_smaller_eps(run):
    _, path, x, lines = run
    lines = [dict(r) for r in lines]
    k = next(k for k in _idx(lines, "not_certified") if lines[k]["radius"] > 0)
    r = lines[k]  # its own bisected radius is a proven IBP ball: certified "at eps = radius"
    r.update(status="certified", eps=r["radius"], margin_lower=None, method="ibp")
    with pytest.raises(CertificateError, match="eps"):
        _check(run, lines, "smaller_eps")


def test_deleting_records_and_stripping_the_selection(run):
    lines = [run[3][0]] + [{k: v for k, v in run[3][j].items() if k not in ("shard", "n_total")}
                           for j in _idx(run[3], "certified")]
    with pytest.raises(CertificateError, match="missing field"):
        _check(run, lines, "only_certified_stripped")
    only = [run[3][0]] + [run[3][j] for j in _idx(run[3], "certified")]
    with pytest.raises(CertificateError, match="have no record"):
        _check(run, only, "only_certified")


@pytest.mark.parametrize("text", ["", "\n"])
def test_empty_file(run, text):
    d, path, _, _ = run
    (d / "empty.jsonl").write_text(text)
    with pytest.raises(CertificateError, match="header"):
        run_check(d / "empty.jsonl", path, d / "d.npz")


def test_header_alone_or_records_without_header(run):
    with pytest.raises(CertificateError, match="have no record"):
        _check(run, run[3][:1], "header_only")
    with pytest.raises(CertificateError, match="header"):
        _check(run, run[3][1:], "no_header")


@pytest.mark.parametrize("to", ["unknown", "not_certified"])
def test_certified_downgraded(run, to):
    lines = [dict(r) for r in run[3]]
    k = next(k for k in _idx(lines, "certified") if lines[k]["method"] == "ibp")
    # and the record names the method that cannot prove it (the old check only tried that one)
    lines[k].update(status=to, radius=0.0, margin_lower=None, method="lipschitz")
    with pytest.raises(CertificateError, match="downgrade"):
        _check(run, lines, f"down_{to}")


def test_narrowed_domain(run):
    _, path, x, lines = run
    lines = [dict(r) for r in lines]
    model = load_model(path)
    for k in _idx(lines, "not_certified"):
        xi = x[lines[k]["index"]]
        dom = (float(xi.min()), float(np.nextafter(xi.max(), np.float32(2))))
        cert = Certifier(model, CertifyConfig(EPS, "ibp", domain=dom, bisect_steps=0)).run(xi[None], np.array([lines[k]["label"]]))
        if cert.status[0] == "certified":
            break
    else:
        pytest.fail("no not_certified sample that a narrowed domain proves")
    lines[k].update(status="certified", domain=list(dom), radius=EPS, margin_lower=float(cert.margin_lower[0]),
                    method="ibp")
    with pytest.raises(CertificateError, match="domain"):
        _check(run, lines, "narrow")
    # narrowing the header too: the other samples the narrow domain proves are then downgrades
    lines[0] = dict(lines[0], domain=list(dom))
    for r in lines[1:]:
        r["domain"] = list(dom)
    with pytest.raises(CertificateError):
        _check(run, lines, "narrow_all")


@pytest.mark.parametrize("what", ["guarantee", "data_sha256", "n_total", "limit", "shard", "missing", "format",
                                  "extra", "witness"])
def test_header_tampering(run, what):
    lines = [dict(r) for r in run[3]]
    h = lines[0] = json.loads(json.dumps(lines[0]))
    if what == "guarantee":
        h["guarantee"] = "real"  # the records say float32: one run, one guarantee
    elif what == "data_sha256":
        h["data_sha256"] = "0" * 64
    elif what == "n_total":
        h["selection"]["n_total"] -= 1
    elif what == "limit":
        h["selection"]["limit"] = 10  # claims a run of the first 10 samples
    elif what == "shard":
        h["selection"]["shard"] = "0/2"
    elif what == "missing":
        del h["method"]
    elif what == "format":
        h["format"] = "linfverify-run/0"
    elif what == "extra":
        h["verified_by"] = "someone trustworthy"
    elif what == "witness":  # an attack run's guarantee on a certify run
        h["guarantee"] = "witness"
    with pytest.raises(CertificateError):
        _check(run, lines, f"h_{what}")
